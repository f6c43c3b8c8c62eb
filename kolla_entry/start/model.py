"""
The service config's values: immutable records for Kolla's ``config.json`` / ``config.yaml``.

Built by the parsers of :mod:`kolla_entry.start.reader` (which check every key first) and imported
from there; this module holds no parsing. The records are named tuples, not dataclasses: every
pod start builds these classes, and ``dataclasses`` (which imports ``inspect``) and its per-class
code generation cost more than the rest of the config step (start-up budget, issue #13).
"""

from __future__ import annotations

import shlex
from typing import NamedTuple, Optional, Tuple

#: Seconds to wait for all dependencies when ``dependency_timeout`` is not set.
DEFAULT_DEPENDENCY_TIMEOUT = 300.0


class Owner(NamedTuple):
    """
    An ``owner`` value: ``user``, ``user:`` or ``user:group``, names or numeric ids.

    ``group`` is None when not given: the user's primary group is used (for Kolla's users it
    is the group of the same name, which is what Kolla picks).
    """

    user: str
    group: Optional[str] = None

    def __str__(self) -> str:
        return f"{self.user}:{self.group}" if self.group is not None else self.user


class ConfigFileEntry(NamedTuple):
    """One ``config_files`` entry; ``position`` is its place in the list, for messages."""

    position: int
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
        return f"config_files[{self.position}]"


class PathEntry(NamedTuple):
    """One ``directories`` or ``files`` entry: a path created with an owner and a mode."""

    section: str
    position: int
    path: str
    owner: Owner
    perm: int

    @property
    def entry(self) -> str:
        """The entry's name in messages: ``directories[0]``."""
        return f"{self.section}[{self.position}]"


class PermissionEntry(NamedTuple):
    """One ``permissions`` entry: owner/mode set on a glob's matches, optionally recursively."""

    position: int
    path: str
    owner: Owner
    perm: Optional[int] = None
    recurse: bool = False
    exclude: Tuple[str, ...] = ()

    @property
    def entry(self) -> str:
        """The entry's name in messages: ``permissions[1]``."""
        return f"permissions[{self.position}]"


class Dependency(NamedTuple):
    """A TCP endpoint that must accept connections before the service starts."""

    host: str
    port: int
    entry: str

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class CheckDependency(NamedTuple):
    """
    A check command that must exit 0 before the service starts (``{"command": "..."}``).

    It is run after the config files are in place, as the service user, because checks such as
    ``keystone-manage db_sync --check`` read the service's own config.
    """

    argv: Tuple[str, ...]
    entry: str

    def __str__(self) -> str:
        return shlex.join(self.argv)


class ServiceConfig(NamedTuple):
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
