"""
File names in diff headers: git's C-quoted names, ``diff --git`` lines, ``---``/``+++`` lines.

Helpers of :mod:`kolla_entry.patching.parse`; everything works on bytes and is linear in the line length.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Tuple

from kolla_entry.errors import PatchInvalid

DEV_NULL = "/dev/null"

# git's quote_c_style escapes (git: quote.c); any other byte after a backslash is a
# three-digit octal escape.
_C_ESCAPES = {
    ord("a"): 7, ord("b"): 8, ord("t"): 9, ord("n"): 10, ord("v"): 11,
    ord("f"): 12, ord("r"): 13, ord('"'): 34, ord("\\"): 92,
}
_OCTAL = frozenset(b"01234567")

# GNU diff -u timestamps: ``1970-01-01 00:00:00.000000000 +0000`` (any zone offset).
_TIMESTAMP = re.compile(
    rb"^(19(?:70-01-01|69-12-31)) (\d\d):(\d\d):(\d\d)(?:\.(\d+))? ([+-])(\d\d)(\d\d)$"
)


# Dates GNU patch reads after a name when no TAB separates them (old difflib, some editors):
# ``2009-12-27 16:08:28[.000000000] [+0100]`` (diff -u) and ctime's ``Sun Dec 27 16:08:28 2009``.
_SPACED_STAMP = re.compile(
    rb" +((?:\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d(?:\.\d+)?)?(?: ?[+-]\d{4})?)"
    rb"|(?:[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d(?: [A-Z]{3,5})? \d{4}(?: [+-]\d{4})?)) *$"
)
# The longest date _SPACED_STAMP reads, with room for padding: only a line's tail is searched, so a
# long header line costs no more than a short one.
_STAMP_TAIL = 80
# svn diff dates a file added in the working copy so; GNU patch reads it as an absent old file.
_SVN_ABSENT = b"(revision 0)"


def decode_path(raw: bytes) -> str:
    """Paths are str everywhere: UTF-8, undecodable bytes kept as surrogates."""
    return raw.decode("utf-8", "surrogateescape")


def unquote(line: bytes, start: int, *, patch: str) -> Tuple[bytes, int]:
    """
    Decode the C-quoted name that begins with ``"`` at ``line[start]``.

    Args:
        line: the header line.
        start: index of the opening quote.
        patch: the patch name, for errors.

    Returns:
        The decoded bytes and the index just after the closing quote.

    Raises:
        PatchInvalid: the quoted name is not terminated or has a bad escape.
    """
    out = bytearray()
    i = start + 1
    end = len(line)
    while i < end:
        byte = line[i]
        if byte == 0x22:  # closing quote
            return bytes(out), i + 1
        if byte != 0x5C:  # plain byte
            out.append(byte)
            i += 1
            continue
        escaped = line[i + 1:i + 2]
        if escaped and escaped[0] in _C_ESCAPES:
            out.append(_C_ESCAPES[escaped[0]])
            i += 2
            continue
        digits = line[i + 1:i + 4]
        if len(digits) != 3 or not all(d in _OCTAL for d in digits) or int(digits, 8) > 255:
            raise PatchInvalid(
                f"bad escape in the quoted file name {_show(line)}; regenerate the patch with git diff",
                patch=patch,
            )
        out.append(int(digits, 8))
        i += 4
    raise PatchInvalid(
        f"unterminated quoted file name {_show(line)}; regenerate the patch with git diff", patch=patch
    )


def header_name(rest: bytes, *, patch: str) -> Tuple[Optional[str], bytes]:
    """
    The name and timestamp of a ``---``/``+++`` line, given the text after ``--- ``.

    Args:
        rest: the line after its 4-byte marker, without the line terminator.
        patch: the patch name, for errors.

    Returns:
        The path exactly as written (prefix kept; None for ``/dev/null``) and the timestamp
        that followed a TAB, or a recognised date that followed a space (empty when none).

    Raises:
        PatchInvalid: the name is empty or badly quoted.
    """
    if rest.startswith(b'"'):
        name, end = unquote(rest, 0, patch=patch)
        stamp = rest[end:].strip()
    else:
        name, _, stamp = rest.partition(b"\t")
        if not stamp:
            name, stamp = _split_spaced_stamp(name)
        stamp = stamp.strip()
    if not name:
        raise PatchInvalid(f"file header {_show(rest)} names no file", patch=patch)
    path = decode_path(name)
    return (None if path == DEV_NULL else path), stamp


def _split_spaced_stamp(rest: bytes) -> Tuple[bytes, bytes]:
    """A name without a TAB: a date after a space is GNU patch's timestamp, not part of the name."""
    cut = max(len(rest) - _STAMP_TAIL, 0)
    found = _SPACED_STAMP.search(rest, cut)
    if found is not None and found.start() > 0 and rest[:found.start()].strip():
        return rest[:found.start()], found.group(1)
    # A YAML round trip may have left trailing blanks: never part of a name.
    return rest.rstrip(), b""


def marks_absent(stamp: bytes) -> bool:
    """
    True when a header's timestamp says the file does not exist on that side.

    GNU diff -N dates absent files at the epoch; svn diff marks an added file ``(revision 0)``.
    """
    return stamp == _SVN_ABSENT or is_epoch(stamp)


def is_epoch(stamp: bytes) -> bool:
    """
    True when a diff timestamp is the Unix epoch in any zone: GNU diff -N dates absent files so.

    Args:
        stamp: the text after the TAB of a ``---``/``+++`` line.

    Returns:
        Whether it denotes 1970-01-01 00:00:00 UTC.
    """
    found = _TIMESTAMP.match(stamp)
    if found is None:
        return False
    day, hour, minute, second, fraction, sign, zone_h, zone_m = found.groups()
    if fraction is not None and fraction.strip(b"0"):
        return False
    local = (-86400 if day.startswith(b"1969") else 0) + int(hour) * 3600 + int(minute) * 60 + int(second)
    offset = (int(zone_h) * 3600 + int(zone_m) * 60) * (1 if sign == b"+" else -1)
    return local - offset == 0


def git_names(rest: bytes, extended: Dict[str, bytes], *, patch: str) -> Tuple[str, str]:
    """
    The two names of a ``diff --git <old> <new>`` line, prefixes kept.

    Args:
        rest: the line after ``diff --git ``.
        extended: the extended header lines seen (``rename from`` etc., raw values).
        patch: the patch name, for errors.

    Returns:
        The old and the new name as they appear on the line (``a/x``, ``b/x``).

    Raises:
        PatchInvalid: the names cannot be told apart or are badly quoted.
    """
    if rest.startswith(b'"'):
        old, end = unquote(rest, 0, patch=patch)
        if rest[end:end + 1] != b" ":
            raise PatchInvalid(f"cannot read the names in diff --git {_show(rest)}", patch=patch)
        return decode_path(old), _second_name(rest[end + 1:], patch=patch)
    if rest.endswith(b'"') and b' "' in rest:
        # git quotes any name holding a quote, so an unquoted first name holds none.
        split = rest.index(b' "')
        return decode_path(rest[:split]), _second_name(rest[split + 1:], patch=patch)
    return _split_unquoted(decode_path(rest), extended, patch=patch)


def extended_name(value: bytes, *, patch: str) -> str:
    """A ``rename from``/``copy to`` value: quoted or plain, without prefix."""
    if value.startswith(b'"'):
        return decode_path(unquote(value, 0, patch=patch)[0])
    return decode_path(value)


def _second_name(token: bytes, *, patch: str) -> str:
    if token.startswith(b'"'):
        name, end = unquote(token, 0, patch=patch)
        if token[end:].strip():
            raise PatchInvalid(f"unexpected text after the names in diff --git {_show(token)}", patch=patch)
        return decode_path(name)
    return decode_path(token)


def _split_unquoted(rest: str, extended: Dict[str, bytes], *, patch: str) -> Tuple[str, str]:
    """Names may hold spaces: use rename/copy values, else the equal-halves rule git itself uses."""
    for source, dest in (("rename from", "rename to"), ("copy from", "copy to")):
        if source in extended and dest in extended:
            found = _split_known(rest, extended_name(extended[source], patch=patch),
                                 extended_name(extended[dest], patch=patch))
            if found is not None:
                return found
    if rest.count(" ") == 1:
        old, new = rest.split(" ")
        return old, new
    if len(rest) % 2 == 1 and rest[len(rest) // 2] == " ":
        old, new = rest[:len(rest) // 2], rest[len(rest) // 2 + 1:]
        if old.partition("/")[2] == new.partition("/")[2] or old == new:
            return old, new
    raise PatchInvalid(
        f"cannot tell the two file names apart in 'diff --git {rest}'; regenerate the patch with git diff",
        patch=patch,
    )


def _split_known(rest: str, old_name: str, new_name: str) -> Optional[Tuple[str, str]]:
    """``rest`` is ``<prefix a><old_name> <prefix b><new_name>``; re-add the prefixes seen."""
    if not rest.endswith(new_name):
        return None
    left = rest[:len(rest) - len(new_name)]
    space = left.rfind(" ")
    if space < 0:
        return None
    head, new_prefix = left[:space], left[space + 1:]
    if not head.endswith(old_name):
        return None
    return head, new_prefix + new_name


def _show(raw: bytes) -> str:
    """A header for an error message: decoded, cut to a readable length."""
    text = raw.decode("utf-8", "backslashreplace")
    return repr(text if len(text) <= 120 else text[:117] + "...")
