"""
Crash and failure safety of an overlay commit (issue #16): an I/O error at any operation, or a kill -9
at any operation, leaves ``current`` on the old generation or the complete new one, never half; the
next start converges; the generation served always has each patched module's bytecode fitting it.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path
from typing import Dict, Optional

import pytest

from kolla_entry.fs.seam import FileSystem
from kolla_entry.overlay.apply import apply_overlay
from tests.faults import FaultFS, HookFS, crash_at
from tests.helpers import bytecode_mode
from tests.overlay.kit import Box, make_box

IMAGE = {"pkg/__init__.py": b"", "pkg/a.py": b"A = 1\n", "pkg/b.py": b"B = 1\n", "pkg/c.py": b"C = 1\n"}
OLD = {"pkg/a.py": b"A = 2\n", "pkg/b.py": b"B = 1\n", "pkg/c.py": b"C = 1\n"}
NEW = {"pkg/a.py": b"A = 2\n", "pkg/b.py": b"B = 2\n", "pkg/c.py": None}


def _served(box: Box) -> Dict[str, Optional[bytes]]:
    """What the current generation serves; each of its own modules must have a pyc that fits it (issue #13)."""
    tree = box.overlay / "current" / "site-packages"
    result: Dict[str, Optional[bytes]] = {}
    for rel in ("pkg/a.py", "pkg/b.py", "pkg/c.py"):
        path = tree / rel
        result[rel] = path.read_bytes() if path.exists() else None
        if path.exists() and not path.is_symlink():
            assert bytecode_mode(tree, rel) == "timestamp", f"{rel} served without its fitting pyc"
    return result


def _rebuilding_box(tmp_path: Path) -> Box:
    """An overlay serving OLD, and a second patch whose series serves NEW."""
    box = make_box(tmp_path, IMAGE)
    box.add_patch(IMAGE, {"pkg/a.py": b"A = 2\n"})
    box.apply()
    assert _served(box) == OLD
    box.add_patch({"pkg/b.py": b"B = 1\n", "pkg/c.py": b"C = 1\n"}, {"pkg/b.py": b"B = 2\n", "pkg/c.py": None})
    return box


def _reset_to_old(box: Box) -> str:
    """Serve OLD again (the second patch moved out for one start), then put the second patch back."""
    second = box.patches / "0002.patch"
    second.rename(box.root / "second.patch")
    box.apply()
    (box.root / "second.patch").rename(second)
    assert _served(box) == OLD
    return os.readlink(box.overlay / "current")


def _operations(box: Box) -> int:
    """How many seam operations the rebuild takes."""
    calls = []
    apply_overlay(dataclasses.replace(box.request(), fs=HookFS(lambda operation, path: calls.append(operation))))
    assert _served(box) == NEW
    return len(calls)


def test_the_rebuild_takes_many_operations(tmp_path: Path) -> None:
    box = _rebuilding_box(tmp_path)
    assert _operations(box) > 15


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
def test_a_failing_operation_anywhere_keeps_the_old_overlay(tmp_path: Path, code: int) -> None:
    box = _rebuilding_box(tmp_path)
    total = _operations(box)
    for n in range(1, total + 1):
        old = _reset_to_old(box)
        report = apply_overlay(dataclasses.replace(box.request(), fs=FaultFS(n, code)))
        if report.written:
            # Only a failure while removing the old generation, after the switch, lets it through.
            assert _served(box) == NEW
        else:
            assert report.error and report.failure_lines()[-1].startswith("write failed (")
            assert os.readlink(box.overlay / "current") == old
            assert _served(box) == OLD
            assert sorted(n for n in os.listdir(box.overlay) if n != "current") == [old]
        box.apply()
        assert _served(box) == NEW
        assert sorted(os.listdir(box.overlay)) == ["current", os.readlink(box.overlay / "current")]


def test_kill_9_at_every_operation_leaves_old_or_new_and_the_next_start_converges(tmp_path: Path) -> None:
    box = _rebuilding_box(tmp_path)
    total = _operations(box)
    outcomes = set()
    for n in range(1, total + 1):
        _reset_to_old(box)

        def action(fs: FileSystem) -> None:
            apply_overlay(dataclasses.replace(box.request(), fs=fs))

        status, seen = crash_at(n, action)
        assert status == 9 and seen == n
        after = _served(box)
        assert after in (OLD, NEW), f"half an overlay after a kill at operation {n}"
        outcomes.add("new" if after == NEW else "old")
        box.apply()
        assert _served(box) == NEW
        assert sorted(os.listdir(box.overlay)) == ["current", os.readlink(box.overlay / "current")]
    assert outcomes == {"old", "new"}
