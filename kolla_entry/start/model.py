"""
The service config's values: frozen dataclasses for Kolla's ``config.json`` / ``config.yaml``.

Built by the parsers of :mod:`kolla_entry.start.reader` (which check every key first) and imported
from there; this module holds no parsing.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Optional, Tuple

#: Seconds to wait for all dependencies when ``dependency_timeout`` is not set.
DEFAULT_DEPENDENCY_TIMEOUT = 300.0


@dataclass(frozen=True)
class Owner:
    """
    An ``owner`` value: ``user``, ``user:`` or ``user:group``, names or numeric ids.

    ``group`` is None when not given: the user's primary group is used (for Kolla's users it
    is the group of the same name, which is what Kolla picks).
    """

    user: str
    group: Optional[str] = None

    def __str__(self) -> str:
        return f"{self.user}:{self.group}" if self.group is not None else self.user


@dataclass(frozen=True)
class ConfigFileEntry:
    """One ``config_files`` entry; ``index`` is its position, for messages."""

    index: int
    source: str
    dest: str
    owner: Optional[Owner]
    perm: Optional[int]
    optional: bool = False
    merge: bool = False
    preserve_properties: bool = False
    template: bool = False

    @property
    def entry(self) -> str:
        """The entry's name in messages: ``config_files[2]``."""
        return f"config_files[{self.index}]"


@dataclass(frozen=True)
class PathEntry:
    """One ``directories`` or ``files`` entry: a path created with an owner and a mode."""

    section: str
    index: int
    path: str
    owner: Owner
    perm: int

    @property
    def entry(self) -> str:
        """The entry's name in messages: ``directories[0]``."""
        return f"{self.section}[{self.index}]"


@dataclass(frozen=True)
class PermissionEntry:
    """One ``permissions`` entry: owner/mode set on a glob's matches, optionally recursively."""

    index: int
    path: str
    owner: Owner
    perm: Optional[int] = None
    recurse: bool = False
    exclude: Tuple[str, ...] = ()

    @property
    def entry(self) -> str:
        """The entry's name in messages: ``permissions[1]``."""
        return f"permissions[{self.index}]"


@dataclass(frozen=True)
class Dependency:
    """A TCP endpoint that must accept connections before the service starts."""

    host: str
    port: int
    entry: str

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class CheckDependency:
    """
    A check command that must exit 0 before the service starts (``{"command": "..."}``).

    It is run after the config files are in place, as the service user, because checks such as
    ``keystone-manage db_sync --check`` read the service's own config.
    """

    argv: Tuple[str, ...]
    entry: str

    def __str__(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class ServiceConfig:
    """The whole service config, validated."""

    path: str
    command: Optional[str] = None
    config_files: Tuple[ConfigFileEntry, ...] = ()
    directories: Tuple[PathEntry, ...] = ()
    files: Tuple[PathEntry, ...] = ()
    permissions: Tuple[PermissionEntry, ...] = ()
    dependencies: Tuple[Dependency, ...] = ()
    checks: Tuple[CheckDependency, ...] = ()
    dependency_timeout: float = DEFAULT_DEPENDENCY_TIMEOUT
    user: Optional[str] = None
    #: Ours (issue #16): the overlay folder that serves the hot-fixes instead of writing site-packages.
    overlay: Optional[str] = None
