"""
Hunk bodies for :mod:`kolla_entry.patching.parse`: read by the counts of their ``@@`` header.

Also the line cursor both modules share. Everything is one pass over the lines.
"""

from __future__ import annotations

from dataclasses import replace
from typing import List, Optional, Tuple

from unidiff import constants as udc

from kolla_entry.errors import PatchInvalid
from kolla_entry.patching.model import ADD, CONTEXT, REMOVE, Hunk, HunkLine

REGENERATE = "regenerate it with git diff or diff -ruN and do not edit hunks by hand"
_MAX_COUNT_DIGITS = 12


class Reader:
    """A cursor over the patch lines (``\\n`` removed, ``\\r`` kept)."""

    def __init__(self, lines: List[bytes], name: str) -> None:
        self.lines = lines
        self.name = name
        self.pos = 0

    def at_end(self, ahead: int = 0) -> bool:
        """Whether the line ``ahead`` of the cursor is past the end."""
        return self.pos + ahead >= len(self.lines)

    def raw(self, ahead: int = 0) -> bytes:
        """A line as written (hunk body: its ``\\r`` belongs to the file's text)."""
        return self.lines[self.pos + ahead]

    def bare(self, ahead: int = 0) -> bytes:
        """A header line as written, without the ``\\r`` of a patch saved with CRLF."""
        line = self.lines[self.pos + ahead]
        return line[:-1] if line.endswith(b"\r") else line

    def line_no(self) -> int:
        """The 1-based patch line under the cursor."""
        return self.pos + 1

    def invalid(self, message: str, *, file: Optional[str] = None,
                hunk: Optional[int] = None) -> PatchInvalid:
        """A PatchInvalid naming this patch."""
        return PatchInvalid(message, patch=self.name, file=file, hunk=hunk)


def header(reader: Reader, line: bytes) -> bytes:
    """
    Check a header line: no file name or hunk header can hold a NUL byte.

    Args:
        reader: the cursor, for the error's line number.
        line: the header line.

    Returns:
        The line, unchanged.

    Raises:
        PatchInvalid: the line holds a NUL byte.
    """
    if b"\0" in line:
        raise reader.invalid(f"NUL byte in the header at patch line {reader.line_no()}; the file is corrupt")
    return line


def read_hunks(reader: Reader, file: str) -> Tuple[Hunk, ...]:
    """
    Read the hunks that start at the cursor, and check that nothing hunk-like follows them.

    Args:
        reader: the cursor, on the first ``@@`` line (or not, then no hunk is read).
        file: the file's path, for errors.

    Returns:
        The hunks, indexed from 1.

    Raises:
        PatchInvalid: a hunk header does not parse or a body does not match its counts.
    """
    hunks: List[Hunk] = []
    while not reader.at_end() and reader.bare().startswith(b"@@"):
        hunks.append(_read_hunk(reader, file, len(hunks) + 1))
    if hunks:
        _check_after_hunk(reader, file, hunks[-1])
    return tuple(hunks)


def _parse_hunkheader(reader: Reader, file: str, index: int) -> Tuple[int, int, int, int]:
    text = header(reader, reader.bare()).decode("latin-1")
    match = udc.RE_HUNK_HEADER.match(text)
    numbers = match.groups()[:4] if match else ()
    if match is None or any(n is not None and len(n) > _MAX_COUNT_DIGITS for n in numbers):
        raise reader.invalid(
            f"cannot parse the hunk header {text[:80]!r} at patch line {reader.line_no()} "
            f"(expected '@@ -start,count +start,count @@'); {REGENERATE}", file=file, hunk=index,
        )
    old_start, old_len, new_start, new_len = (int(n) if n is not None else 1 for n in numbers)
    return old_start, old_len, new_start, new_len


def _read_hunk(reader: Reader, file: str, index: int) -> Hunk:
    """Read exactly the lines the ``@@`` counts announce (see the module docstring)."""
    header_line = reader.line_no()
    old_start, old_len, new_start, new_len = _parse_hunkheader(reader, file, index)
    reader.pos += 1
    lines: List[HunkLine] = []
    old_left, new_left = old_len, new_len
    while old_left > 0 or new_left > 0:
        if reader.at_end():
            _fill_dropped_blank_context(reader, lines, old_left, new_left, old_start, file, index)
            break
        op, text = _body_line(reader, lines, file, index, (old_left, new_left))
        reader.pos += 1
        if op is None:
            continue
        old_left -= op != ADD
        new_left -= op != REMOVE
        lines.append(HunkLine(op, text))
    if not reader.at_end() and reader.raw().startswith(b"\\"):
        _mark_no_newline(reader, lines, file, index)
        reader.pos += 1
    return Hunk(index=index, old_start=old_start, old_len=old_len, new_start=new_start, new_len=new_len,
                lines=tuple(lines), patch_line=header_line)


def _body_line(reader: Reader, lines: List[HunkLine], file: str, index: int,
               left: Tuple[int, int]) -> Tuple[Optional[str], bytes]:
    """One body line as (op, text); (None, b"") for a ``\\`` marker, applied to the line before."""
    raw = reader.raw()
    # A ConfigMap round trip strips trailing blanks: an empty line was a blank context line.
    op = CONTEXT if raw in (b"", b"\r") else raw[:1].decode("latin-1")
    text = raw if raw in (b"", b"\r") else raw[1:]
    if op == "\\":
        _mark_no_newline(reader, lines, file, index)
        return None, b""
    fits = {CONTEXT: left[0] > 0 and left[1] > 0, REMOVE: left[0] > 0, ADD: left[1] > 0}
    if not fits.get(op, False):
        what = "an unexpected line" if op not in fits else f"one '{op}' line too many"
        raise reader.invalid(
            f"hunk body has {what} at patch line {reader.line_no()}: the @@ header still expects "
            f"{left[0]} old and {left[1]} new lines; {REGENERATE}", file=file, hunk=index,
        )
    return op, text


def _mark_no_newline(reader: Reader, lines: List[HunkLine], file: str, index: int) -> None:
    if not lines:
        raise reader.invalid(f"'\\' marker at patch line {reader.line_no()} follows no hunk line",
                             file=file, hunk=index)
    lines[-1] = replace(lines[-1], newline=False)


def _fill_dropped_blank_context(reader: Reader, lines: List[HunkLine], old_left: int, new_left: int,
                                old_start: int, file: str, index: int) -> None:
    """
    The patch ended inside a hunk: accept it only when the missing lines are blank context.

    A YAML block scalar drops the patch's trailing empty lines, i.e. the last hunk's trailing
    blank context. Trailing context is never longer than leading context, except in a hunk
    at the top of the file, whose leading context the file start cut short.
    """
    leading = next((n for n, line in enumerate(lines) if line.op != CONTEXT), len(lines))
    trailing = next((n for n, line in enumerate(reversed(lines)) if line.op != CONTEXT), len(lines))
    plausible = old_start <= 1 or trailing + old_left <= leading
    if old_left != new_left or not plausible or old_left > len(reader.lines):
        raise reader.invalid(
            f"patch ends inside the hunk: the @@ header still expects {old_left} old and {new_left} new "
            f"lines; the patch was cut short, {REGENERATE}", file=file, hunk=index,
        )
    lines.extend([HunkLine(CONTEXT, b"")] * old_left)


def _check_after_hunk(reader: Reader, file: str, last: Hunk) -> None:
    """
    A line that looks like hunk body right after a complete hunk means the counts are short.

    Exceptions: the next file's ``---``/``+++`` header and format-patch's ``-- `` signature.
    Empty lines are skipped first (mbox separators, or a blank at the end of a hand-made file).
    """
    ahead = 0
    while not reader.at_end(ahead) and reader.raw(ahead) in (b"", b"\r"):
        ahead += 1
    if reader.at_end(ahead):
        return
    line = reader.bare(ahead)
    signature = line.rstrip() == b"--" and (
        reader.at_end(ahead + 1) or reader.raw(ahead + 1)[:1] not in (b" ", b"+", b"-", b"\\", b"@", b"")
    )
    header = line.startswith(b"--- ") and not reader.at_end(ahead + 1) and reader.bare(ahead + 1).startswith(b"+++ ")
    if line[:1] in (b" ", b"+", b"-", b"\\") and not (signature or header):
        raise reader.invalid(
            f"line {reader.line_no() + ahead} continues hunk #{last.index} (at patch line {last.patch_line}) "
            f"beyond the line counts of its @@ header; {REGENERATE}", file=file, hunk=last.index,
        )
