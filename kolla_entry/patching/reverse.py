"""
Recognising a patch that is already applied as a whole, by undoing it in memory.

A ``git format-patch`` file with several commits may change the same lines twice: once the
series is in, the first commit's hunks no longer match in either direction, so the per-hunk
check of ``match`` alone would call a restart a conflict. Undoing the patch in reverse order
(last file patch first, each hunk turned around) and finding every step clean proves that all
of its results are present.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Dict, Optional, Sequence, Tuple

from kolla_entry.patching import match
from kolla_entry.patching.model import ADD, APPLIED, COPY, CREATE, DELETE, REMOVE, RENAME, FilePatch, Hunk, HunkLine

#: (file patch, old path, new path), paths relative to the target.
Entry = Tuple[FilePatch, Optional[str], Optional[str]]
_SWAP = {ADD: REMOVE, REMOVE: ADD}


def turned_around(hunks: Sequence[Hunk]) -> Tuple[Hunk, ...]:
    """The hunks that undo ``hunks``: added and removed lines swapped, old and new sides swapped."""
    return tuple(
        replace(h, old_start=h.new_start, old_len=h.new_len, new_start=h.old_start, new_len=h.old_len,
                lines=tuple(HunkLine(_SWAP.get(line.op, line.op), line.text, line.newline) for line in h.lines))
        for h in hunks
    )


def undoes_cleanly(entries: Sequence[Entry], read: Callable[[str], Optional[bytes]]) -> bool:
    """
    Whether undoing every entry, last first, succeeds without fuzz on the current contents.

    Args:
        entries: the patch's file patches with their stripped paths, in patch order.
        read: the current content of a target path, None when absent.
    """
    contents: Dict[str, Optional[bytes]] = {}

    def current(path: str) -> Optional[bytes]:
        return contents[path] if path in contents else read(path)

    # all() stops at the first step that does not undo cleanly; each step sees the earlier ones.
    return all(_undo(fp, old, new, current, contents) for fp, old, new in reversed(entries))


def _undo(fp: FilePatch, old: Optional[str], new: Optional[str],
          current: Callable[[str], Optional[bytes]], contents: Dict[str, Optional[bytes]]) -> bool:
    source = new if fp.kind != DELETE else old
    assert source is not None
    content = current(source)
    if fp.kind == DELETE:
        if content is not None:
            return False
        contents[source] = _undone(b"", fp.hunks)
        return contents[source] is not None
    if content is None:
        return False
    undone = _undone(content, fp.hunks)
    if undone is None:
        return False
    if fp.kind == CREATE:
        contents[source] = None
    elif fp.kind in (RENAME, COPY):
        assert old is not None
        if fp.kind == RENAME and current(old) is not None:
            return False
        contents[old] = undone
        if fp.kind == RENAME:
            contents[source] = None
    else:
        contents[source] = undone
    return True


def _undone(content: bytes, hunks: Sequence[Hunk]) -> Optional[bytes]:
    if not hunks:
        return content
    result = match.apply_hunks(content, turned_around(hunks), fuzz=0)
    return result.content if result.status == APPLIED else None
