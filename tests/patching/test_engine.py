"""The patch engine end to end on real trees: check, apply, policies, state, cache invalidation."""

from __future__ import annotations

import py_compile
import shutil
import subprocess
from pathlib import Path
from typing import Dict

import pytest

from kolla_entry.patching.engine import PatchRequest, apply_patches, check_patches
from kolla_entry.patching.state import load
from tests.helpers import bytecode_mode, configmap_dir, git_diff, make_tree, read_tree, without_bytecode

EXAMPLE = Path(__file__).parents[2] / "examples" / "small"
HELLO = (EXAMPLE / "site-packages" / "greeter" / "hello.py").read_bytes()


def _example(tmp_path: Path, extra: Dict[str, bytes] | None = None, *, only: bool = False) -> PatchRequest:
    """The small example's tree and patches (or ``only`` the extra ones) in a ConfigMap layout."""
    target = tmp_path / "site-packages"
    shutil.copytree(EXAMPLE / "site-packages", target)
    patches = {} if only else {p.name: p.read_bytes() for p in sorted((EXAMPLE / "patches").glob("*.patch"))}
    patches.update(extra or {})
    configmap_dir(tmp_path, "greeter-patches", patches)
    return PatchRequest(target=target, patterns=(f"{tmp_path}/*-patches/*.patch",),
                        state_file=tmp_path / "run" / "state.json")


def _gnu_patch(tree: Path, patches: list[Path]) -> None:
    for patch in patches:
        subprocess.run(["patch", "-p1", "-s", "--no-backup-if-mismatch", "-i", str(patch)], cwd=tree, check=True)


def _statuses(report: object) -> list[str]:
    return [p.status for p in report.patches]  # type: ignore[attr-defined]


def test_check_reports_without_writing(tmp_path: Path) -> None:
    request = _example(tmp_path)
    before = read_tree(request.target)
    report = check_patches(request)
    assert _statuses(report) == ["applicable", "applicable", "applicable", "skipped"]
    assert "nova/compute/claims.py" in report.patches[3].reason
    assert read_tree(request.target) == before
    assert not report.failed and not report.written
    assert not request.state_file.exists()  # type: ignore[union-attr]


def test_apply_matches_gnu_patch_and_is_idempotent(tmp_path: Path) -> None:
    request = _example(tmp_path)
    report = apply_patches(request)
    assert _statuses(report) == ["applied", "applied", "applied", "skipped"]
    assert report.written
    reference = tmp_path / "reference"
    shutil.copytree(EXAMPLE / "site-packages", reference)
    _gnu_patch(reference, sorted((EXAMPLE / "patches").glob("000[123]*.patch")))
    assert {k: v[0] for k, v in without_bytecode(read_tree(request.target)).items()} == {  # type: ignore[index]
        k: v[0] for k, v in read_tree(reference).items()  # type: ignore[index]
    }
    after = read_tree(request.target)
    again = apply_patches(request)
    assert _statuses(again) == ["already-applied", "already-applied", "already-applied", "skipped"]
    assert not again.written
    assert read_tree(request.target) == after


def test_state_file_records_each_patch(tmp_path: Path) -> None:
    request = _example(tmp_path)
    apply_patches(request)
    state = load(request.state_file)  # type: ignore[arg-type]
    entries = state["patches"]["patches"]
    assert [e["status"] for e in entries] == ["applied", "applied", "applied", "skipped"]
    assert all(len(e["sha256"]) == 64 for e in entries)
    assert entries[1]["files"] == [{"path": "greeter/hello.py", "status": "applied", "bytecode": "import-ready"},
                                   {"path": "greeter/version.py", "status": "applied", "bytecode": "import-ready"}]
    assert state["patches"]["import_ready"] == 2


def _conflicting(tmp_path: Path) -> bytes:
    return git_diff(tmp_path / "scratch", {"greeter/hello.py": HELLO.replace(b"DEFAULT_NAME", b"NO_SUCH")},
                    {"greeter/hello.py": HELLO.replace(b"DEFAULT_NAME", b"OTHER")})


def test_conflict_with_fail_policy_writes_nothing(tmp_path: Path) -> None:
    request = _example(tmp_path, {"0005-conflict.patch": _conflicting(tmp_path)})
    before = read_tree(request.target)
    report = apply_patches(request)
    assert report.failed and not report.written
    assert _statuses(report)[-1] == "conflict"
    assert report.patches[-1].file == "greeter/hello.py"
    assert report.patches[-1].hunk == 1
    assert read_tree(request.target) == before
    line = report.failure_lines()[0]
    assert "0005-conflict.patch" in line and "greeter/hello.py" in line and "hunk #1" in line


def test_conflict_with_skip_policy_applies_the_rest(tmp_path: Path) -> None:
    request = _example(tmp_path, {"0005-conflict.patch": _conflicting(tmp_path)})
    from dataclasses import replace

    report = apply_patches(replace(request, on_conflict="skip"))
    assert _statuses(report) == ["applied", "applied", "applied", "skipped", "conflict"]
    assert report.written and report.failed
    assert b"HOTFIX" in (request.target / "greeter" / "hello.py").read_bytes()


def test_later_patch_sees_earlier_patch_in_memory(tmp_path: Path) -> None:
    """0002 only applies on top of 0001's result; both are worked out before anything is written."""
    request = _example(tmp_path)
    step1 = HELLO.replace(b"world", b"team")
    step2 = step1.replace(b"team", b"crew")
    first = git_diff(tmp_path / "s", {"greeter/hello.py": HELLO}, {"greeter/hello.py": step1})
    second = git_diff(tmp_path / "s", {"greeter/hello.py": step1}, {"greeter/hello.py": step2})
    shutil.rmtree(tmp_path / "greeter-patches")
    configmap_dir(tmp_path, "greeter-patches", {"a.patch": first, "b.patch": second})
    report = apply_patches(request)
    assert _statuses(report) == ["applied", "applied"]
    assert (request.target / "greeter" / "hello.py").read_bytes() == step2


def test_patch_that_breaks_syntax_is_a_conflict(tmp_path: Path) -> None:
    broken = git_diff(tmp_path / "s", {"greeter/hello.py": HELLO},
                      {"greeter/hello.py": HELLO.replace(b"def shout(name=None):", b"def shout(name=None)")})
    request = _example(tmp_path, {"0009-broken.patch": broken}, only=True)
    before = read_tree(request.target)
    report = apply_patches(request)
    assert report.patches[-1].status == "conflict"
    assert "compile" in report.patches[-1].reason
    assert read_tree(request.target) == before


def test_files_of_uninstalled_top_level_folders_are_skipped(tmp_path: Path) -> None:
    """Upstream backports carry release notes and docs: those files are skipped, the fix applies."""
    fix = git_diff(tmp_path / "s",
                   {"greeter/hello.py": HELLO, "releasenotes/notes/x.yaml": b"a: 1\n"},
                   {"greeter/hello.py": HELLO.replace(b"world", b"team"), "releasenotes/notes/x.yaml": b"a: 2\n"})
    request = _example(tmp_path)
    shutil.rmtree(tmp_path / "greeter-patches")
    configmap_dir(tmp_path, "greeter-patches", {"fix.patch": fix})
    report = apply_patches(request)
    assert report.patches[0].status == "applied"
    assert [(f.path, f.status) for f in report.patches[0].files] == [
        ("greeter/hello.py", "applied"), ("releasenotes/notes/x.yaml", "skipped")]
    assert not (request.target / "releasenotes").exists()


def test_a_backport_listing_docs_first_is_not_skipped(tmp_path: Path) -> None:
    """git sorts doc/ before the package: the relevance rule looks at the first installed file."""
    fix = git_diff(tmp_path / "s",
                   {"doc/source/index.rst": b"old\n", "greeter/hello.py": HELLO},
                   {"doc/source/index.rst": b"new\n", "greeter/hello.py": HELLO.replace(b"world", b"team")})
    assert fix.index(b"doc/source/index.rst") < fix.index(b"greeter/hello.py")
    request = _example(tmp_path)
    shutil.rmtree(tmp_path / "greeter-patches")
    configmap_dir(tmp_path, "greeter-patches", {"fix.patch": fix})
    report = apply_patches(request)
    assert report.patches[0].status == "applied", report.patches[0].reason
    assert [(f.path, f.status) for f in report.patches[0].files] == [
        ("doc/source/index.rst", "skipped"), ("greeter/hello.py", "applied")]
    assert b"team" in (request.target / "greeter" / "hello.py").read_bytes()


def test_failed_patch_naming_a_file_twice_and_a_path_through_a_file_keeps_its_status(tmp_path: Path) -> None:
    """The already-applied check of a series must not turn a conflict into an exception (atheris)."""
    bad = b"".join(
        b"--- a/%s\n+++ b/%s\n@@ -1,1 +1,1 @@\n-%s\n+x\n" % (path, path, old)
        for path, old in ((b"greeter/hello.py", b"no such line"), (b"greeter/hello.py", b"nor this one"),
                          (b"greeter/hello.py/inner.txt", b"a")))
    request = _example(tmp_path, {"0009-bad.patch": bad})
    before = [p.status for p in check_patches(_example(tmp_path / "plain")).patches]
    report = check_patches(request)
    assert [p.status for p in report.patches] == [*before, "conflict"]
    assert report.patches[-1].file == "greeter/hello.py"


def test_missing_file_inside_installed_package_is_a_conflict(tmp_path: Path) -> None:
    fix = git_diff(tmp_path / "s", {"greeter/hello.py": HELLO, "greeter/zzz.py": b"x = 1\n"},
                   {"greeter/hello.py": HELLO.replace(b"world", b"team"), "greeter/zzz.py": b"x = 2\n"})
    request = _example(tmp_path, {"0009-x.patch": fix}, only=True)
    report = check_patches(request)
    assert report.patches[-1].status == "conflict"
    assert report.patches[-1].file == "greeter/zzz.py"


@pytest.mark.parametrize("path", ["../outside.py", "greeter/../../outside.py"])
def test_paths_leaving_the_target_are_refused(tmp_path: Path, path: str) -> None:
    evil = (f"--- a/{path}\n+++ b/{path}\n@@ -0,0 +1 @@\n+x = 1\n").encode()
    request = _example(tmp_path, {"0000-evil.patch": evil})
    before = read_tree(tmp_path)
    report = apply_patches(request)
    assert report.patches[0].status == "refused"
    assert not report.written
    after = read_tree(tmp_path)
    after.pop("run/state.json", None)
    assert after == before


def test_symlink_to_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    make_tree(outside, {"hello.py": HELLO})
    request = _example(tmp_path)
    (request.target / "greeter" / "hello.py").unlink()
    (request.target / "greeter" / "hello.py").symlink_to(outside / "hello.py")
    report = apply_patches(request)
    assert "refused" in _statuses(report)
    assert (outside / "hello.py").read_bytes() == HELLO


def test_partly_applied_patch_is_a_conflict(tmp_path: Path) -> None:
    request = _example(tmp_path)
    other = git_diff(tmp_path / "s", {"greeter/__init__.py": b'"""x"""\n', "greeter/hello.py": HELLO},
                     {"greeter/__init__.py": b'"""y"""\n', "greeter/hello.py": HELLO.replace(b"world", b"team")})
    shutil.rmtree(tmp_path / "greeter-patches")
    configmap_dir(tmp_path, "greeter-patches", {"p.patch": other})
    (request.target / "greeter" / "__init__.py").write_bytes(b'"""y"""\n')
    report = check_patches(request)
    assert report.patches[0].status == "conflict"
    assert "partly applied" in report.patches[0].reason


def test_a_stale_unchecked_hash_pyc_is_replaced_by_one_of_the_patched_source(tmp_path: Path) -> None:
    request = _example(tmp_path)
    source = request.target / "greeter" / "hello.py"
    pyc = py_compile.compile(str(source), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    stale = Path(pyc).read_bytes()
    apply_patches(request)
    assert Path(pyc).read_bytes() != stale
    assert bytecode_mode(request.target, "greeter/hello.py") == "unchecked-hash"
    done = subprocess.run(["python3", "-c", "import greeter.hello as h; print(h.greeting())"],
                          cwd=request.target, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "Hello, world!"


def test_no_patches_is_a_quiet_success(tmp_path: Path) -> None:
    target = make_tree(tmp_path / "sp", {"x/__init__.py": b""})
    report = apply_patches(PatchRequest(target=target, patterns=(f"{tmp_path}/none-patches/*.patch",)))
    assert report.patches == () and not report.failed and not report.written


def test_multi_commit_patch_changing_the_same_lines_is_already_applied_on_restart(tmp_path: Path) -> None:
    """A format-patch series that edits its own edit must not turn a pod restart into a conflict."""
    step1 = HELLO.replace(b"world", b"team")
    step2 = step1.replace(b"team", b"crew")
    first = git_diff(tmp_path / "s", {"greeter/hello.py": HELLO}, {"greeter/hello.py": step1})
    second = git_diff(tmp_path / "s", {"greeter/hello.py": step1}, {"greeter/hello.py": step2})
    request = _example(tmp_path, {"0001-series.patch": first + second}, only=True)
    assert apply_patches(request).patches[0].status == "applied"
    assert (request.target / "greeter" / "hello.py").read_bytes() == step2
    after = read_tree(request.target)
    again = apply_patches(request)
    assert again.patches[0].status == "already-applied"
    assert read_tree(request.target) == after
    (request.target / "greeter" / "hello.py").write_bytes(step1)
    assert check_patches(request).patches[0].status == "conflict"


def test_check_refuses_to_describe_a_tree_with_a_pending_journal(tmp_path: Path) -> None:
    """A half-committed tree has no honest status: check-patches says so and what to do."""
    from kolla_entry.errors import EnvironmentProblem

    request = _example(tmp_path)
    (request.target / ".kolla-entry.journal").write_text("{}")
    with pytest.raises(EnvironmentProblem, match="run apply-patches"):
        check_patches(request)


def test_failure_lines_stay_one_line_whatever_the_file_name(tmp_path: Path) -> None:
    from kolla_entry.patching.report import PatchReport, SeriesReport

    report = SeriesReport(target="t", patches=(PatchReport(patch="p", status="conflict", reason="r",
                                                           file="greeter/a\nb.py"),))
    assert report.failure_lines() == ["conflict: p: greeter/a\\nb.py: r"]


# -- issue #12: relevance by package, unsafe paths first, GNU file name selection --------------

def _only_patch(tmp_path: Path, patch: bytes, strip: int = 1) -> PatchRequest:
    from dataclasses import replace

    return replace(_example(tmp_path, {"0001-fix.patch": patch}, only=True), strip=strip)


def test_a_missing_first_file_inside_an_installed_package_is_a_conflict_naming_it(tmp_path: Path) -> None:
    """git lists greeter/api_tests/ before greeter/hello.py: an image without the test tree must not skip the fix."""
    fix = git_diff(tmp_path / "s",
                   {"greeter/api_tests/test_hello.py": b"a = 1\n", "greeter/hello.py": HELLO},
                   {"greeter/api_tests/test_hello.py": b"a = 2\n",
                    "greeter/hello.py": HELLO.replace(b"world", b"team")})
    assert fix.index(b"greeter/api_tests/test_hello.py") < fix.index(b"greeter/hello.py")
    request = _only_patch(tmp_path, fix)
    before = read_tree(request.target)
    report = apply_patches(request)
    result = report.patches[0]
    assert (result.status, result.file) == ("conflict", "greeter/api_tests/test_hello.py"), result.reason
    assert "greeter/api_tests/test_hello.py" in report.failure_lines()[0]
    assert read_tree(request.target) == before


def test_a_patch_with_no_installed_package_is_skipped_naming_the_package(tmp_path: Path) -> None:
    fix = b"--- a/nova/virt/driver.py\n+++ b/nova/virt/driver.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n"
    report = check_patches(_only_patch(tmp_path, fix))
    assert report.patches[0].status == "skipped"
    assert "nova/ is not installed in this image" in report.patches[0].reason


def test_files_of_uninstalled_packages_stay_skipped_beside_an_installed_one(tmp_path: Path) -> None:
    """Only the installed package decides: another distribution's files are skipped with a warning."""
    fix = (b"--- a/othertests/test_x.py\n+++ b/othertests/test_x.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n"
           + git_diff(tmp_path / "s", {"greeter/hello.py": HELLO},
                      {"greeter/hello.py": HELLO.replace(b"world", b"team")}))
    report = apply_patches(_only_patch(tmp_path, fix))
    assert report.patches[0].status == "applied", report.patches[0].reason
    assert [(f.path, f.status) for f in report.patches[0].files] == [
        ("othertests/test_x.py", "skipped"), ("greeter/hello.py", "applied")]


def test_a_new_file_inside_an_installed_package_makes_the_patch_relevant(tmp_path: Path) -> None:
    fix = (b"--- a/nova/x.py\n+++ b/nova/x.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n"
           b"--- /dev/null\n+++ b/greeter/new.py\n@@ -0,0 +1 @@\n+b = 1\n")
    report = apply_patches(_only_patch(tmp_path, fix))
    assert report.patches[0].status == "applied", report.patches[0].reason


@pytest.mark.parametrize(("patch", "strip", "named"), [
    pytest.param(b"--- a//etc/x\n+++ b//etc/x\n@@ -1 +1 @@\n-a\n+b\n", 1, "/etc/x", id="absolute-after-strip"),
    pytest.param(b"--- /etc/x\n+++ /etc/x\n@@ -1 +1 @@\n-a\n+b\n", 0, "/etc/x", id="absolute"),
    pytest.param(b"--- a/nova/../../x\n+++ b/nova/../../x\n@@ -1 +1 @@\n-a\n+b\n", 1, "nova/../../x", id="dotdot"),
    pytest.param(b"--- a/out/x.py\n+++ b/out/x.py\n@@ -1 +1 @@\n-a\n+b\n", 1, "out/x.py", id="through-a-link"),
    pytest.param(b"--- a/greeter/hello.py\n+++ b/greeter/hello.py\n@@ -1 +1 @@\n-a\n+b\n"
                 b"--- a//etc/x\n+++ b//etc/x\n@@ -1 +1 @@\n-a\n+b\n", 1, "/etc/x", id="second-file"),
])
def test_unsafe_paths_are_refused_whatever_exists(tmp_path: Path, patch: bytes, strip: int, named: str) -> None:
    """Issue #12 item 2: an unsafe path is never reported as a harmless skip."""
    request = _only_patch(tmp_path, patch, strip)
    (request.target / "out").symlink_to(tmp_path / "elsewhere")  # absent outside the target
    before = read_tree(request.target)
    report = apply_patches(request)
    assert report.patches[0].status == "refused", report.patches[0].reason
    assert report.patches[0].file == named
    assert read_tree(request.target) == before


def test_old_name_missing_new_name_present_patches_the_new_name(tmp_path: Path) -> None:
    """``diff -u nova/utils.py.orig nova/utils.py`` with --strip 0, as GNU patch and git apply read it."""
    target = make_tree(tmp_path / "made", {"greeter/hello.py.orig": HELLO,
                                          "greeter/hello.py": HELLO.replace(b"world", b"team")})
    done = subprocess.run(["diff", "-u", "greeter/hello.py.orig", "greeter/hello.py"], cwd=target,
                          capture_output=True, check=False)
    assert done.returncode == 1, done.stderr
    request = _only_patch(tmp_path, done.stdout, strip=0)
    report = apply_patches(request)
    assert report.patches[0].status == "applied", report.patches[0].reason
    assert [f.path for f in report.patches[0].files] == ["greeter/hello.py"]
    assert (request.target / "greeter" / "hello.py").read_bytes() == HELLO.replace(b"world", b"team")
    reference = make_tree(tmp_path / "gnu", {"greeter/hello.py": HELLO})
    subprocess.run(["patch", "-p0", "-s", "--no-backup-if-mismatch"], input=done.stdout, cwd=reference, check=True)
    assert (reference / "greeter" / "hello.py").read_bytes() == HELLO.replace(b"world", b"team")
    assert apply_patches(request).patches[0].status == "already-applied"


def test_when_both_names_exist_the_old_name_is_patched(tmp_path: Path) -> None:
    patch = (b"--- greeter/hello.py\n+++ greeter/version.py\n"
             + git_diff(tmp_path / "s", {"greeter/hello.py": HELLO},
                        {"greeter/hello.py": HELLO.replace(b"world", b"team")}).split(b"+++ b/greeter/hello.py\n")[1])
    request = _only_patch(tmp_path, patch, strip=0)
    init = (request.target / "greeter" / "__init__.py").read_bytes()
    report = apply_patches(request)
    assert report.patches[0].status == "applied", report.patches[0].reason
    assert (request.target / "greeter" / "hello.py").read_bytes() == HELLO.replace(b"world", b"team")
    assert (request.target / "greeter" / "__init__.py").read_bytes() == init


# -- issue #12 item 6: every status alike for a patch in LF, CRLF or mixed line endings ----------

DATA_TXT = b"alpha\nbeta\ngamma\n"
_BY_STATUS = {
    "applied": b"--- a/greeter/data.txt\n+++ b/greeter/data.txt\n@@ -0,0 +1 @@\n+new info\n",
    "applied-with-context": b"--- a/greeter/data.txt\n+++ b/greeter/data.txt\n@@ -1,3 +1,3 @@\n alpha\n-beta\n+BETA\n"
                            b" gamma\n",
    "applied-twice-in-a-series": b"--- a/greeter/data.txt\n+++ b/greeter/data.txt\n@@ -1,3 +1,3 @@\n alpha\n-beta\n"
                                 b"+BETA\n gamma\n--- a/greeter/data.txt\n+++ b/greeter/data.txt\n@@ -1,3 +1,3 @@\n"
                                 b" alpha\n-BETA\n+Beta\n gamma\n",
    "created": b"--- /dev/null\n+++ b/greeter/new.txt\n@@ -0,0 +1,2 @@\n+one\n+two\n",
    "conflict": b"--- a/greeter/data.txt\n+++ b/greeter/data.txt\n@@ -1,3 +1,3 @@\n alpha\n-delta\n+DELTA\n gamma\n",
    "skipped": b"--- a/nova/x.py\n+++ b/nova/x.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n",
    "invalid": b"--- a/greeter/data.txt\n+++ b/greeter/data.txt\n@@ -1,3 +1,3 @@\n alpha\n-beta\n",
    "refused": b"--- a/greeter/../../x\n+++ b/greeter/../../x\n@@ -1 +1 @@\n-a\n+b\n",
}


def _line_endings(patch: bytes, form: str) -> bytes:
    lines = patch.split(b"\n")[:-1]
    if form == "lf":
        return patch
    if form == "crlf":
        return b"".join(line + b"\r\n" for line in lines)
    return b"".join(line + (b"\r\n" if i % 2 else b"\n") for i, line in enumerate(lines))


@pytest.mark.parametrize("case", list(_BY_STATUS))
@pytest.mark.parametrize("form", ["crlf", "mixed"])
def test_every_status_is_the_same_for_crlf_and_mixed_patches(tmp_path: Path, case: str, form: str) -> None:
    """A check, then three starts: the same statuses and the same LF file as the LF patch (issue #12 item 6)."""
    outcomes = []
    for each in ("lf", form):
        request = _only_patch(tmp_path / each, _line_endings(_BY_STATUS[case], each))
        (request.target / "greeter" / "data.txt").write_bytes(DATA_TXT)
        statuses = [check_patches(request).patches[0].status]
        statuses += [apply_patches(request).patches[0].status for _ in range(3)]
        outcomes.append((statuses, read_tree(request.target)))
    assert outcomes[1][0] == outcomes[0][0]
    expected = case if case in ("conflict", "skipped", "invalid", "refused") else "applied"
    if expected == "applied":
        assert outcomes[0][0] == ["applicable", "applied", "already-applied", "already-applied"]
    else:
        assert outcomes[0][0] == [expected] * 4
    if case != "created":  # a created file holds what the patch says, line endings included
        assert outcomes[1][1] == outcomes[0][1]


def test_a_hunk_whose_two_sides_fit_is_never_applied_twice(tmp_path: Path) -> None:
    """Issue #12 item 5's repro: three starts used to give three `applied`, one line fewer each time."""
    patch = b"--- a/greeter/data.txt\n+++ b/greeter/data.txt\n@@ -1,5 +1,4 @@\n x\n-b\n b\n b\n b\n"
    request = _only_patch(tmp_path, patch)
    (request.target / "greeter" / "data.txt").write_bytes(b"x\n" + b"b\n" * 7)
    before = read_tree(request.target)
    reports = [apply_patches(request) for _ in range(3)]
    assert [r.patches[0].status for r in reports] == ["conflict"] * 3
    assert "ambiguous at line 1" in reports[0].patches[0].reason
    assert "git diff -U10" in reports[0].failure_lines()[0]
    assert read_tree(request.target) == before
