"""Recognising an applied multi-commit patch by undoing it in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from kolla_entry.patching.parse import parse_patch, strip_path
from kolla_entry.patching.reverse import turned_around, undoes_cleanly
from tests.helpers import scratch_repo, write_files


def _series(tmp_path: Path, steps: list[Dict[str, Optional[bytes]]]) -> bytes:
    """A real `git format-patch` of one commit per step after the first (the base)."""
    git = scratch_repo(tmp_path / "repo")
    for number, step in enumerate(steps):
        write_files(tmp_path / "repo", step)
        git("add", "-A")
        git("commit", "-q", "-m", f"step {number}")
    return git("format-patch", "--stdout", f"-{len(steps) - 1}")


def _entries(data: bytes) -> list:  # type: ignore[type-arg]
    patch = parse_patch(data, name="p")
    return [(fp, strip_path(fp.old_path, 1) if fp.old_path else None,
             strip_path(fp.new_path, 1) if fp.new_path else None) for fp in patch.files]


def test_series_changing_the_same_lines_twice_undoes_cleanly(tmp_path: Path) -> None:
    data = _series(tmp_path, [{"m.py": b"a = 1\nb = 2\nc = 3\n"}, {"m.py": b"a = 1\nb = 20\nc = 3\n"},
                              {"m.py": b"a = 1\nb = 200\nc = 3\n", "new.py": b"x = 1\n"}])
    files = {"m.py": b"a = 1\nb = 200\nc = 3\n", "new.py": b"x = 1\n"}
    assert undoes_cleanly(_entries(data), files.get)


def test_partly_applied_series_does_not_undo(tmp_path: Path) -> None:
    data = _series(tmp_path, [{"m.py": b"a = 1\nb = 2\nc = 3\n"}, {"m.py": b"a = 1\nb = 20\nc = 3\n"},
                              {"m.py": b"a = 1\nb = 200\nc = 3\n"}])
    assert not undoes_cleanly(_entries(data), {"m.py": b"a = 1\nb = 20\nc = 3\n"}.get)
    assert not undoes_cleanly(_entries(data), {"m.py": b"a = 1\nb = 2\nc = 3\n"}.get)


def test_created_then_deleted_file(tmp_path: Path) -> None:
    data = _series(tmp_path, [{"m.py": b"a\n"}, {"t.py": b"tmp\n"}, {"t.py": None}])
    assert undoes_cleanly(_entries(data), {"m.py": b"a\n"}.get)
    assert not undoes_cleanly(_entries(data), {"m.py": b"a\n", "t.py": b"tmp\n"}.get)


def test_turned_around_swaps_sides() -> None:
    data = b"--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n x\n-old\n+new\n"
    hunk = parse_patch(data, name="p").files[0].hunks[0]
    back = turned_around([hunk])[0]
    assert [(line.op, line.text) for line in back.lines] == [(" ", b"x"), ("+", b"old"), ("-", b"new")]
    assert (back.old_start, back.old_len, back.new_start, back.new_len) == (1, 2, 1, 2)
