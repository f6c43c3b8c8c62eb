"""
The service config: Kolla's ``config.json`` / ``config.yaml`` turned into frozen values.

Raw JSON/YAML stops here (STYLE.md 6): :func:`parse_config` checks every key and type and builds a
:class:`ServiceConfig`; an unknown key, a missing field or a bad value is a :class:`ConfigError`
naming the entry and field (``config_files[2].perm``), raised before anything is done.

Kolla's format (kolla:docker/base/set_configs.py) plus our extensions: ``template`` on a
``config_files`` entry, ``dependencies`` (``tcp`` and ``command``), ``dependency_timeout``, ``user`` and
``overlay``.

The value classes live in :mod:`kolla_entry.start.model` and the per-field readers in
:mod:`kolla_entry.start.fields`; import both from here.
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from kolla_entry.errors import ConfigError
from kolla_entry.start.fields import Fields, parse_owner, parse_perm
from kolla_entry.start.model import (
    DEFAULT_DEPENDENCY_TIMEOUT,
    CheckDependency,
    ConfigFileEntry,
    Dependency,
    Owner,
    PathEntry,
    PermissionEntry,
    ServiceConfig,
)

__all__ = [
    "DEFAULT_DEPENDENCY_TIMEOUT",
    "CheckDependency",
    "ConfigFileEntry",
    "Dependency",
    "Owner",
    "PathEntry",
    "PermissionEntry",
    "ServiceConfig",
    "default_config_path",
    "dependencies_from_env",
    "load_config",
    "parse_check",
    "parse_config",
    "parse_dependency",
    "parse_owner",
    "parse_perm",
]

if TYPE_CHECKING:
    from _typeshed import StrPath

_HOST_PORT = re.compile(r"^(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>[0-9]{1,5})$")


def default_config_path(config_dir: StrPath) -> str:
    """
    The config file Kolla would read in ``config_dir``: ``config.yaml`` when it exists (Kolla
    master, d6910f01d), else ``config.json``.

    Args:
        config_dir: the folder, ``/var/lib/kolla/config_files`` in an image.

    Returns:
        The path to read (it may not exist; :func:`load_config` reports that).
    """
    yaml_path = os.path.join(config_dir, "config.yaml")
    return yaml_path if os.path.isfile(yaml_path) else os.path.join(config_dir, "config.json")


def load_config(path: StrPath) -> ServiceConfig:
    """
    Read and validate a config file (YAML when its name ends in ``.yaml``/``.yml``, else JSON).

    Args:
        path: the config file.

    Returns:
        The validated config.

    Raises:
        ConfigError: the file is missing, unreadable, not JSON/YAML, or invalid.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8"
        raise ConfigError(f"cannot read the service config: {reason}", file=name) from err
    return parse_config(_decode(text, name), name)


def _decode(text: str, path: str) -> Any:
    if os.path.splitext(path)[1] in (".yaml", ".yml"):
        # Imported here: PyYAML costs ~18 ms at start-up and most images ship config.json (issue #7).
        import yaml

        try:
            _refuse_yaml_duplicates(yaml.compose(text, Loader=yaml.SafeLoader), path)
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"not valid YAML: {_one_line(str(err))}", file=path) from err
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, path))
    except json.JSONDecodeError as err:
        raise ConfigError(f"not valid JSON: {err.msg} at line {err.lineno}", file=path) from err


def _refuse_yaml_duplicates(root: Any, path: str) -> None:
    # PyYAML, like json.loads, lets the last of two equal keys win; refuse as for JSON.
    import yaml

    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name is not None and name in seen:
                    raise ConfigError(f"the key {name!r} appears twice in one mapping (line "
                                      f"{key.start_mark.line + 1}); keep one", file=path)
                seen.add(name)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _unique_keys(pairs: List[Tuple[str, Any]], path: str) -> Dict[str, Any]:
    # json.loads lets the last of two equal keys win: two "perm"s in one entry would go unnoticed.
    result: Dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ConfigError(f"the key {key!r} appears twice in one object; keep one", file=path)
        result[key] = value
    return result


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
    top = Fields(data, "config", path)
    dependencies = [_dependency_entry(f, i) for i, f in top.entries("dependencies")]
    config = ServiceConfig(
        path=path,
        command=top.string("command", required=False),
        config_files=tuple(_config_file(f, i) for i, f in top.entries("config_files")),
        directories=tuple(_path_entry(f, "directories", i) for i, f in top.entries("directories")),
        files=tuple(_path_entry(f, "files", i) for i, f in top.entries("files")),
        permissions=tuple(_permission(f, i) for i, f in top.entries("permissions")),
        dependencies=tuple(d for d in dependencies if isinstance(d, Dependency)),
        checks=tuple(d for d in dependencies if isinstance(d, CheckDependency)),
        dependency_timeout=top.positive_number("dependency_timeout", DEFAULT_DEPENDENCY_TIMEOUT),
        user=top.string("user", required=False),
        overlay=top.string("overlay", required=False, absolute=True),
    )
    top.reject_unknown()
    return config


def _config_file(fields: Fields, index: int) -> ConfigFileEntry:
    preserve = fields.boolean("preserve_properties")
    entry = ConfigFileEntry(
        position=index,
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


def _path_entry(fields: Fields, section: str, index: int) -> PathEntry:
    entry = PathEntry(
        section=section,
        position=index,
        path=fields.string("path", absolute=True),
        owner=fields.required_owner("owner"),
        perm=fields.required_perm("perm"),
    )
    fields.reject_unknown()
    return entry


def _permission(fields: Fields, index: int) -> PermissionEntry:
    entry = PermissionEntry(
        position=index,
        path=fields.string("path", absolute=True),
        owner=fields.required_owner("owner"),
        perm=fields.perm("perm", required=False),
        recurse=fields.boolean("recurse"),
        exclude=fields.regexes("exclude"),
    )
    fields.reject_unknown()
    return entry


def _dependency_entry(fields: Fields, index: int) -> Union[Dependency, CheckDependency]:
    tcp = fields.string("tcp", required=False)
    command = fields.string("command", required=False)
    fields.reject_unknown()
    if (tcp is None) == (command is None):
        raise ConfigError("expected exactly one of \"tcp\" (host:port) or \"command\" (a check that exits 0 "
                          "when ready)", entry=f"dependencies[{index}]", file=fields.path)
    if tcp is not None:
        return parse_dependency(tcp, f"dependencies[{index}].tcp", config_path=fields.path)
    return parse_check(command, f"dependencies[{index}].command", config_path=fields.path)


def parse_check(text: str, entry: str, *, config_path: Optional[str] = None) -> CheckDependency:
    """
    Parse a check command, split like ``command`` (POSIX shell words, no shell features).

    Raises:
        ConfigError: unbalanced quotes or an empty command.
    """
    from kolla_entry.start.execute import split_command

    try:
        return CheckDependency(argv=split_command(text), entry=entry)
    except ConfigError as err:
        raise ConfigError(err.message, entry=entry, file=config_path) from err


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
    host = match.group("host")
    # The resolver raises UnicodeError (not OSError) on an empty or over-long label: refuse it here.
    if host is not None and not all(0 < len(label) < 64 for label in host.rstrip(".").split(".")):
        raise ConfigError(f"not a valid host name (empty label or one longer than 63 characters): {text!r}",
                          entry=entry, file=config_path)
    return Dependency(host=match.group("ip6") or host, port=port, entry=entry)


def dependencies_from_env(value: str) -> Tuple[Dependency, ...]:
    """
    Parse ``KOLLA_ENTRY_DEPENDENCIES``: ``host:port,host:port`` (empty items ignored).

    Args:
        value: the variable's value.

    Returns:
        The dependencies, in order.

    Raises:
        ConfigError: an item is not ``host:port``.
    """
    items = [item.strip() for item in value.split(",") if item.strip()]
    return tuple(parse_dependency(item, "KOLLA_ENTRY_DEPENDENCIES") for item in items)

