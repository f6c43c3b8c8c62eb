"""
Values shared by the patch engine's pure steps: a parsed patch and the outcome of matching.

These are the contract between ``parse`` (bytes -> :class:`Patch`), ``match``
(file bytes + hunks -> :class:`FileResult`), ``plan`` and ``report``. All frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

#: Hunk line operations, as the first character of the line in a unified diff.
CONTEXT = " "
REMOVE = "-"
ADD = "+"

#: File kinds in a patch.
MODIFY = "modify"
CREATE = "create"
DELETE = "delete"
RENAME = "rename"
COPY = "copy"

#: Statuses of a hunk, a file or a patch.
APPLICABLE = "applicable"
APPLIED = "applied"
ALREADY_APPLIED = "already-applied"
SKIPPED = "skipped"
CONFLICT = "conflict"
INVALID = "invalid"
REFUSED = "refused"


@dataclass(frozen=True)
class HunkLine:
    """
    One line of a hunk.

    ``text`` is the line without its ``\\n`` terminator; a ``\\r`` that the patch carried
    (a diff of a CRLF file) stays in ``text``. ``newline`` is False when the patch says
    ``\\ No newline at end of file`` after this line.
    """

    op: str
    text: bytes
    newline: bool = True


@dataclass(frozen=True)
class Hunk:
    """
    One ``@@ -old_start,old_len +new_start,new_len @@`` block.

    ``index`` is 1-based within its file; ``patch_line`` is the 1-based line of the ``@@``
    header in the patch file, for error messages.
    """

    index: int
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: Tuple[HunkLine, ...]
    patch_line: int = 0

    @property
    def old_lines(self) -> Tuple[HunkLine, ...]:
        """The lines the hunk expects to find: context and removed lines."""
        return tuple(line for line in self.lines if line.op != ADD)

    @property
    def new_lines(self) -> Tuple[HunkLine, ...]:
        """The lines the hunk leaves behind: context and added lines."""
        return tuple(line for line in self.lines if line.op != REMOVE)


@dataclass(frozen=True)
class FilePatch:
    """
    The changes a patch makes to one file.

    Paths are as written in the patch, before ``--strip`` (``a/nova/x.py``); ``None`` stands
    for ``/dev/null``. ``kind`` is one of MODIFY, CREATE, DELETE, RENAME, COPY. Modes are the
    full octal modes of git's headers (``0o100755``), or None when the patch names none.
    """

    old_path: Optional[str]
    new_path: Optional[str]
    kind: str
    hunks: Tuple[Hunk, ...]
    old_mode: Optional[int] = None
    new_mode: Optional[int] = None
    patch_line: int = 0

    @property
    def first_path(self) -> str:
        """The path that names this file in reports: the old one, or the new one for a creation."""
        path = self.old_path if self.old_path is not None else self.new_path
        assert path is not None, "a file patch names at least one path"
        return path


@dataclass(frozen=True)
class Patch:
    """
    A parsed patch file: its file patches in application order.

    Several commits in one ``git format-patch`` file simply follow each other in ``files``,
    so one file may appear more than once.
    """

    name: str
    sha256: str
    files: Tuple[FilePatch, ...]


@dataclass(frozen=True)
class HunkResult:
    """
    Where and how one hunk was placed.

    ``offset`` is the distance in lines between the stated and the actual position (after the
    offsets of earlier hunks were carried over, as GNU patch reports it); ``line`` is the 1-based
    line in the *original* file where the hunk's old side starts (0 when it was not placed);
    ``fuzz`` is the number of context lines dropped at an edge to make it fit.
    """

    index: int
    status: str
    offset: int = 0
    fuzz: int = 0
    line: int = 0
    reason: str = ""


@dataclass(frozen=True)
class FileResult:
    """
    The outcome of matching all hunks of one file patch against one file's bytes.

    ``status`` is APPLIED (``content`` is the new bytes), ALREADY_APPLIED (``content`` is the
    unchanged bytes) or CONFLICT (``content`` is None, ``reason`` and the hunk results say why).
    """

    status: str
    content: Optional[bytes]
    hunks: Tuple[HunkResult, ...] = field(default_factory=tuple)
    reason: str = ""
