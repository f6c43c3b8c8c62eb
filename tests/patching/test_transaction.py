"""The transaction: all-or-nothing commits, rollback, crash recovery (atomic single-file writes: tests/fs)."""

from __future__ import annotations

import errno
import functools
import json
import os
import stat
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from kolla_entry.errors import EnvironmentProblem, PatchConflict, PatchRefused, WriteFailed
from kolla_entry.fs.seam import FileSystem
from kolla_entry.patching import journal as jr
from kolla_entry.patching.transaction import FileChange, commit, recover
from tests.faults import FaultFS, HookFS, crash_at
from tests.helpers import Symlink, TreeValue, make_tree, read_tree

OLD_TREE: Dict[str, TreeValue] = {
    "pkg/__init__.py": b"",
    "pkg/edit.py": b"def f():\n    return 1\n",
    "pkg/tool.py": (b"#!/usr/bin/env python3\nprint('tool')\n", 0o644),
    "pkg/gone.py": b"GONE = True\n",
    "pkg/old_name.py": b"NAME = 'moved'\n",
    "pkg/sub/deep.py": b"x = 1\n",
}
CHANGES = [
    FileChange("pkg/edit.py", b"def f():\n    return 2\n"),
    FileChange("pkg/tool.py", b"#!/usr/bin/env python3\nprint('tool')\n", 0o755),
    FileChange("pkg/gone.py", None),
    FileChange("pkg/old_name.py", None),
    FileChange("pkg/new_name.py", b"NAME = 'moved'\n"),
    FileChange("pkg/fresh/nested/new.py", b"NEW = 1\n"),
    FileChange("pkg/sub/deep.py", b"x = 2\n"),
]


def _new_tree() -> Dict[str, object]:
    return {
        "pkg/__init__.py": (b"", 0o644),
        "pkg/edit.py": (b"def f():\n    return 2\n", 0o644),
        "pkg/tool.py": (b"#!/usr/bin/env python3\nprint('tool')\n", 0o755),
        "pkg/new_name.py": (b"NAME = 'moved'\n", 0o644),
        "pkg/fresh/nested/new.py": (b"NEW = 1\n", 0o644),
        "pkg/sub/deep.py": (b"x = 2\n", 0o644),
    }


def _old_root(tmp_path: Path) -> Path:
    root = make_tree(tmp_path / "root", dict(OLD_TREE))
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else stat.S_IMODE(path.stat().st_mode) & ~0o022)
    return root


class TestFileChange:
    def test_mode_takes_permission_bits_only(self) -> None:
        with pytest.raises(ValueError, match="permission bits"):
            FileChange("a.py", b"", stat.S_IFREG | 0o644)

    def test_path_is_validated_on_construction(self) -> None:
        assert FileChange("./a//b.py", b"").path == "a/b.py"
        with pytest.raises(PatchRefused):
            FileChange("../x.py", b"")
        with pytest.raises(PatchRefused):
            FileChange("/etc/shadow", None)


class TestCommit:
    def test_applies_edits_creations_deletions_renames_and_modes(self, tmp_path: Path) -> None:
        root = _old_root(tmp_path)
        commit(root, CHANGES)
        assert read_tree(root) == _new_tree()

    def test_keeps_mode_and_owner_of_edited_files(self, tmp_path: Path) -> None:
        root = make_tree(tmp_path, {"pkg/m.py": (b"old\n", 0o4750)})
        os.chown(root / "pkg/m.py", 1234, 2345)
        os.chmod(root / "pkg/m.py", 0o4750)
        commit(root, [FileChange("pkg/m.py", b"new\n")])
        st = (root / "pkg/m.py").lstat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, 0o4750)
        assert (root / "pkg/m.py").read_bytes() == b"new\n"

    def test_new_files_and_folders_take_owner_and_mode_of_their_parent(self, tmp_path: Path) -> None:
        root = make_tree(tmp_path, {"pkg/__init__.py": b""})
        os.chown(root / "pkg", 1234, 2345)
        os.chmod(root / "pkg", 0o750)
        commit(root, [FileChange("pkg/a/b/new.py", b"n\n"), FileChange("pkg/run.sh", b"#!/bin/sh\n", 0o755)])
        for rel, mode in [("pkg/a", 0o750), ("pkg/a/b", 0o750), ("pkg/a/b/new.py", 0o644), ("pkg/run.sh", 0o755)]:
            st = (root / rel).lstat()
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, mode), rel

    def test_writes_through_a_folder_symlink_inside_the_root(self, tmp_path: Path) -> None:
        root = make_tree(tmp_path, {"real/m.py": b"old\n", "pkg": Symlink("real")})
        commit(root, [FileChange("pkg/m.py", b"new\n"), FileChange("pkg/n.py", b"n\n")])
        assert read_tree(root) == {"real/m.py": (b"new\n", 0o644), "real/n.py": (b"n\n", 0o644),
                                   "pkg": Symlink("real")}

    def test_missing_root_is_an_environment_problem(self, tmp_path: Path) -> None:
        with pytest.raises(EnvironmentProblem, match="target folder"):
            commit(tmp_path / "nope", [FileChange("a.py", b"")])

    def test_several_new_files_share_the_folders_they_create(self, tmp_path: Path) -> None:
        root = make_tree(tmp_path, {"pkg/__init__.py": b""})
        commit(root, [FileChange("pkg/a/b/one.py", b"1"), FileChange("pkg/a/b/two.py", b"2"),
                      FileChange("pkg/a/c/three.py", b"3"), FileChange("pkg/a/four.py", b"4")])
        assert read_tree(root) == {"pkg/__init__.py": (b"", 0o644), "pkg/a/b/one.py": (b"1", 0o644),
                                   "pkg/a/b/two.py": (b"2", 0o644), "pkg/a/c/three.py": (b"3", 0o644),
                                   "pkg/a/four.py": (b"4", 0o644)}

    def test_not_durable_skips_every_fsync_but_gives_the_same_tree(self, tmp_path: Path) -> None:
        root = _old_root(tmp_path)
        calls: List[str] = []
        commit(root, CHANGES, fs=HookFS(lambda op, _path: calls.append(op)), journal=tmp_path / "j.json",
               durable=False)
        assert read_tree(root) == _new_tree()
        assert "fsync" not in calls and "replace" in calls
        calls.clear()
        commit(root, TO_OLD, fs=HookFS(lambda op, _path: calls.append(op)))
        assert calls.count("fsync") >= len(TO_OLD)

    def test_empty_change_set_does_nothing(self, tmp_path: Path) -> None:
        commit(tmp_path / "does-not-even-exist", [])

    def test_deleting_a_missing_file_is_a_conflict_and_writes_nothing(self, tmp_path: Path) -> None:
        root = _old_root(tmp_path)
        before = read_tree(root)
        with pytest.raises(PatchConflict) as info:
            commit(root, [FileChange("pkg/edit.py", b"changed\n"), FileChange("pkg/nothere.py", None)])
        assert info.value.file == "pkg/nothere.py"
        assert read_tree(root) == before

    @pytest.mark.parametrize("kind", ["symlink", "folder", "fifo"])
    def test_refuses_anything_but_regular_files(self, tmp_path: Path, kind: str) -> None:
        root = make_tree(tmp_path / "root", {"pkg/ok.py": b"ok\n"})
        (tmp_path / "outside.py").write_bytes(b"secret\n")
        if kind == "symlink":
            os.symlink(str(tmp_path / "outside.py"), root / "pkg/m.py")
        elif kind == "folder":
            (root / "pkg/m.py").mkdir()
        else:
            os.mkfifo(root / "pkg/m.py")
        # read_tree would block on the fifo: compare everything else, and the entry's type.
        kept = {"pkg/ok.py": b"ok\n", "../outside.py": b"secret\n"}
        kind_before = stat.S_IFMT((root / "pkg/m.py").lstat().st_mode)
        for change in (FileChange("pkg/m.py", b"pwned\n"), FileChange("pkg/m.py", None)):
            with pytest.raises(PatchRefused):
                commit(root, [FileChange("pkg/ok.py", b"changed\n"), change])
            assert {rel: (root / rel).read_bytes() for rel in kept} == kept
            assert sorted(os.listdir(root / "pkg")) == ["m.py", "ok.py"]
            assert stat.S_IFMT((root / "pkg/m.py").lstat().st_mode) == kind_before

    def test_refuses_a_folder_symlink_leaving_the_root(self, tmp_path: Path) -> None:
        root = make_tree(tmp_path / "root", {"pkg/ok.py": b"ok\n"})
        (tmp_path / "outside").mkdir()
        os.symlink("../outside", root / "evil")
        before = read_tree(tmp_path)
        with pytest.raises(PatchRefused):
            commit(root, [FileChange("pkg/ok.py", b"x\n"), FileChange("evil/new.py", b"pwned\n")])
        assert read_tree(tmp_path) == before

    def test_one_file_named_twice_through_a_symlink_is_refused(self, tmp_path: Path) -> None:
        root = make_tree(tmp_path, {"real/m.py": b"old\n", "pkg": Symlink("real")})
        before = read_tree(root)
        with pytest.raises(PatchRefused, match=r"same file as real/m\.py"):
            commit(root, [FileChange("real/m.py", b"one\n"), FileChange("pkg/m.py", b"two\n")])
        assert read_tree(root) == before

    def test_duplicate_paths_are_a_caller_bug(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="twice"):
            commit(tmp_path, [FileChange("a.py", b"1"), FileChange("./a.py", None)])


class TestRaces:
    """Issue #8: a file or folder swapped for a symlink between check and write is not followed."""

    def test_folder_swapped_for_outside_symlink_after_check_is_refused(self, tmp_path: Path) -> None:
        from kolla_entry.patching.confine import read_target

        root = make_tree(tmp_path / "root", {"pkg/m.py": b"old\n"})
        outside = make_tree(tmp_path / "outside", {"m.py": b"outside\n"})
        assert read_target(root, "pkg/m.py") is not None  # the check
        (root / "pkg").rename(tmp_path / "moved")
        os.symlink(str(outside), root / "pkg")
        with pytest.raises(PatchRefused):
            commit(root, [FileChange("pkg/m.py", b"pwned\n")])
        assert read_tree(outside) == {"m.py": (b"outside\n", 0o644)}

    def test_folder_swapped_during_commit_keeps_writing_into_the_opened_folder(self, tmp_path: Path) -> None:
        root = make_tree(tmp_path / "root", {"pkg/m.py": b"old\n"})
        outside = make_tree(tmp_path / "outside", {"m.py": b"outside\n"})
        swapped: List[bool] = []

        def swap(operation: str, path: str) -> None:
            if not swapped:
                swapped.append(True)
                (root / "pkg").rename(tmp_path / "moved")
                os.symlink(str(outside), root / "pkg")

        commit(root, [FileChange("pkg/m.py", b"new\n")], fs=HookFS(swap))
        assert read_tree(outside) == {"m.py": (b"outside\n", 0o644)}
        assert read_tree(tmp_path / "moved") == {"m.py": (b"new\n", 0o644)}

    def test_file_swapped_for_symlink_during_commit_is_replaced_not_followed(self, tmp_path: Path) -> None:
        root = make_tree(tmp_path / "root", {"pkg/m.py": b"old\n"})
        outside = make_tree(tmp_path / "outside", {"secret": b"outside\n"})

        def swap(operation: str, path: str) -> None:
            if operation == "replace" and (root / "pkg/m.py").is_file() and not os.path.islink(root / "pkg/m.py"):
                os.unlink(root / "pkg/m.py")
                os.symlink(str(outside / "secret"), root / "pkg/m.py")

        commit(root, [FileChange("pkg/m.py", b"new\n")], fs=HookFS(swap))
        assert read_tree(outside) == {"secret": (b"outside\n", 0o644)}
        assert (root / "pkg/m.py").read_bytes() == b"new\n" and not (root / "pkg/m.py").is_symlink()


class TestRollback:
    @pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC, errno.EACCES], ids=["EIO", "ENOSPC", "EACCES"])
    @pytest.mark.parametrize("with_journal", [False, True], ids=["no-journal", "journal"])
    def test_every_failing_operation_leaves_the_old_tree(self, tmp_path: Path, code: int,
                                                         with_journal: bool) -> None:
        """Issue #8: enumerate EVERY seam operation index N; fail it; the tree is all old or all new."""
        journal = tmp_path / "state" / "journal.json" if with_journal else None
        failures, n = 0, 0
        while True:
            n += 1
            case = tmp_path / f"case{n}"
            root = _old_root(case)
            before = read_tree(root)
            fs = FaultFS(n, code)
            try:
                commit(root, CHANGES, fs=fs, journal=journal)
            except WriteFailed as err:
                failures += 1
                assert read_tree(root) == before, f"N={n} {fs.calls[n - 1]}"
                assert err.operation == fs.calls[n - 1][0], f"N={n}"
                assert os.strerror(code) in str(err)
                assert journal is None or not journal.exists()
                continue
            if len(fs.calls) < n:
                break
            # The fault hit the clean-up after the point of no return: new tree plus leftovers,
            # which recovery (with a journal) removes.
            if journal is not None:
                assert recover(root, journal) is not None
                assert read_tree(root) == _new_tree(), f"N={n}"
            else:
                assert {k: v for k, v in read_tree(root).items() if ".kolla-entry-" not in k} == _new_tree()
        assert read_tree(root) == _new_tree()
        assert failures > 30
        ops = {op for op, _path in fs.calls}
        assert {"open", "write", "fsync", "chmod", "chown", "replace", "rename", "mkdir", "link"} <= ops

    def test_a_disk_failing_for_good_is_rolled_back_by_recover(self, tmp_path: Path) -> None:
        """Every operation from N on fails: the rollback is incomplete, the journal finishes it."""
        journal = tmp_path / "journal.json"
        for n in range(20, 60, 3):
            root = _old_root(tmp_path / f"case{n}")
            before = read_tree(root)
            with pytest.raises(WriteFailed):
                commit(root, CHANGES, fs=FaultFS(n, errno.EIO, sticky=True), journal=journal)
            if journal.exists():
                recover(root, journal)
            assert read_tree(root) == before, f"N={n}"
            assert not journal.exists()

    def test_ctrl_c_rolls_back_and_propagates(self, tmp_path: Path) -> None:
        root = _old_root(tmp_path)
        before = read_tree(root)
        calls: List[str] = []

        def interrupt(operation: str, path: str) -> None:
            calls.append(operation)
            if operation == "replace" and calls.count("replace") == 3:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            commit(root, CHANGES, fs=HookFS(interrupt))
        assert read_tree(root) == before


    @pytest.mark.parametrize("with_journal", [False, True], ids=["no-journal", "journal"])
    def test_a_failing_ready_hook_rolls_back_everything_staged_and_passes_through(
            self, tmp_path: Path, with_journal: bool) -> None:
        """Issue #13: the compile verdict comes through ``ready``, after staging and before the swap."""
        root = _old_root(tmp_path)
        before = read_tree(root)
        journal = tmp_path / "state" / "journal.json" if with_journal else None
        seen: List[str] = []

        class Verdict(Exception):
            pass

        def ready() -> None:
            seen.extend(p.name for p in root.rglob("*") if ".kolla-entry-" in p.name)
            raise Verdict()

        with pytest.raises(Verdict):
            commit(root, CHANGES, journal=journal, ready=ready)
        assert seen, "ready ran before anything was staged"
        assert read_tree(root) == before
        assert journal is None or not journal.exists()
        commit(root, CHANGES, journal=journal, ready=lambda: None)
        assert read_tree(root) == _new_tree()


def _commit_new(root: Path, journal: Path, fs: FileSystem) -> None:
    commit(root, CHANGES, fs=fs, journal=journal)


class TestRecover:
    def test_no_journal_means_nothing_to_do(self, tmp_path: Path) -> None:
        assert recover(tmp_path, tmp_path / "journal.json") is None

    def test_a_crash_at_every_operation_recovers_to_one_whole_tree(self, tmp_path: Path) -> None:
        """A process dying at ANY seam operation: after recover() the tree is all old or all new."""
        journal = tmp_path / "run" / "journal.json"
        outcomes = set()
        n = 0
        while True:
            n += 1
            root = _old_root(tmp_path / f"case{n}")
            before = read_tree(root)
            code, ops = crash_at(n, functools.partial(_commit_new, root, journal))
            for rel, value in read_tree(root).items():
                # Never a partly written file at its real name, whatever the crash point.
                if isinstance(value, tuple) and ".kolla-entry-" not in rel and value != before.get(rel):
                    assert value in _new_tree().values(), (n, rel)
            result = recover(root, journal)
            after = read_tree(root)
            assert after in (before, _new_tree()), f"N={n}: {result}"
            outcomes.add("old" if after == before else "new")
            assert not journal.parent.exists() or not list(journal.parent.iterdir())
            assert code in (0, 9), f"N={n}: the child failed instead of dying"
            if code == 0:
                assert ops < n
                break
        assert outcomes == {"old", "new"}

    def test_commit_refuses_to_start_over_an_unrecovered_journal(self, tmp_path: Path) -> None:
        root = _old_root(tmp_path)
        journal = tmp_path / "journal.json"
        journal.write_text("{}")
        with pytest.raises(EnvironmentProblem, match="recover first"):
            commit(root, CHANGES, journal=journal)

    def test_a_journal_of_another_root_is_refused(self, tmp_path: Path) -> None:
        root = _old_root(tmp_path)
        journal = tmp_path / "journal.json"
        journal.write_text(json.dumps(jr.journal_document("/elsewhere", jr.COMMITTING, [], [])))
        with pytest.raises(EnvironmentProblem, match="belongs to"):
            recover(root, journal)

    def test_a_journal_naming_foreign_files_is_refused(self, tmp_path: Path) -> None:
        root = _old_root(tmp_path)
        journal = tmp_path / "journal.json"
        record = jr.Record("pkg/edit.py", ("pkg",), "edit.py", jr.MODIFY, "__init__.py", None)
        journal.write_text(json.dumps(jr.journal_document(str(root), jr.COMMITTING, [record], [])))
        before = read_tree(root)
        with pytest.raises(EnvironmentProblem, match="foreign"):
            recover(root, journal)
        assert read_tree(root) == before

    def test_stale_temps_beside_a_file_are_removed(self, tmp_path: Path) -> None:
        from kolla_entry.patching.transaction import remove_stale_temps

        make_tree(tmp_path, {".nova.conf.kolla-entry-00aa": b"half", ".nova.conf.kolla-entry-11bb": b"",
                             "nova.conf": b"keep", ".nova.conf.swp": b"keep", ".other.conf.kolla-entry-22": b"k"})
        assert remove_stale_temps(tmp_path / "nova.conf") == [str(tmp_path / ".nova.conf.kolla-entry-00aa"),
                                                              str(tmp_path / ".nova.conf.kolla-entry-11bb")]
        assert sorted(os.listdir(tmp_path)) == [".nova.conf.swp", ".other.conf.kolla-entry-22", "nova.conf"]
        assert remove_stale_temps(tmp_path / "missing-folder" / "x.conf") == []

    def test_stale_journal_temps_are_removed(self, tmp_path: Path) -> None:
        (tmp_path / ".journal.json.kolla-entry-0011aabbccdd").write_text("{")
        (tmp_path / "unrelated").write_text("keep")
        assert recover(tmp_path, tmp_path / "journal.json") == "removed 1 stale journal temp file(s)"
        assert sorted(os.listdir(tmp_path)) == ["unrelated"]


TO_OLD = [
    FileChange("pkg/edit.py", b"def f():\n    return 1\n"),
    FileChange("pkg/tool.py", b"#!/usr/bin/env python3\nprint('tool')\n", 0o644),
    FileChange("pkg/gone.py", b"GONE = True\n"),
    FileChange("pkg/old_name.py", b"NAME = 'moved'\n"),
    FileChange("pkg/new_name.py", None),
    FileChange("pkg/fresh/nested/new.py", None),
    FileChange("pkg/sub/deep.py", b"x = 1\n"),
]

# The child commits new, old, new, ... until it is killed; it says "ready" once imports are done.
_CHILD = """
import json, sys
from pathlib import Path
from kolla_entry.patching.transaction import FileChange, commit
root, journal, start, sets = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
changes = {name: [FileChange(p, None if c is None else c.encode('latin-1'), m) for p, c, m in items]
           for name, items in sets.items()}
order = ["old", "new"] if start == "new" else ["new", "old"]
print("ready", flush=True)
while True:
    for name in order:
        commit(root, changes[name], journal=journal)
"""


def _files(tree: Dict[str, object]) -> Dict[str, object]:
    """Files only: a deletion leaves its folder (by design), so a round trip keeps empty folders."""
    return {rel: value for rel, value in tree.items() if value != "<dir>"}


def test_kill_9_at_random_points_always_recovers_to_one_whole_tree(tmp_path: Path) -> None:
    """Issue #8: a committing process killed at random converges after recover() + commit."""
    import random
    import signal
    import subprocess
    import sys
    import time

    root = _old_root(tmp_path)
    old, new = _files(read_tree(root)), _new_tree()
    journal = tmp_path / "run" / "journal.json"
    sets = {name: [(c.path, None if c.content is None else c.content.decode("latin-1"), c.mode) for c in cs]
            for name, cs in (("new", CHANGES), ("old", TO_OLD))}
    rng = random.Random(8)
    state, seen, deadline, iterations, recovered = "old", set(), time.monotonic() + 20, 0, 0
    while iterations < 30 and time.monotonic() < deadline:
        iterations += 1
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), str(journal), state, json.dumps(sets)],
                                 cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE)
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0, 0.08))
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
        for rel, value in read_tree(root).items():
            if isinstance(value, tuple) and ".kolla-entry-" not in rel:
                assert value == old.get(rel) or value == new.get(rel), f"partial file {rel}"
        if recover(root, journal) is not None:
            recovered += 1
        tree = _files(read_tree(root))
        assert tree in (old, new), f"iteration {iterations}: mixed tree"
        state = "old" if tree == old else "new"
        seen.add(state)
    assert iterations >= 10
    print(f"{iterations} kills, {recovered} interrupted commits recovered, states seen: {sorted(seen)}")
    assert recovered >= 3 and seen == {"old", "new"}, "the kills never landed inside a commit"
    if state == "old":
        commit(root, CHANGES, journal=journal)
    assert _files(read_tree(root)) == new
    assert not journal.exists()


def test_deletions_remove_the_folders_they_empty_like_gnu_patch(tmp_path: Path) -> None:
    """GNU patch and git apply remove parent folders a deletion leaves empty; so do we."""
    import shutil
    import subprocess

    files: Dict[str, TreeValue] = {"pkg/keep.py": b"k\n", "pkg/sub/deeper/only.py": b"x\n",
                                   "pkg/sub2/a.py": b"a\n", "pkg/sub2/b.py": b"b\n", "other/gone.py": b"g\n"}
    ours = make_tree(tmp_path / "ours", files)
    commit(ours, [FileChange("pkg/sub/deeper/only.py", None), FileChange("pkg/sub2/a.py", None),
                  FileChange("other/gone.py", None)])
    assert read_tree(ours) == {"pkg/keep.py": (b"k\n", 0o644), "pkg/sub2/b.py": (b"b\n", 0o644)}

    gnu = make_tree(tmp_path / "gnu", files)
    if shutil.which("patch"):
        patch = b"".join(
            b"--- a/%s\n+++ /dev/null\n@@ -1 +0,0 @@\n-%s" % (rel.encode(), (gnu / rel).read_bytes())
            for rel in ("pkg/sub/deeper/only.py", "pkg/sub2/a.py", "other/gone.py"))
        subprocess.run(["patch", "-p1", "-s"], input=patch, cwd=gnu, check=True)
        assert read_tree(gnu) == read_tree(ours)


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[Tuple[Path, Path]]:
    """
    A container's writable layer: overlayfs with 150 copies of the old tree in the lower layer.

    Yields (lower, merged). Skipped where overlayfs cannot be mounted (not root, no support).
    """
    import subprocess

    lower, upper, work, merged = (tmp_path / name for name in ("lower", "upper", "work", "merged"))
    for n in range(1, 151):
        _old_root(lower / f"case{n}")
    for folder in (upper, work, merged):
        folder.mkdir()
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"overlayfs not mountable here: {mounted.stderr.decode().strip()}")
    try:
        yield lower, merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


class TestOverlayfs:
    """The production filesystem: site-packages in an image layer, patched in the container layer."""

    def test_every_failing_operation_leaves_the_old_tree(self, overlay: Tuple[Path, Path],
                                                         tmp_path: Path) -> None:
        lower, merged = overlay
        journal = tmp_path / "run" / "journal.json"
        lower_before = read_tree(lower)
        n = 0
        while True:
            n += 1
            root = merged / f"case{n}" / "root"
            before = read_tree(root)
            fs = FaultFS(n, errno.EIO)
            try:
                commit(root, CHANGES, fs=fs, journal=journal)
            except WriteFailed as err:
                assert read_tree(root) == before, f"N={n} {fs.calls[n - 1]}"
                assert err.operation == fs.calls[n - 1][0]
                continue
            recover(root, journal)
            assert read_tree(root) == _new_tree(), f"N={n}"
            if len(fs.calls) < n:
                break
        assert n > 30
        assert read_tree(lower) == lower_before  # the image layer is never written

    def test_a_crash_at_every_operation_recovers_to_one_whole_tree(self, overlay: Tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
        _lower, merged = overlay
        journal = tmp_path / "run" / "journal.json"
        outcomes = set()
        for n in range(1, 151):
            root = merged / f"case{n}" / "root"
            before = read_tree(root)
            code, _ops = crash_at(n, functools.partial(_commit_new, root, journal))
            recover(root, journal)
            after = read_tree(root)
            assert after in (before, _new_tree()), f"N={n}"
            outcomes.add("old" if after == before else "new")
            if code == 0:
                break
        assert outcomes == {"old", "new"}
