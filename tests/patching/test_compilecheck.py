"""The compile() check of patched modules, sequential and in forked workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from kolla_entry.patching import compilecheck
from kolla_entry.patching.engine import PatchRequest, apply_patches
from tests.helpers import configmap_dir, git_diff, make_tree, read_tree


def _module(n: int) -> bytes:
    return "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(n)).encode()


def test_compile_error_names_the_line() -> None:
    assert compilecheck.compile_error("a.py", b"x = 1\n") is None
    error = compilecheck.compile_error("a.py", b"x = 1\ndef f(:\n")
    assert error is not None and error.file == "a.py" and "at line 2" in error.message
    assert compilecheck.compile_error("a.py", b"x = '\0'\n") is not None  # NUL: ValueError


@pytest.mark.parametrize("nested", [b"x = " + b"1+" * 100000 + b"1\n", b"x = " + b"-" * 100000 + b"1\n"],
                         ids=["RecursionError", "MemoryError"])
def test_code_too_deep_for_the_compiler_is_a_conflict_here_and_in_workers(nested: bytes) -> None:
    """CPython gives up on such code with RecursionError or MemoryError: a one-line conflict, not a crash."""
    error = compilecheck.compile_error("deep.py", nested)
    assert error is not None and error.file == "deep.py" and "too deeply nested" in error.message
    big = [(f"m{i}.py", _module(9000)) for i in range(4)]
    assert not compilecheck.all_compile([*big, ("deep.py", nested)])


def test_a_patch_leaving_code_too_deep_to_compile_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    target = make_tree(tmp_path / "site-packages", {"pkg/__init__.py": b"", "pkg/consts.py": b"x = 1\n"})
    deep = b"x = " + b"1+" * 100000 + b"1\n"
    configmap_dir(tmp_path, "pkg-patches", {"0001-deep.patch": git_diff(tmp_path / "s", {"pkg/consts.py": b"x = 1\n"},
                                                                       {"pkg/consts.py": deep})})
    before = read_tree(target)
    report = apply_patches(PatchRequest(target=target, patterns=(f"{tmp_path}/pkg-patches/*.patch",)))
    assert report.patches[0].status == "conflict" and report.patches[0].file == "pkg/consts.py"
    assert "too deeply nested" in report.patches[0].reason
    assert read_tree(target) == before


def test_large_sets_are_checked_in_workers_and_a_failure_is_found() -> None:
    big = [(f"m{i}.py", _module(9000)) for i in range(4)]  # > PARALLEL_BYTES together
    assert sum(len(c) for _, c in big) > compilecheck.PARALLEL_BYTES
    assert compilecheck.all_compile(big)
    broken = [*big, ("bad.py", b"def f(:\n")]
    assert not compilecheck.all_compile(broken)
    assert compilecheck.all_compile([]) and not compilecheck.all_compile([("x.py", b"(")])


def test_a_large_series_with_a_broken_patch_reports_exactly_that_patch(tmp_path: Path) -> None:
    """The parallel check finds the failure; planning again inline names the patch and keeps the others."""
    modules = {f"pkg/m{i}.py": _module(9000) for i in range(4)}
    target = make_tree(tmp_path / "site-packages", dict(modules))
    patches = {}
    for i, (rel, content) in enumerate(modules.items()):
        new = content.replace(b"return x + 7\n", b"return x + 70\n" if i != 2 else b"return (x + 70\n")
        patches[f"000{i}.patch"] = git_diff(tmp_path / "s", {rel: content}, {rel: new})
    configmap_dir(tmp_path, "pkg-patches", patches)
    request = PatchRequest(target=target, patterns=(f"{tmp_path}/pkg-patches/*.patch",), on_conflict="skip")
    report = apply_patches(request)
    assert [p.status for p in report.patches] == ["applied", "applied", "conflict", "applied"]
    assert "would not compile" in report.patches[2].reason
    tree = read_tree(target)
    assert b"return x + 70\n" in tree["pkg/m0.py"][0] and tree["pkg/m2.py"][0] == modules["pkg/m2.py"]  # type: ignore[index]


def test_no_worker_pool_falls_back_to_checking_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container without /dev/shm cannot make a pool: the check still runs, in-process."""
    import multiprocessing

    def no_pool(method: str) -> object:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(multiprocessing, "get_context", no_pool)
    big = [(f"m{i}.py", _module(9000)) for i in range(4)]
    assert compilecheck.all_compile(big)
    assert not compilecheck.all_compile([*big, ("bad.py", b"def f(:\n")])


@pytest.mark.parametrize("modules_kib", [1, 9000], ids=["in-process", "in-workers"])
def test_the_kept_modules_come_back_as_the_marshalled_code_of_their_content(modules_kib: int) -> None:
    """Issue #13: the code the check compiled is what gets written, for the kept indexes only."""
    import marshal

    modules = [(f"m{i}.py", _module(modules_kib) + b"VALUE = %d\n" % i) for i in range(4)]
    found = compilecheck.compile_all(modules, keep=[1, 3])
    assert found is not None and sorted(found) == [1, 3]
    namespace: dict = {}
    exec(marshal.loads(found[3]), namespace)
    assert namespace["VALUE"] == 3 and namespace["f0"](1) == 1
    assert compilecheck.compile_all([*modules, ("bad.py", b"(")], keep=[0]) is None


def test_only_the_committed_content_of_each_module_is_kept() -> None:
    from kolla_entry.patching.transaction import FileChange

    modules = [("a.py", b"A = 1\n"), ("b.py", b"B = 1\n"), ("a.py", b"A = 2\n"), ("c.py", b"C = 1\n")]
    changes = [FileChange("a.py", b"A = 2\n"), FileChange("b.py", b"B = 1\n"), FileChange("c.py", None)]
    assert sorted(compilecheck.final_modules(modules, changes)) == [1, 2]
