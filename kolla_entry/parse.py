"""
Parse a patch file (``git diff``, ``git format-patch``, ``diff -ruN``) into a :class:`Patch`.

One pass over the lines, as bytes, so the cost is linear in the patch size and hunk text
keeps the exact bytes of the file (a CRLF file's ``\\r`` included). unidiff's ``PatchSet``
works on decoded text and reads a hunk body by the shape of its lines, so it cannot tell
format-patch's ``-- `` signature from a removed line, nor a ConfigMap's emptied blank
context line from the end of a hunk; we read hunk bodies by the counts of their ``@@``
header instead and use unidiff's header regexes (hunk header, git mode lines, binary
marker). Text outside a file diff (mail headers, commit message, diffstat, ``diff -ruN``
command lines, ``Only in``) is skipped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from typing import Dict, List, Optional, Tuple

from unidiff import constants as udc

from kolla_entry import _parse_names as names
from kolla_entry.errors import PatchInvalid
from kolla_entry.model import (
    ADD,
    CONTEXT,
    COPY,
    CREATE,
    DELETE,
    MODIFY,
    REMOVE,
    RENAME,
    FilePatch,
    Hunk,
    HunkLine,
    Patch,
)

# git's extended header lines (git: Documentation/diff-generate-patch.txt), by prefix.
_GIT_EXTENDED = (
    "old mode", "new mode", "deleted file mode", "new file mode", "similarity index",
    "dissimilarity index", "rename from", "rename to", "copy from", "copy to", "index",
)
_MODE_LINES = {
    "old mode": udc.RE_DIFF_GIT_OLD_MODE, "new mode": udc.RE_DIFF_GIT_NEW_MODE,
    "deleted file mode": udc.RE_DIFF_GIT_DELETED_FILE, "new file mode": udc.RE_DIFF_GIT_NEW_FILE,
}
# Symlinks and submodules cannot be applied as text: their "content" is a link or a commit.
_UNSUPPORTED_MODES = {0o120000: "symlink", 0o160000: "submodule"}
_MAX_COUNT_DIGITS = 12
_REGENERATE = "regenerate it with git diff or diff -ruN and do not edit hunks by hand"


def parse_patch(data: bytes, *, name: str) -> Patch:
    """
    Parse the bytes of one patch file.

    Args:
        data: the raw patch file.
        name: the patch's name, used in errors and kept in the result.

    Returns:
        The patch with its file patches in order (a file may appear twice in a series of commits).

    Raises:
        PatchInvalid: the patch holds no file diff, a binary diff, or a header or hunk that does
            not parse; the error names the file and hunk when known.
    """
    reader = _Reader(_split_lines(data), name)
    files: List[FilePatch] = []
    while not reader.at_end():
        line = reader.bare()
        if line.startswith(b"diff --git "):
            files.append(_read_git_file(reader))
        elif _starts_file_header(reader):
            files.append(_read_plain_file(reader))
        else:
            _check_stray(reader, line)
            reader.pos += 1
    if not files:
        raise PatchInvalid(
            "no file diff found (no '--- '/'+++ ' header followed by '@@' hunks, no 'diff --git'); "
            "check that the file is a unified diff", patch=name,
        )
    return Patch(name=name, sha256=hashlib.sha256(data).hexdigest(), files=tuple(files))


def strip_path(path: str, strip: int) -> Optional[str]:
    """
    Remove ``strip`` leading components from a path, as GNU ``patch -pN`` does.

    Runs of slashes count as one separator (``a//x`` is ``a/x``); a leading slash is the first
    separator, so ``/u/x`` with 1 gives ``u/x``.

    Args:
        path: the path as written in the patch.
        strip: how many components to remove (0 keeps the path).

    Returns:
        The remaining path, or None when the path has too few components.

    Raises:
        ValueError: ``strip`` is negative.
    """
    if strip < 0:
        raise ValueError(f"strip must be >= 0, not {strip}")
    rest = re.sub("/+", "/", path)
    for _ in range(strip):
        slash = rest.find("/")
        if slash < 0:
            return None
        rest = rest[slash + 1:]
    return rest or None


class _Reader:
    """A cursor over the patch lines (``\\n`` removed, ``\\r`` kept)."""

    def __init__(self, lines: List[bytes], name: str) -> None:
        self.lines = lines
        self.name = name
        self.pos = 0

    def at_end(self, ahead: int = 0) -> bool:
        return self.pos + ahead >= len(self.lines)

    def raw(self, ahead: int = 0) -> bytes:
        return self.lines[self.pos + ahead]

    def bare(self, ahead: int = 0) -> bytes:
        """A header line as written, without the ``\\r`` of a patch saved with CRLF."""
        line = self.lines[self.pos + ahead]
        return line[:-1] if line.endswith(b"\r") else line

    def line_no(self) -> int:
        return self.pos + 1

    def invalid(self, message: str, *, file: Optional[str] = None,
                hunk: Optional[int] = None) -> PatchInvalid:
        return PatchInvalid(message, patch=self.name, file=file, hunk=hunk)


def _split_lines(data: bytes) -> List[bytes]:
    lines = data.split(b"\n")
    if lines[-1] == b"":  # the patch's own final newline; a ConfigMap may have lost it
        lines.pop()
    return lines


def _starts_file_header(reader: _Reader) -> bool:
    return (
        reader.bare().startswith(b"--- ")
        and not reader.at_end(1)
        and reader.bare(1).startswith(b"+++ ")
    )


def _check_stray(reader: _Reader, line: bytes) -> None:
    """Outside a file diff, only a hunk or binary marker means something is wrong."""
    if line.startswith(b"@@ "):
        raise reader.invalid(
            f"hunk at patch line {reader.line_no()} has no '--- '/'+++ ' file header before it "
            f"(or the hunk before it has more lines than its @@ counts say); {_REGENERATE}"
        )
    _check_binary(reader, line, None)


def _check_binary(reader: _Reader, line: bytes, file: Optional[str]) -> None:
    text = line.decode("latin-1")
    if udc.RE_BINARY_DIFF.match(text) or text.startswith("GIT binary patch"):
        raise reader.invalid(
            f"binary file diff at patch line {reader.line_no()} cannot be applied as text; "
            "ship the file another way or drop it from the patch", file=file,
        )


def _read_git_file(reader: _Reader) -> FilePatch:
    """A ``diff --git`` section: extended headers, then ``---``/``+++`` and hunks if any."""
    start = reader.line_no()
    rest = _header(reader, reader.bare())[len(b"diff --git "):]
    reader.pos += 1
    extended = _read_extended(reader, rest)
    old_name, new_name = names.git_names(rest, extended, patch=reader.name)
    old_mode, new_mode = _modes(reader, extended, old_name)
    kind = _git_kind(extended)
    old_path: Optional[str] = None if kind == CREATE else old_name
    new_path: Optional[str] = None if kind == DELETE else new_name
    hunks: Tuple[Hunk, ...] = ()
    if _starts_file_header(reader):
        old_path, new_path, hunks = _read_header_and_hunks(reader)
        kind = _kind_from_paths(reader, kind, old_path, new_path)
    elif not reader.at_end() and reader.bare().startswith(b"--- "):
        raise reader.invalid(
            f"'---' at patch line {reader.line_no()} is not followed by '+++'; {_REGENERATE}", file=old_name
        )
    elif kind == MODIFY and old_mode is None:
        raise reader.invalid(
            f"'diff --git' at patch line {start} names no change (no hunks, rename, copy, mode change, "
            f"creation or deletion); {_REGENERATE}", file=old_name,
        )
    _check_hunks_fit(reader, kind, hunks, old_path or new_path or old_name)
    return FilePatch(old_path=old_path, new_path=new_path, kind=kind, hunks=hunks,
                     old_mode=old_mode, new_mode=new_mode, patch_line=start)


def _read_extended(reader: _Reader, rest: bytes) -> Dict[str, bytes]:
    extended: Dict[str, bytes] = {}
    while not reader.at_end():
        line = reader.bare()
        _check_binary(reader, line, names.decode_path(rest))
        key = next((k for k in _GIT_EXTENDED if line.startswith(k.encode() + b" ")), None)
        if key is None:
            break
        extended[key] = _header(reader, line)[len(key) + 1:].rstrip()
        reader.pos += 1
    return extended


def _modes(reader: _Reader, extended: Dict[str, bytes], file: str) -> Tuple[Optional[int], Optional[int]]:
    """Modes from explicit mode lines only; the mode on an ``index`` line changes nothing."""
    found: Dict[str, int] = {}
    for key, pattern in _MODE_LINES.items():
        if key not in extended:
            continue
        text = f"{key} {extended[key].decode('latin-1')}"
        match = pattern.match(text)
        if match is None or not set(match.group("mode")) <= set("01234567"):
            raise reader.invalid(f"bad mode line {text!r}; {_REGENERATE}", file=file)
        mode = int(match.group("mode"), 8)
        if mode in _UNSUPPORTED_MODES:
            raise reader.invalid(
                f"{_UNSUPPORTED_MODES[mode]} changes cannot be applied as text; "
                "drop this file from the patch",
                file=file,
            )
        found[key] = mode
    old_mode = found.get("old mode", found.get("deleted file mode"))
    new_mode = found.get("new mode", found.get("new file mode"))
    return old_mode, new_mode


def _git_kind(extended: Dict[str, bytes]) -> str:
    if "new file mode" in extended:
        return CREATE
    if "deleted file mode" in extended:
        return DELETE
    if "rename from" in extended or "rename to" in extended:
        return RENAME
    if "copy from" in extended or "copy to" in extended:
        return COPY
    return MODIFY


def _read_plain_file(reader: _Reader) -> FilePatch:
    """A ``---``/``+++`` pair without ``diff --git`` (diff -ruN, hand-made diffs)."""
    start = reader.line_no()
    old_path, new_path, hunks = _read_header_and_hunks(reader)
    kind = _kind_from_paths(reader, MODIFY, old_path, new_path)
    _check_hunks_fit(reader, kind, hunks, old_path or new_path or "")
    return FilePatch(old_path=old_path, new_path=new_path, kind=kind, hunks=hunks, patch_line=start)


def _read_header_and_hunks(reader: _Reader) -> Tuple[Optional[str], Optional[str], Tuple[Hunk, ...]]:
    """``---``/``+++`` then at least one hunk; an epoch date stands for an absent file (diff -N)."""
    header_line = reader.line_no()
    old_path, old_stamp = names.header_name(_header(reader, reader.bare())[4:], patch=reader.name)
    new_path, new_stamp = names.header_name(_header(reader, reader.bare(1))[4:], patch=reader.name)
    reader.pos += 2
    label = old_path or new_path or ""
    hunks = _read_hunks(reader, label)
    if not hunks:
        raise reader.invalid(
            f"file header at patch line {header_line} is not followed by an '@@' hunk; {_REGENERATE}",
            file=label,
        )
    if old_path is not None and names.is_epoch(old_stamp) and all(h.old_len == 0 for h in hunks):
        old_path = None
    if new_path is not None and names.is_epoch(new_stamp) and all(h.new_len == 0 for h in hunks):
        new_path = None
    if old_path is None and new_path is None:
        raise reader.invalid(
            f"file header at patch line {header_line} names no file on either side", file=label
        )
    return old_path, new_path, hunks


def _kind_from_paths(reader: _Reader, kind: str, old_path: Optional[str], new_path: Optional[str]) -> str:
    if old_path is None:
        return CREATE
    if new_path is None:
        return DELETE
    if kind in (CREATE, DELETE):
        raise reader.invalid(f"git header says {kind} but both '---' and '+++' name a file", file=old_path)
    return kind


def _check_hunks_fit(reader: _Reader, kind: str, hunks: Tuple[Hunk, ...], file: str) -> None:
    """A creation has nothing on the old side, a deletion nothing on the new side."""
    for hunk in hunks:
        if (kind == CREATE and hunk.old_len) or (kind == DELETE and hunk.new_len):
            side = "old" if kind == CREATE else "new"
            raise reader.invalid(
                f"hunk at patch line {hunk.patch_line} has {side} lines in a file {kind}; {_REGENERATE}",
                file=file, hunk=hunk.index,
            )


def _header(reader: _Reader, line: bytes) -> bytes:
    if b"\0" in line:
        raise reader.invalid(f"NUL byte in the header at patch line {reader.line_no()}; the file is corrupt")
    return line


def _read_hunks(reader: _Reader, file: str) -> Tuple[Hunk, ...]:
    hunks: List[Hunk] = []
    while not reader.at_end() and reader.bare().startswith(b"@@"):
        hunks.append(_read_hunk(reader, file, len(hunks) + 1))
    if hunks:
        _check_after_hunk(reader, file, hunks[-1])
    return tuple(hunks)


def _parse_hunk_header(reader: _Reader, file: str, index: int) -> Tuple[int, int, int, int]:
    text = _header(reader, reader.bare()).decode("latin-1")
    match = udc.RE_HUNK_HEADER.match(text)
    numbers = match.groups()[:4] if match else ()
    if match is None or any(n is not None and len(n) > _MAX_COUNT_DIGITS for n in numbers):
        raise reader.invalid(
            f"cannot parse the hunk header {text[:80]!r} at patch line {reader.line_no()} "
            f"(expected '@@ -start,count +start,count @@'); {_REGENERATE}", file=file, hunk=index,
        )
    old_start, old_len, new_start, new_len = (int(n) if n is not None else 1 for n in numbers)
    return old_start, old_len, new_start, new_len


def _read_hunk(reader: _Reader, file: str, index: int) -> Hunk:
    """Read exactly the lines the ``@@`` counts announce (see the module docstring)."""
    header_line = reader.line_no()
    old_start, old_len, new_start, new_len = _parse_hunk_header(reader, file, index)
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


def _body_line(reader: _Reader, lines: List[HunkLine], file: str, index: int,
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
            f"{left[0]} old and {left[1]} new lines; {_REGENERATE}", file=file, hunk=index,
        )
    return op, text


def _mark_no_newline(reader: _Reader, lines: List[HunkLine], file: str, index: int) -> None:
    if not lines:
        raise reader.invalid(f"'\\' marker at patch line {reader.line_no()} follows no hunk line",
                             file=file, hunk=index)
    lines[-1] = replace(lines[-1], newline=False)


def _fill_dropped_blank_context(reader: _Reader, lines: List[HunkLine], old_left: int, new_left: int,
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
            f"lines; the patch was cut short, {_REGENERATE}", file=file, hunk=index,
        )
    lines.extend([HunkLine(CONTEXT, b"")] * old_left)


def _check_after_hunk(reader: _Reader, file: str, last: Hunk) -> None:
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
    header = line.startswith(b"--- ") or line.startswith(b"+++ ")
    if line[:1] in (b" ", b"+", b"-", b"\\") and not (signature or header):
        raise reader.invalid(
            f"line {reader.line_no() + ahead} continues hunk #{last.index} (at patch line {last.patch_line}) "
            f"beyond the line counts of its @@ header; {_REGENERATE}", file=file, hunk=last.index,
        )
