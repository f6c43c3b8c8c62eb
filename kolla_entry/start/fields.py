"""
Field readers for the service config: one JSON/YAML object checked key by key.

:class:`Fields` reads one object, remembers which keys were asked for (so the rest are reported
as unknown) and names the entry and field in every :class:`~kolla_entry.errors.ConfigError`;
:func:`parse_perm` and :func:`parse_owner` read the two Kolla value formats that need care.
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Tuple

from kolla_entry.errors import ConfigError
from kolla_entry.start.model import Owner

# Octal only, with or without a leading 0/0o: "640", "0640", "2775", "0o640". Kolla before 2026
# read "644" as decimal 644 (= 0o1204); we never do (LP#2154269).
_PERM = re.compile(r"^(?:0o)?([0-7]{3,4})$")
_OWNER_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")


def parse_perm(value: str) -> Optional[int]:
    """
    Read a Kolla ``perm`` string, always as octal.

    Args:
        value: ``"0640"``, ``"640"``, ``"2775"`` or ``"0o640"``.

    Returns:
        The mode as an int, or None when ``value`` is not 3 or 4 octal digits.
    """
    match = _PERM.match(value)
    return int(match.group(1), 8) if match else None


def parse_owner(value: str) -> Optional[Owner]:
    """
    Read a Kolla ``owner`` string.

    Args:
        value: ``"user"``, ``"user:"`` or ``"user:group"``, names or numeric ids.

    Returns:
        The :class:`Owner`, or None when a part is not a valid name or id.
    """
    user, sep, group = value.partition(":")
    if not _OWNER_PART.match(user) or (group and not _OWNER_PART.match(group)) or ":" in group:
        return None
    return Owner(user, group or None) if sep else Owner(user)


class Fields:
    """
    Reads one JSON object, remembering which keys were used, and names the entry in errors.

    Every reader raises :class:`~kolla_entry.errors.ConfigError` naming ``entry.key`` when the
    value has the wrong type or form, or is required and absent (null counts as absent).
    """

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
        """A non-empty string (an absolute path if ``absolute``); None when optional and absent."""
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            got = "an empty string" if isinstance(value, str) else _kind(value)
            raise self._error(key, f"expected a non-empty string, got {got}")
        if "\x00" in value:
            # Every string here ends up as a path, a user name or an argv item: a NUL in any of
            # them makes the OS call raise ValueError, not OSError.
            raise self._error(key, "contains a NUL character")
        if absolute and not value.startswith("/"):
            raise self._error(key, f"expected an absolute path, got {value!r}")
        return value

    def boolean(self, key: str) -> bool:
        """A JSON boolean; False when absent."""
        value = self._get(key, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._error(key, f"expected true or false, got {_kind(value)}")
        return value

    def positive_number(self, key: str, default: float) -> float:
        """A number of seconds above zero; ``default`` when absent."""
        value = self._get(key, False)
        if value is None:
            return default
        # `not value > 0` also refuses NaN, which json.loads accepts and every comparison rejects.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise self._error(key, f"expected a positive number of seconds, got {value!r}")
        return float(value)

    def perm(self, key: str, *, required: bool) -> Optional[int]:
        """A quoted octal mode string (:func:`parse_perm`); None when optional and absent."""
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
        """A mode that must be there."""
        value = self.perm(key, required=True)
        assert value is not None  # required=True raised otherwise
        return value

    def owner(self, key: str, *, required: bool) -> Optional[Owner]:
        """An owner (:func:`parse_owner`; a bare number is a uid); None when optional and absent."""
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
        """An owner that must be there."""
        value = self.owner(key, required=True)
        assert value is not None  # required=True raised otherwise
        return value

    def regexes(self, key: str) -> Tuple[str, ...]:
        """A list of valid regular expressions; empty when absent."""
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

    def entries(self, key: str) -> List[Tuple[int, Fields]]:
        """A list of objects, each with its index and its own reader named ``key[i]``."""
        value = self._get(key, False)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._error(key, f"expected a list, got {_kind(value)}")
        return [(i, Fields(item, f"{key}[{i}]", self.path)) for i, item in enumerate(value)]

    def reject_unknown(self) -> None:
        """Refuse the first key (sorted) that no reader asked for, listing the known ones."""
        # key=str: YAML keys may be numbers, booleans or null, which do not sort with strings.
        unknown = sorted(set(self.data) - set(self._used), key=str)
        if unknown:
            raise self._error(str(unknown[0]), f"unknown key (known: {', '.join(sorted(set(self._used)))})")


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
