"""
The service config: Kolla's ``config.json`` / ``config.yaml`` turned into frozen values.

Raw JSON/YAML stops here (STYLE.md 6): :func:`parse_config` checks every key and type and builds a
:class:`ServiceConfig`; an unknown key, a missing field or a bad value is a :class:`ConfigError`
naming the entry and field (``config_files[2].perm``), raised before anything is done.

Kolla's format (kolla:docker/base/set_configs.py) plus our extensions: ``template`` on a
``config_files`` entry, ``dependencies``, ``dependency_timeout`` and ``user``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from kolla_entry.errors import ConfigError

#: Seconds to wait for all dependencies when ``dependency_timeout`` is not set.
DEFAULT_DEPENDENCY_TIMEOUT = 300.0

# Octal only, with or without a leading 0/0o: "640", "0640", "2775", "0o640". Kolla before 2026
# read "644" as decimal 644 (= 0o1204); we never do (LP#2154269).
_PERM = re.compile(r"^(?:0o)?([0-7]{3,4})$")
_OWNER_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")
_HOST_PORT = re.compile(r"^(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>[0-9]{1,5})$")


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
class ServiceConfig:
    """The whole service config, validated."""

    path: str
    command: Optional[str] = None
    config_files: Tuple[ConfigFileEntry, ...] = ()
    directories: Tuple[PathEntry, ...] = ()
    files: Tuple[PathEntry, ...] = ()
    permissions: Tuple[PermissionEntry, ...] = ()
    dependencies: Tuple[Dependency, ...] = ()
    dependency_timeout: float = DEFAULT_DEPENDENCY_TIMEOUT
    user: Optional[str] = None


def default_config_path(config_dir: Path) -> Path:
    """
    The config file Kolla would read in ``config_dir``: ``config.yaml`` when it exists (Kolla
    master, d6910f01d), else ``config.json``.

    Args:
        config_dir: the folder, ``/var/lib/kolla/config_files`` in an image.

    Returns:
        The path to read (it may not exist; :func:`load_config` reports that).
    """
    yaml_path = config_dir / "config.yaml"
    return yaml_path if yaml_path.is_file() else config_dir / "config.json"


def load_config(path: Path) -> ServiceConfig:
    """
    Read and validate a config file (YAML when its name ends in ``.yaml``/``.yml``, else JSON).

    Args:
        path: the config file.

    Returns:
        The validated config.

    Raises:
        ConfigError: the file is missing, unreadable, not JSON/YAML, or invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8"
        raise ConfigError(f"cannot read the service config: {reason}", file=str(path)) from err
    return parse_config(_decode(text, path), str(path))


def _decode(text: str, path: Path) -> Any:
    if path.suffix in (".yaml", ".yml"):
        # Imported here: PyYAML costs ~18 ms at start-up and most images ship config.json (issue #7).
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"not valid YAML: {_one_line(str(err))}", file=str(path)) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"not valid JSON: {err.msg} at line {err.lineno}", file=str(path)) from err


def _one_line(text: str) -> str:
    return " ".join(text.split())


def parse_config(data: Any, path: str) -> ServiceConfig:
    """
    Validate decoded config data and build the :class:`ServiceConfig`.

    Args:
        data: what ``json.load``/``yaml.safe_load`` returned.
        path: the config file's path, for messages.

    Returns:
        The validated config.

    Raises:
        ConfigError: naming the entry and field that is wrong.
    """
    top = _Fields(data, "config", path)
    config = ServiceConfig(
        path=path,
        command=top.string("command", required=False),
        config_files=tuple(_config_file(f, i) for i, f in top.entries("config_files")),
        directories=tuple(_path_entry(f, "directories", i) for i, f in top.entries("directories")),
        files=tuple(_path_entry(f, "files", i) for i, f in top.entries("files")),
        permissions=tuple(_permission(f, i) for i, f in top.entries("permissions")),
        dependencies=tuple(_dependency_entry(f, i) for i, f in top.entries("dependencies")),
        dependency_timeout=top.positive_number("dependency_timeout", DEFAULT_DEPENDENCY_TIMEOUT),
        user=top.string("user", required=False),
    )
    top.reject_unknown()
    return config


def _config_file(fields: _Fields, index: int) -> ConfigFileEntry:
    preserve = fields.boolean("preserve_properties")
    entry = ConfigFileEntry(
        index=index,
        source=fields.string("source", absolute=True),
        dest=fields.string("dest", absolute=True),
        owner=fields.owner("owner", required=not preserve),
        perm=fields.perm("perm", required=not preserve),
        optional=fields.boolean("optional"),
        merge=fields.boolean("merge"),
        preserve_properties=preserve,
        template=fields.boolean("template"),
    )
    fields.reject_unknown()
    return entry


def _path_entry(fields: _Fields, section: str, index: int) -> PathEntry:
    entry = PathEntry(
        section=section,
        index=index,
        path=fields.string("path", absolute=True),
        owner=fields.required_owner("owner"),
        perm=fields.required_perm("perm"),
    )
    fields.reject_unknown()
    return entry


def _permission(fields: _Fields, index: int) -> PermissionEntry:
    entry = PermissionEntry(
        index=index,
        path=fields.string("path", absolute=True),
        owner=fields.required_owner("owner"),
        perm=fields.perm("perm", required=False),
        recurse=fields.boolean("recurse"),
        exclude=fields.regexes("exclude"),
    )
    fields.reject_unknown()
    return entry


def _dependency_entry(fields: _Fields, index: int) -> Dependency:
    entry = f"dependencies[{index}].tcp"
    dependency = parse_dependency(fields.string("tcp"), entry, config_path=fields.path)
    fields.reject_unknown()
    return dependency


def parse_dependency(text: str, entry: str, *, config_path: Optional[str] = None) -> Dependency:
    """
    Parse ``host:port`` (``[v6addr]:port`` for IPv6).

    Args:
        text: the endpoint.
        entry: where it came from, for messages (``dependencies[0].tcp``, ``KOLLA_ENTRY_DEPENDENCIES``).
        config_path: the config file, when it came from one.

    Returns:
        The dependency.

    Raises:
        ConfigError: not ``host:port`` or the port is not 1-65535.
    """
    match = _HOST_PORT.match(text.strip())
    port = int(match.group("port")) if match else 0
    if match is None or not 0 < port < 65536:
        raise ConfigError(
            f"expected host:port (or [ipv6]:port) with a port 1-65535, got {text!r}",
            entry=entry, file=config_path,
        )
    return Dependency(host=match.group("ip6") or match.group("host"), port=port, entry=entry)


def dependencies_from_env(value: str) -> Tuple[Dependency, ...]:
    """
    Parse ``KOLLA_ENTRY_DEPENDENCIES``: ``host:port,host:port`` (empty items ignored).

    Raises:
        ConfigError: an item is not ``host:port``.
    """
    items = [item.strip() for item in value.split(",") if item.strip()]
    return tuple(parse_dependency(item, "KOLLA_ENTRY_DEPENDENCIES") for item in items)


def parse_perm(value: str) -> Optional[int]:
    """
    ``"0640"``, ``"640"``, ``"2775"``, ``"0o640"`` -> the mode as an int (always octal); None if invalid.
    """
    match = _PERM.match(value)
    return int(match.group(1), 8) if match else None


def parse_owner(value: str) -> Optional[Owner]:
    """``"user"``, ``"user:"``, ``"user:group"`` (names or ids) -> :class:`Owner`; None if invalid."""
    user, sep, group = value.partition(":")
    if not _OWNER_PART.match(user) or (group and not _OWNER_PART.match(group)) or ":" in group:
        return None
    return Owner(user, group or None) if sep else Owner(user)


class _Fields:
    """Reads one JSON object, remembering which keys were used, and names the entry in errors."""

    def __init__(self, data: Any, entry: str, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"expected an object (mapping), got {_kind(data)}", entry=entry, file=path)
        self.data: Dict[str, Any] = data
        self.entry = entry
        self.path = path
        self._used: List[str] = []

    def _error(self, key: str, message: str) -> ConfigError:
        where = key if self.entry == "config" else f"{self.entry}.{key}"
        return ConfigError(message, entry=where, file=self.path)

    def _get(self, key: str, required: bool) -> Any:
        self._used.append(key)
        value = self.data.get(key)
        if value is None and required:
            raise self._error(key, "is required")
        return value

    def string(self, key: str, *, required: bool = True, absolute: bool = False) -> Any:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self._error(key, f"expected a non-empty string, got {_kind(value)}")
        if absolute and not value.startswith("/"):
            raise self._error(key, f"expected an absolute path, got {value!r}")
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(key, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._error(key, f"expected true or false, got {_kind(value)}")
        return value

    def positive_number(self, key: str, default: float) -> float:
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self._error(key, f"expected a positive number of seconds, got {value!r}")
        return float(value)

    def perm(self, key: str, *, required: bool) -> Optional[int]:
        value = self._get(key, required)
        if value is None:
            return None
        # A YAML 0640 arrives as the int 416 and a YAML 640 as decimal 640: refuse both rather
        # than guess (Kolla's decimal misreading, LP#2154269).
        parsed = parse_perm(value) if isinstance(value, str) else None
        if parsed is None:
            raise self._error(key, f"expected an octal mode string such as \"0640\" (quoted), got {value!r}")
        return parsed

    def required_perm(self, key: str) -> int:
        value = self.perm(key, required=True)
        assert value is not None  # required=True raised otherwise
        return value

    def owner(self, key: str, *, required: bool) -> Optional[Owner]:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        parsed = parse_owner(value) if isinstance(value, str) else None
        if parsed is None:
            raise self._error(key, f"expected \"user\", \"user:\" or \"user:group\", got {value!r}")
        return parsed

    def required_owner(self, key: str) -> Owner:
        value = self.owner(key, required=True)
        assert value is not None  # required=True raised otherwise
        return value

    def regexes(self, key: str) -> Tuple[str, ...]:
        value = self._get(key, False)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._error(key, f"expected a list of regular expressions, got {_kind(value)}")
        for item in value:
            try:
                re.compile(item)
            except re.error as err:
                raise self._error(key, f"invalid regular expression {item!r}: {err}") from err
        return tuple(value)

    def entries(self, key: str) -> List[Tuple[int, _Fields]]:
        value = self._get(key, False)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._error(key, f"expected a list, got {_kind(value)}")
        return [(i, _Fields(item, f"{key}[{i}]", self.path)) for i, item in enumerate(value)]

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.data) - set(self._used))
        if unknown:
            raise self._error(unknown[0], f"unknown key (known: {', '.join(sorted(set(self._used)))})")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def as_mapping(config: ServiceConfig) -> Mapping[str, Any]:
    """A short summary for the ``config_loaded`` event (counts only; no values)."""
    return {
        "config_files": len(config.config_files),
        "directories": len(config.directories),
        "files": len(config.files),
        "permissions": len(config.permissions),
        "dependencies": len(config.dependencies),
    }
