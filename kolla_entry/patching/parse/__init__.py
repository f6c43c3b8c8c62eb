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
from typing import Dict, List, Optional, Tuple

from unidiff import constants as udc

from kolla_entry.errors import PatchInvalid
from kolla_entry.patching.model import COPY, CREATE, DELETE, MODIFY, RENAME, FilePatch, Hunk, Patch
from kolla_entry.patching.parse import names
from kolla_entry.patching.parse.hunks import REGENERATE, Reader, header, read_hunks

__all__ = ["parse_patch", "strip_path"]

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
# The first line of each message in git format-patch output (an mbox).
_MBOX_FROM = re.compile(rb"From [0-9a-f]{40} ")


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
    reader = Reader(_split_lines(data), name)
    files: List[FilePatch] = []
    in_message = False
    while not reader.at_end():
        line = reader.bare()
        in_message = _in_message(line, in_message)
        if line.startswith(b"diff --git "):
            files.append(_read_git_file(reader))
            in_message = False
        elif _starts_fileheader(reader) and not (in_message and not _hunk_follows(reader)):
            files.append(_read_plain_file(reader))
            in_message = False
        else:
            if not in_message:
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

    Runs of slashes count as one separator inside the stripped part; a leading slash is the first
    separator, so ``/u/x`` with 1 gives ``u/x``. Slashes right after the last stripped component are
    kept: ``b//etc/x`` with 1 is ``/etc/x``, an absolute path that confinement refuses (issue #12;
    GNU patch would read ``etc/x``).

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
    rest = path
    for step in range(strip):
        if step:
            rest = rest.lstrip("/")
        slash = rest.find("/")
        if slash < 0:
            return None
        rest = rest[slash + 1:]
    if rest.startswith("/") and strip:
        return "/" + re.sub("/+", "/", rest.lstrip("/")) if rest.strip("/") else None
    return re.sub("/+", "/", rest) or None


def _split_lines(data: bytes) -> List[bytes]:
    lines = data.split(b"\n")
    if lines[-1] == b"":  # the patch's own final newline; a ConfigMap may have lost it
        lines.pop()
    return lines


def _starts_fileheader(reader: Reader) -> bool:
    return (
        not reader.at_end()
        and reader.bare().startswith(b"--- ")
        and not reader.at_end(1)
        and reader.bare(1).startswith(b"+++ ")
    )


def _in_message(line: bytes, in_message: bool) -> bool:
    """
    Whether a line is in a mail's headers or commit message (git format-patch, mbox).

    The message starts at an mbox ``From `` line or a ``Subject:`` header and ends at git's
    ``---`` separator; inside it, lines that merely look like diff headers are prose.
    """
    if _MBOX_FROM.match(line) or line.startswith(b"Subject: "):
        return True
    if line.rstrip() == b"---":
        return False
    return in_message


def _hunk_follows(reader: Reader) -> bool:
    return not reader.at_end(2) and reader.bare(2).startswith(b"@@ ")


def _check_stray(reader: Reader, line: bytes) -> None:
    """Outside a file diff, only a hunk or binary marker means something is wrong."""
    if line.startswith(b"@@ "):
        raise reader.invalid(
            f"hunk at patch line {reader.line_no()} has no '--- '/'+++ ' file header before it "
            f"(or the hunk before it has more lines than its @@ counts say); {REGENERATE}"
        )
    _check_binary(reader, line, None)


def _check_binary(reader: Reader, line: bytes, file: Optional[str]) -> None:
    text = line.decode("latin-1")
    if udc.RE_BINARY_DIFF.match(text) or text.startswith("GIT binary patch"):
        raise reader.invalid(
            f"binary file diff at patch line {reader.line_no()} cannot be applied as text; "
            "ship the file another way or drop it from the patch", file=file,
        )


def _read_git_file(reader: Reader) -> FilePatch:
    """A ``diff --git`` section: extended headers, then ``---``/``+++`` and hunks if any."""
    start = reader.line_no()
    rest = header(reader, reader.bare())[len(b"diff --git "):]
    reader.pos += 1
    extended = _read_extended(reader)
    old_name, new_name = names.git_names(rest, extended, patch=reader.name)
    if not reader.at_end():
        _check_binary(reader, reader.bare(), old_name)
    old_mode, new_mode = _modes(reader, extended, old_name)
    kind = _git_kind(extended)
    old_path: Optional[str] = None if kind == CREATE else old_name
    new_path: Optional[str] = None if kind == DELETE else new_name
    hunks: Tuple[Hunk, ...] = ()
    if _starts_fileheader(reader):
        old_path, new_path, hunks = _read_header_and_hunks(reader)
        kind = _kind_from_paths(reader, kind, old_path, new_path)
    elif not reader.at_end() and reader.bare().startswith(b"--- "):
        raise reader.invalid(
            f"'---' at patch line {reader.line_no()} is not followed by '+++'; {REGENERATE}", file=old_name
        )
    elif kind == MODIFY and old_mode is None:
        raise reader.invalid(
            f"'diff --git' at patch line {start} names no change (no hunks, rename, copy, mode change, "
            f"creation or deletion); {REGENERATE}", file=old_name,
        )
    _check_hunks_fit(reader, kind, hunks, old_path or new_path or old_name)
    return FilePatch(old_path=old_path, new_path=new_path, kind=kind, hunks=hunks,
                     old_mode=old_mode, new_mode=new_mode, patch_line=start)


def _read_extended(reader: Reader) -> Dict[str, bytes]:
    extended: Dict[str, bytes] = {}
    while not reader.at_end():
        line = reader.bare()
        key = next((k for k in _GIT_EXTENDED if line.startswith(k.encode() + b" ")), None)
        if key is None:
            break
        extended[key] = header(reader, line)[len(key) + 1:].rstrip()
        reader.pos += 1
    return extended


def _modes(reader: Reader, extended: Dict[str, bytes], file: str) -> Tuple[Optional[int], Optional[int]]:
    """Modes from explicit mode lines only; the mode on an ``index`` line changes nothing."""
    found: Dict[str, int] = {}
    for key, pattern in _MODE_LINES.items():
        if key not in extended:
            continue
        text = f"{key} {extended[key].decode('latin-1')}"
        match = pattern.match(text)
        if match is None or not set(match.group("mode")) <= set("01234567"):
            raise reader.invalid(f"bad mode line {text!r}; {REGENERATE}", file=file)
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


def _read_plain_file(reader: Reader) -> FilePatch:
    """A ``---``/``+++`` pair without ``diff --git`` (diff -ruN, hand-made diffs)."""
    start = reader.line_no()
    old_path, new_path, hunks = _read_header_and_hunks(reader)
    kind = _kind_from_paths(reader, MODIFY, old_path, new_path)
    _check_hunks_fit(reader, kind, hunks, old_path or new_path or "")
    return FilePatch(old_path=old_path, new_path=new_path, kind=kind, hunks=hunks, patch_line=start)


def _read_header_and_hunks(reader: Reader) -> Tuple[Optional[str], Optional[str], Tuple[Hunk, ...]]:
    """``---``/``+++`` then hunks; an epoch date (diff -N) or svn's ``(revision 0)`` stands for an absent file."""
    header_line = reader.line_no()
    old_path, old_stamp = names.header_name(header(reader, reader.bare())[4:], patch=reader.name)
    new_path, new_stamp = names.header_name(header(reader, reader.bare(1))[4:], patch=reader.name)
    reader.pos += 2
    label = old_path or new_path or ""
    hunks = read_hunks(reader, label)
    if not hunks:
        raise reader.invalid(
            f"file header at patch line {header_line} is not followed by an '@@' hunk; {REGENERATE}",
            file=label,
        )
    if old_path is not None and names.marks_absent(old_stamp) and all(h.old_len == 0 for h in hunks):
        old_path = None
    if new_path is not None and names.marks_absent(new_stamp) and all(h.new_len == 0 for h in hunks):
        new_path = None
    if old_path is None and new_path is None:
        raise reader.invalid(
            f"file header at patch line {header_line} names no file on either side", file=label
        )
    return old_path, new_path, hunks


def _kind_from_paths(reader: Reader, kind: str, old_path: Optional[str], new_path: Optional[str]) -> str:
    if old_path is None:
        return CREATE
    if new_path is None:
        return DELETE
    if kind in (CREATE, DELETE):
        raise reader.invalid(f"git header says {kind} but both '---' and '+++' name a file", file=old_path)
    return kind


def _check_hunks_fit(reader: Reader, kind: str, hunks: Tuple[Hunk, ...], file: str) -> None:
    """A creation has nothing on the old side, a deletion nothing on the new side."""
    for hunk in hunks:
        if (kind == CREATE and hunk.old_len) or (kind == DELETE and hunk.new_len):
            side = "old" if kind == CREATE else "new"
            raise reader.invalid(
                f"hunk at patch line {hunk.patch_line} has {side} lines in a file {kind}; {REGENERATE}",
                file=file, hunk=hunk.index,
            )
