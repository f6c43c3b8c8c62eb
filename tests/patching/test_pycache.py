"""
Bytecode of patched modules (issue #13): written from the compile check, in the tree's mode, for
the target's interpreter, committed and rolled back with the source; stale pycs removed.
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import marshal
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from kolla_entry.errors import PatchRefused, WriteFailed
from kolla_entry.patching import bytecode as bc
from kolla_entry.patching.engine import PatchRequest, apply_patches
from kolla_entry.patching.pycache import Interpreter, plan_bytecode, pyc_pattern
from kolla_entry.patching.transaction import FileChange, commit
from tests.faults import FaultFS
from tests.helpers import Symlink, bytecode_mode, bytecode_of, git_diff, make_tree, read_tree

TAG = sys.implementation.cache_tag
OLD = b"VALUE = 'old'\n"
NEW = b"VALUE = 'patched'\n"
MODES = {"timestamp": py_compile.PycInvalidationMode.TIMESTAMP,
         "checked-hash": py_compile.PycInvalidationMode.CHECKED_HASH,
         "unchecked-hash": py_compile.PycInvalidationMode.UNCHECKED_HASH}


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        ("mod.cpython-311.pyc", True),
        ("mod.cpython-39.opt-1.pyc", True),
        ("mod.cpython-312.opt-2.pyc", True),
        ("mod.pypy39.pyc", True),
        ("mod_x.cpython-311.pyc", False),
        ("mod.x.cpython-311.pyc", False),
        ("module.cpython-311.pyc", False),
        ("mod.cpython-311.pyc.123456", False),
        ("mod.py", False),
    ],
)
def test_pyc_pattern_covers_every_tag_and_opt_level_of_one_module(name: str, matches: bool) -> None:
    assert bool(pyc_pattern("mod").fullmatch(name)) is matches


def _code(content: bytes, rel: str = "pkg/mod.py") -> bytes:
    return marshal.dumps(compile(content, rel, "exec", dont_inherit=True, optimize=0))


def _compiled(root: Path, rel: str, mode: str, *, optimize: int = -1) -> Path:
    source = root / rel
    cfile = importlib.util.cache_from_source(str(source), optimization="" if optimize <= 0 else optimize)
    py_compile.compile(str(source), cfile=cfile, invalidation_mode=MODES[mode], optimize=optimize, doraise=True)
    return Path(cfile)


def _commit_with_bytecode(root: Path, changes: list, code: Dict[str, bytes], **kwargs: object) -> object:
    plan = plan_bytecode(root, changes, code)
    commit(root, [*changes, *plan.changes], **kwargs)  # type: ignore[arg-type]
    return plan


class TestPlan:
    def test_writes_the_pyc_of_a_changed_module_and_removes_every_other_cached_file(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {
            "pkg/mod.py": OLD, "pkg/other.py": b"", "pkg/gone.py": b"",
            f"pkg/__pycache__/mod.{TAG}.opt-1.pyc": b"2",
            "pkg/__pycache__/mod.cpython-39.pyc": b"3",
            f"pkg/__pycache__/gone.{TAG}.pyc": b"4",
            f"pkg/__pycache__/other.{TAG}.pyc": b"keep",
            f"pkg/__pycache__/mod_x.{TAG}.pyc": b"keep",
            f"pkg/sub/__pycache__/mod.{TAG}.pyc": b"keep",
        })
        _compiled(tmp_path, "pkg/mod.py", "timestamp")
        changes = [FileChange("pkg/gone.py", None), FileChange("pkg/mod.py", NEW)]
        plan = _commit_with_bytecode(tmp_path, changes, {"pkg/mod.py": _code(NEW)})
        assert plan.ready == ("pkg/mod.py",)  # type: ignore[attr-defined]
        assert set(plan.removed) == {f"pkg/__pycache__/gone.{TAG}.pyc",  # type: ignore[attr-defined]
                                     "pkg/__pycache__/mod.cpython-39.pyc", f"pkg/__pycache__/mod.{TAG}.opt-1.pyc"}
        assert sorted(os.listdir(tmp_path / "pkg/__pycache__")) == [
            f"mod.{TAG}.pyc", f"mod_x.{TAG}.pyc", f"other.{TAG}.pyc"]
        assert bytecode_mode(tmp_path, "pkg/mod.py") == "timestamp"
        assert (tmp_path / f"pkg/sub/__pycache__/mod.{TAG}.pyc").read_bytes() == b"keep"

    def test_a_new_module_in_a_new_folder_gets_a_pycache_owned_and_moded_as_its_folder(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"pkg/__init__.py": b""})
        (tmp_path / "pkg").chmod(0o751)
        _commit_with_bytecode(tmp_path, [FileChange("pkg/new/fresh.py", NEW)], {"pkg/new/fresh.py": _code(NEW)})
        pyc = bytecode_of(tmp_path, "pkg/new/fresh.py")
        assert bytecode_mode(tmp_path, "pkg/new/fresh.py") == "timestamp"
        assert oct(pyc.stat().st_mode & 0o777) == oct(0o644)
        assert oct(pyc.parent.stat().st_mode & 0o777) == oct(0o751)

    def test_a_module_without_code_only_loses_its_stale_pycs(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"pkg/mod.py": OLD})
        cached = _compiled(tmp_path, "pkg/mod.py", "unchecked-hash")
        plan = _commit_with_bytecode(tmp_path, [FileChange("pkg/mod.py", NEW)], {})
        assert plan.ready == () and not cached.exists()  # type: ignore[attr-defined]

    def test_another_pythons_tree_gets_no_bytecode_only_its_stale_pycs_removed(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"pkg/mod.py": OLD, "pkg/__pycache__/mod.cpython-39.pyc": b"old",
                             "pkg/__pycache__/mod.cpython-39.opt-1.pyc": b"old"})
        plan = _commit_with_bytecode(tmp_path, [FileChange("pkg/mod.py", NEW)], {"pkg/mod.py": _code(NEW)})
        assert plan.ready == ()  # type: ignore[attr-defined]
        assert plan.reason.endswith(f"is for cpython-39, kolla-entry runs {TAG}")  # type: ignore[attr-defined]
        assert not (tmp_path / "pkg/__pycache__").exists() or not os.listdir(tmp_path / "pkg/__pycache__")

    def test_a_lib_python_path_of_another_version_gets_no_bytecode(self, tmp_path: Path) -> None:
        root = make_tree(tmp_path / "venv/lib/python2.7/site-packages", {"pkg/mod.py": OLD})
        plan = plan_bytecode(root, [FileChange("pkg/mod.py", NEW)], {"pkg/mod.py": _code(NEW)})
        assert plan.ready == () and "python2.7" in plan.reason and plan.changes == ()

    def test_same_tag_but_another_magic_gets_no_bytecode(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"pkg/mod.py": OLD})
        cached = _compiled(tmp_path, "pkg/mod.py", "timestamp")
        other = Interpreter(TAG, b"\x00\x00\r\n")
        plan = plan_bytecode(tmp_path, [FileChange("pkg/mod.py", NEW)], {"pkg/mod.py": _code(NEW)}, other)
        assert plan.ready == () and "magic" in plan.reason
        assert [c.path for c in plan.changes] == [str(cached.relative_to(tmp_path))]

    def test_a_new_module_takes_the_mode_of_its_neighbours(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"pkg/old.py": OLD})
        _compiled(tmp_path, "pkg/old.py", "checked-hash")
        _commit_with_bytecode(tmp_path, [FileChange("pkg/new.py", NEW)], {"pkg/new.py": _code(NEW)})
        assert bytecode_mode(tmp_path, "pkg/new.py") == "checked-hash"

    def test_a_symlinked_pycache_is_refused_not_followed(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"root/pkg/mod.py": b"", f"elsewhere/mod.{TAG}.pyc": b"keep",
                             "root/pkg/__pycache__": Symlink("../../elsewhere")})
        with pytest.raises(PatchRefused):
            plan_bytecode(tmp_path / "root", [FileChange("pkg/mod.py", NEW)], {"pkg/mod.py": _code(NEW)})
        assert (tmp_path / f"elsewhere/mod.{TAG}.pyc").read_bytes() == b"keep"

    def test_a_pyc_before_its_module_is_a_programming_error(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"pkg/mod.py": OLD})
        plan = plan_bytecode(tmp_path, [FileChange("pkg/mod.py", NEW)], {"pkg/mod.py": _code(NEW)})
        with pytest.raises(ValueError, match="before its module"):
            commit(tmp_path, [*plan.changes, FileChange("pkg/mod.py", NEW)])


class TestHeader:
    @pytest.mark.parametrize("mode", sorted(MODES))
    def test_pyc_bytes_is_what_py_compile_writes(self, tmp_path: Path, mode: str) -> None:
        """The pure writer against CPython's own: same bytes for the same source, stat and mode."""
        source = make_tree(tmp_path, {"m.py": NEW}) / "m.py"
        theirs = Path(_compiled(tmp_path, "m.py", mode)).read_bytes()
        st = source.stat()
        code = _code(NEW, str(source))
        digest = b"" if mode == "timestamp" else bc.source_hash(NEW)
        ours = bc.pyc_bytes(code, magic=importlib.util.MAGIC_NUMBER, mode=mode, mtime=int(st.st_mtime),
                            size=st.st_size, source_hash=digest)
        # The code may differ in marshal's reference flags only (they follow refcounts), not in value.
        assert ours[:16] == theirs[:16]
        assert marshal.loads(ours[16:]) == marshal.loads(theirs[16:])
        assert bc.read_header(ours) == bc.Header(importlib.util.MAGIC_NUMBER, mode)

    @pytest.mark.parametrize(("kwargs", "message"), [
        ({"magic": b"\x00", "mode": "timestamp"}, "4 bytes"),
        ({"magic": b"\x00" * 4, "mode": "sometimes"}, "unknown"),
        ({"magic": b"\x00" * 4, "mode": "checked-hash"}, "8 bytes"),
    ])
    def test_bad_arguments_are_refused(self, kwargs: dict, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            bc.pyc_bytes(b"", **kwargs)

    def test_garbage_is_no_header(self) -> None:
        assert bc.read_header(b"short") is None
        assert bc.read_header(b"\x00" * 4 + b"\x07\x00\x00\x00" + b"\x00" * 8) is None


# -- import-ready, end to end --------------------------------------------------------------------------

@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A scratch folder another user can enter (pytest's own tmp folder is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="kolla-entry-bytecode-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


#: Loads ``pkg.mod`` and says whether the import system had to compile its source.
_PROBE = """
import importlib._bootstrap_external as ext
compiled = []
original = ext.SourceLoader.source_to_code
def spy(self, data, path, **kwargs):
    compiled.append(path)
    return original(self, data, path, **kwargs)
ext.SourceLoader.source_to_code = spy
import pkg.mod
print(pkg.mod.VALUE, "compiled" if any(str(p).endswith("mod.py") for p in compiled) else "from-bytecode")
"""


def _python_for_nobody() -> str:
    """A python of this interpreter's bytecode that another user may run (the venv's lives under /root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the import as another user")
    for candidate in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        if candidate and os.access(candidate, os.X_OK) and _walkable(Path(candidate)):
            magic = subprocess.run([candidate, "-c", "import importlib.util as u, sys; "
                                    "sys.stdout.buffer.write(u.MAGIC_NUMBER)"], capture_output=True, check=True)
            if magic.stdout == importlib.util.MAGIC_NUMBER:
                return candidate
    pytest.skip("no python with this interpreter's magic number that user nobody can run")


def _walkable(path: Path) -> bool:
    real = Path(os.path.realpath(path))
    return all(os.stat(parent).st_mode & 0o001 for parent in real.parents)


def _import_as_nobody(root: Path) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(root)}
    done = subprocess.run([_python_for_nobody(), "-c", _PROBE], env=env, cwd="/", capture_output=True, text=True,
                          user=65534, group=65534, extra_groups=[], check=True, timeout=60)
    return done.stdout.strip()


@pytest.mark.parametrize("mode", [*sorted(MODES), None])
def test_after_apply_a_user_who_cannot_write_pycache_imports_the_fix_from_bytecode(
        shared_tmp: Path, mode: Optional[str]) -> None:
    target = make_tree(shared_tmp / "site-packages", {"pkg/__init__.py": b"", "pkg/mod.py": OLD})
    if mode is not None:
        _compiled(target, "pkg/__init__.py", mode)
        _compiled(target, "pkg/mod.py", mode)
        _compiled(target, "pkg/mod.py", mode, optimize=1)
    patch = git_diff(shared_tmp / "git", {"pkg/mod.py": OLD}, {"pkg/mod.py": NEW})
    make_tree(shared_tmp / "fix-patches", {"0001-fix.patch": patch})
    for folder, _dirs, _files in os.walk(shared_tmp):
        os.chmod(folder, 0o755)  # root-owned and read-only for the service user, as site-packages is
    report = apply_patches(PatchRequest(target=target, patterns=(f"{shared_tmp}/fix-patches/*.patch",)))
    assert report.written and report.import_ready == ("pkg/mod.py",)
    assert bytecode_mode(target, "pkg/mod.py") == (mode or "timestamp")
    assert not list((target / "pkg/__pycache__").glob("mod.*.opt-1.pyc"))
    assert _import_as_nobody(target) == "patched from-bytecode"


def test_the_probe_sees_a_compilation(shared_tmp: Path) -> None:
    """The probe above can fail: without valid bytecode the import compiles."""
    target = make_tree(shared_tmp / "site-packages", {"pkg/__init__.py": b"", "pkg/mod.py": NEW})
    for folder, _dirs, _files in os.walk(shared_tmp):
        os.chmod(folder, 0o755)
    assert _import_as_nobody(target) == "patched compiled"


# -- faults: old text with old bytecode, or new text with new bytecode ------------------------------------------

def _seeded(root: Path, mode: str) -> Dict[str, object]:
    make_tree(root, {"pkg/__init__.py": b"", "pkg/mod.py": OLD, "pkg/gone.py": b"GONE = 1\n"})
    _compiled(root, "pkg/mod.py", mode)
    _compiled(root, "pkg/mod.py", mode, optimize=1)
    _compiled(root, "pkg/gone.py", mode)
    return read_tree(root)


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC, errno.EACCES], ids=["EIO", "ENOSPC", "EACCES"])
@pytest.mark.parametrize("mode", ["timestamp", "unchecked-hash"])
def test_a_failure_at_any_step_leaves_old_text_with_old_bytecode_or_new_with_new(
        tmp_path: Path, code: int, mode: str) -> None:
    changes = [FileChange("pkg/gone.py", None), FileChange("pkg/mod.py", NEW),
               FileChange("pkg/new.py", NEW)]
    marshalled = {"pkg/mod.py": _code(NEW), "pkg/new.py": _code(NEW, "pkg/new.py")}
    probe = FaultFS(0)
    _seeded(tmp_path / "probe", mode)
    _commit_with_bytecode(tmp_path / "probe", changes, marshalled, fs=probe, journal=tmp_path / "probe.journal")
    writes = {op for op, _path in probe.calls}
    assert {"open", "write", "fsync", "replace", "rename", "link", "chmod"} <= writes
    assert any("__pycache__" in path for _op, path in probe.calls)
    for n in range(1, len(probe.calls) + 1):
        root = tmp_path / f"run{n}"
        pristine = _seeded(root, mode)
        try:
            _commit_with_bytecode(root, changes, marshalled, fs=FaultFS(n, code), journal=tmp_path / f"j{n}")
        except WriteFailed:
            assert read_tree(root) == pristine, f"op #{n} {probe.calls[n - 1]}: not the old tree"
            continue
        # Past the point of no return: the new text, each module with bytecode valid for it.
        assert (root / "pkg/mod.py").read_bytes() == NEW and not (root / "pkg/gone.py").exists()
        assert bytecode_mode(root, "pkg/mod.py") == mode, f"op #{n}"
        assert bytecode_mode(root, "pkg/new.py") == mode, f"op #{n}"
        leftovers = [p.name for p in (root / "pkg/__pycache__").iterdir() if "kolla-entry" not in p.name]
        assert sorted(leftovers) == sorted([f"mod.{TAG}.pyc", f"new.{TAG}.pyc"]), f"op #{n}"


def test_with_skip_after_a_patch_that_does_not_compile_the_rest_still_gets_bytecode(tmp_path: Path) -> None:
    target = make_tree(tmp_path / "site-packages", {"pkg/__init__.py": b"", "pkg/mod.py": OLD, "pkg/bad.py": OLD})
    good = git_diff(tmp_path / "g1", {"pkg/mod.py": OLD}, {"pkg/mod.py": NEW})
    broken = git_diff(tmp_path / "g2", {"pkg/bad.py": OLD}, {"pkg/bad.py": b"VALUE = (\n"})
    make_tree(tmp_path / "fix-patches", {"0001-broken.patch": broken, "0002-good.patch": good})
    report = apply_patches(PatchRequest(target=target, patterns=(f"{tmp_path}/fix-patches/*.patch",),
                                        on_conflict="skip"))
    assert [p.status for p in report.patches] == ["conflict", "applied"]
    assert report.import_ready == ("pkg/mod.py",)
    assert bytecode_mode(target, "pkg/mod.py") == "timestamp"
    assert bytecode_mode(target, "pkg/bad.py") is None


def _big_module(value: str) -> bytes:
    """Enough source that four of them are compiled in workers (above ``PARALLEL_BYTES``)."""
    return "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(9000)).encode() + \
        f"VALUE = {value!r}\n".encode()


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> List[bool]:
    """Two workers even on one CPU; records, for each plan, whether it returned with the compile still running."""
    from kolla_entry.patching import compilecheck, unpatchable

    monkeypatch.setattr(compilecheck, "_usable_cpus", lambda: 2)
    running: List[bool] = []
    real = unpatchable.plan_series

    def spy(*args: object, **kwargs: object) -> object:
        plan = real(*args, **kwargs)  # type: ignore[arg-type]
        running.append(plan.compilation is not None and plan.compilation.running)
        return plan

    monkeypatch.setattr(unpatchable, "plan_series", spy)
    return running


@pytest.mark.parametrize("broken", [False, True], ids=["compiles", "does-not-compile"])
def test_a_commit_overlapping_the_compile_check_ends_all_new_with_bytecode_or_all_old(
        tmp_path: Path, deferred: List[bool], broken: bool) -> None:
    """
    Issue #13: with the check in workers, the commit stages while they compile; a module that does
    not compile rolls it back (old text, old bytecode) and the plan run again names the patch.
    """
    modules = {f"pkg/m{i}.py": _big_module("old") for i in range(4)}
    target = make_tree(tmp_path / "site-packages", {"pkg/__init__.py": b"", **modules})
    for rel in modules:
        _compiled(target, rel, "timestamp")
    patches = {}
    for i, (rel, content) in enumerate(modules.items()):
        new = content.replace(b"VALUE = 'old'", b"VALUE = 'new'" if not (broken and i == 2) else b"VALUE = ('new'")
        patches[f"000{i}.patch"] = git_diff(tmp_path / f"g{i}", {rel: content}, {rel: new})
    make_tree(tmp_path / "pkg-patches", patches)
    before = read_tree(target)
    report = apply_patches(PatchRequest(target=target, patterns=(f"{tmp_path}/pkg-patches/*.patch",)))
    assert deferred[0], "the first plan did not return while its workers compiled"
    if broken:
        assert read_tree(target) == before
        assert not report.written and report.patches[2].status == "conflict"
        assert "would not compile" in report.patches[2].reason
        assert deferred[1:] == [False], "the plan run again to name the patch must not defer"
        return
    assert deferred == [True] and report.written
    assert sorted(report.import_ready) == sorted(modules)
    for rel in modules:
        assert b"VALUE = 'new'" in (target / rel).read_bytes()
        assert bytecode_mode(target, rel) == "timestamp", rel
    assert not [p for p in target.rglob("*") if ".kolla-entry-" in p.name]


def _commit_through(root: Path, journal: Path, changes: list, code: Dict[str, bytes], fs: object) -> None:
    _commit_with_bytecode(root, changes, code, fs=fs, journal=journal)


def test_a_kill_at_any_step_then_recovery_leaves_old_text_with_old_bytecode_or_new_with_new(tmp_path: Path) -> None:
    """A process dying at any seam operation: after recover() the source and its bytecode still belong together."""
    from kolla_entry.patching.transaction import recover
    from tests.faults import crash_at

    changes = [FileChange("pkg/gone.py", None), FileChange("pkg/mod.py", NEW)]
    marshalled = {"pkg/mod.py": _code(NEW)}
    outcomes = set()
    for n in range(1, 200):
        root, journal = tmp_path / f"case{n}", tmp_path / f"j{n}" / "journal.json"
        before = _seeded(root, "unchecked-hash")
        status, ops = crash_at(n, functools.partial(_commit_through, root, journal, changes, marshalled))
        recover(root, journal)
        after = read_tree(root)
        if after == before:
            outcomes.add("old")
        else:
            assert (root / "pkg/mod.py").read_bytes() == NEW, f"N={n}"
            assert bytecode_mode(root, "pkg/mod.py") == "unchecked-hash", f"N={n}"
            assert not (root / "pkg/gone.py").exists() and not list((root / "pkg/__pycache__").glob("gone.*")), n
            assert not any("kolla-entry" in rel or "opt-1" in rel for rel in after), f"N={n}"
            outcomes.add("new")
        assert status in (0, 9), f"N={n}: the child failed instead of dying"
        if status == 0:
            assert ops < n
            break
    assert outcomes == {"old", "new"}
