"""
Races through the whole engine: a file or folder swapped for a symlink to outside the target
between the check (the in-memory plan) and the write must never be followed (issue #8 "Race").

tests/patching/test_transaction.py pins the transaction's own rules (``TestRaces``); here the patch engine
drives them: :func:`apply_patches` plans from the tree, then the swap happens either before
the commit starts or inside it, at the first operation of the ``kolla_entry.fs.seam.FileSystem`` seam.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, List, Sequence

import pytest

from kolla_entry.fs.seam import FileSystem
from kolla_entry.patching import transaction
from kolla_entry.patching.engine import PatchRequest, apply_patches
from kolla_entry.patching.plan import PatchInput, plan_series
from tests.helpers import git_diff, make_tree, read_tree

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "small"
HELLO = (EXAMPLE / "site-packages" / "greeter" / "hello.py").read_bytes()
FIXED = HELLO.replace(b"world", b"team")


class SwapFS(FileSystem):
    """Run ``swap()`` once, at the first seam operation (the first write of the commit)."""

    def __init__(self, swap: Callable[[], None]) -> None:
        self.swap = swap
        self.operations: List[str] = []

    def _count(self, operation: str, path: str) -> None:
        if not self.operations:
            self.swap()
        self.operations.append(operation)


def _setup(tmp_path: Path) -> PatchRequest:
    target = tmp_path / "site-packages"
    shutil.copytree(EXAMPLE / "site-packages", target)
    make_tree(tmp_path / "outside", {"hello.py": HELLO, "greeter/hello.py": HELLO, "greeter/__init__.py": b""})
    fix = git_diff(tmp_path / "git", {"greeter/hello.py": HELLO}, {"greeter/hello.py": FIXED})
    make_tree(tmp_path / "fix-patches", {"0001-fix.patch": fix})
    return PatchRequest(target=target, patterns=(f"{tmp_path}/fix-patches/*.patch",),
                        state_file=tmp_path / "run" / "state.json")


def _swap_file(tmp_path: Path) -> Callable[[], None]:
    def swap() -> None:
        victim = tmp_path / "site-packages" / "greeter" / "hello.py"
        victim.unlink()
        victim.symlink_to(tmp_path / "outside" / "hello.py")
    return swap


def _swap_folder(tmp_path: Path) -> Callable[[], None]:
    def swap() -> None:
        folder = tmp_path / "site-packages" / "greeter"
        folder.rename(tmp_path / "moved-greeter")
        folder.symlink_to(tmp_path / "outside" / "greeter")
    return swap


SWAPS = {"file": _swap_file, "parent-folder": _swap_folder}


def _with_commit(monkeypatch: pytest.MonkeyPatch, before: Callable[[], None], fs: FileSystem) -> None:
    """Make the engine's commit run ``before()`` first and use ``fs`` as its seam."""
    real = transaction.commit

    def commit(root: Path, changes: Sequence[Any], **kwargs: Any) -> None:
        before()
        real(root, changes, **{**kwargs, "fs": fs})

    monkeypatch.setattr(transaction, "commit", commit)


@pytest.mark.parametrize("what", SWAPS)
def test_swap_between_check_and_commit_is_refused(tmp_path: Path, what: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan saw a regular file; at commit time it is a symlink out: refused, nothing written."""
    request = _setup(tmp_path)
    _with_commit(monkeypatch, SWAPS[what](tmp_path), FileSystem())
    report = apply_patches(request)
    assert report.failed and not report.written
    assert "symlink" in report.error
    assert read_tree(tmp_path / "outside")["hello.py"] == (HELLO, 0o644)
    assert read_tree(tmp_path / "outside")["greeter/hello.py"] == (HELLO, 0o644)


@pytest.mark.parametrize("what", SWAPS)
@pytest.mark.parametrize("journal", [False, True], ids=["no-journal", "journal"])
def test_swap_at_the_first_write_is_not_followed(tmp_path: Path, what: str, journal: bool) -> None:
    """
    Swapped at the first seam operation, once the commit holds its folder descriptors: the commit
    completes without following the link. A swapped file is replaced (the link itself, not its
    target); a swapped folder gets the write in the folder opened before the swap.
    """
    request = _setup(tmp_path)
    data = (tmp_path / "fix-patches" / "0001-fix.patch").read_bytes()
    plan = plan_series([PatchInput("0001-fix.patch", "", data)], request.target, strip=1, fuzz=0,
                       on_conflict="fail", dry_run=False)
    assert [r.status for r in plan.reports] == ["applied"]
    outside = read_tree(tmp_path / "outside")
    fs = SwapFS(SWAPS[what](tmp_path))
    transaction.commit(request.target, plan.changes, fs=fs,
                       journal=tmp_path / "run" / "journal.json" if journal else None)
    assert fs.operations, "the seam was never used"
    assert read_tree(tmp_path / "outside") == outside, "a write followed the swapped-in symlink"
    if what == "file":
        written = request.target / "greeter" / "hello.py"
        assert not written.is_symlink() and written.read_bytes() == FIXED
    else:
        assert (request.target / "greeter").is_symlink()
        assert (tmp_path / "moved-greeter" / "hello.py").read_bytes() == FIXED
    leftovers = [rel for rel in read_tree(tmp_path) if ".kolla-entry-" in rel]
    assert not leftovers, leftovers
    assert not (tmp_path / "run" / "journal.json").exists()


@pytest.mark.parametrize("what", SWAPS)
def test_swap_right_after_the_check_is_refused(tmp_path: Path, what: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Swapped as soon as the plan is made (before stale pycs are removed): refused, outside untouched."""
    # The engine plans through unpatchable.plan_with_rules, which calls plan_series by its own name.
    from kolla_entry.patching import unpatchable as plan_module
    request = _setup(tmp_path)
    make_tree(tmp_path / "outside", {"greeter/__pycache__/hello.cpython-311.pyc": b"pyc",
                                     "__pycache__/hello.cpython-311.pyc": b"pyc"})
    outside = read_tree(tmp_path / "outside")
    real = plan_module.plan_series

    def plan_then_swap(*args: Any, **kwargs: Any) -> Any:
        plan = real(*args, **kwargs)
        SWAPS[what](tmp_path)()
        return plan

    monkeypatch.setattr(plan_module, "plan_series", plan_then_swap)
    report = apply_patches(request)
    assert report.failed and not report.written
    assert read_tree(tmp_path / "outside") == outside
