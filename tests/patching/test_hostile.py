"""
Hostile and broken patches through the whole engine (issue #8 "Hostile and broken input").

Every case goes through :func:`check_patches` and :func:`apply_patches` (and a few through the
real CLI) and must end as a clean status: nothing but the documented exceptions escapes, nothing
is written outside the target, memory stays bounded, and no report or state holds file contents.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from kolla_entry.constants import MAX_PATCH_BYTES
from kolla_entry.patching.engine import PatchRequest, apply_patches, check_patches
from kolla_entry.patching.report import PATCH_STATUSES, SeriesReport
from tests.helpers import bytecode_mode, git_diff, make_tree, read_tree, without_bytecode

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "small"
HELLO = (EXAMPLE / "site-packages" / "greeter" / "hello.py").read_bytes()
#: Bound on tracemalloc's peak while applying a patch of ``n`` bytes (documented in README "Guarantees").
MEMORY_FACTOR = 20
#: compile() of a patched module (the syntax check) peaks at about 100x the module's bytes.
COMPILE_FACTOR = 150
MEMORY_SLACK = 4 * 1024 * 1024


def _setup(tmp_path: Path, patches: Dict[str, bytes]) -> PatchRequest:
    """The small example's site-packages plus an ``outside`` folder beside it, and the patches."""
    target = tmp_path / "site-packages"
    shutil.copytree(EXAMPLE / "site-packages", target)
    make_tree(tmp_path / "outside", {"victim.py": b"SAFE = True\n", "greeter/hello.py": HELLO})
    (tmp_path / "evil-patches").mkdir()
    make_tree(tmp_path / "evil-patches", patches)
    return PatchRequest(target=target, patterns=(f"{tmp_path}/evil-patches/*.patch",),
                        state_file=tmp_path / "run" / "state.json")


def _outside(tmp_path: Path) -> Dict[str, object]:
    """Everything below ``tmp_path`` except the target and what kolla-entry may write (the state)."""
    tree = read_tree(tmp_path)
    return {rel: v for rel, v in tree.items() if not rel.startswith(("site-packages/", "run/"))}


def _run_both(request: PatchRequest, tmp_path: Path) -> SeriesReport:
    """check then apply; assert clean statuses, nothing outside touched, no stray temp file."""
    outside = _outside(tmp_path)
    before = read_tree(request.target)
    checked = check_patches(request)
    assert read_tree(request.target) == before, "check_patches wrote into the target"
    applied = apply_patches(request)
    for report in (checked, applied):
        assert all(p.status in PATCH_STATUSES for p in report.patches)
        for patch in report.patches:
            assert patch.status not in ("conflict", "invalid", "refused") or patch.reason, "failure without reason"
    assert _outside(tmp_path) == outside, "something outside the target changed"
    assert not any(".kolla-entry-" in rel for rel in read_tree(request.target)), "temp file left behind"
    if not applied.written:
        assert read_tree(request.target) == before
    return applied


def _diff(tmp_path: Path, before: Dict[str, bytes], after: Dict[str, bytes]) -> bytes:
    return git_diff(tmp_path / "git", before, after)


def _status(report: SeriesReport) -> List[str]:
    return [p.status for p in report.patches]


# -- size limits and memory -------------------------------------------------------------------

def test_patch_above_the_size_limit_is_invalid_with_a_clear_message(tmp_path: Path) -> None:
    request = _setup(tmp_path, {})
    big = tmp_path / "evil-patches" / "big.patch"
    with open(big, "wb") as handle:
        handle.truncate(MAX_PATCH_BYTES + 1)  # sparse: the limit is about what is read, not the disk
    tracemalloc.start()
    try:
        report = _run_both(request, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert _status(report) == ["invalid"]
    assert "larger than 8 MiB" in report.patches[0].reason and "split" in report.patches[0].reason
    assert report.failed and not report.written
    assert peak < 3 * MAX_PATCH_BYTES, f"reading an oversized patch peaked at {peak} bytes"


def test_patch_at_the_size_limit_is_read(tmp_path: Path) -> None:
    """Exactly MAX_PATCH_BYTES is allowed: a valid diff padded with a commit message."""
    fix = _diff(tmp_path, {"greeter/hello.py": HELLO}, {"greeter/hello.py": HELLO.replace(b"world", b"team")})
    prose = b"Commentary before the diff is skipped, as in a mail.\n"
    data = prose * ((MAX_PATCH_BYTES - len(fix)) // len(prose)) + fix
    data = b"\n" * (MAX_PATCH_BYTES - len(data)) + data
    assert len(data) == MAX_PATCH_BYTES
    request = _setup(tmp_path, {"limit.patch": data})
    assert _status(check_patches(request)) == ["applicable"]


def _peak(request: PatchRequest) -> tuple[SeriesReport, int]:
    tracemalloc.start()
    try:
        report = apply_patches(request)
        return report, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_huge_hunk_applies_with_bounded_memory(tmp_path: Path) -> None:
    """A 100,000-line hunk into a data file: peak memory below 20x the patch bytes + 4 MiB."""
    added = b"".join(b"VALUE_%d = %d\n" % (i, i) for i in range(100_000))
    fix = _diff(tmp_path, {"greeter/data.txt": HELLO}, {"greeter/data.txt": HELLO + added})
    request = _setup(tmp_path, {"huge.patch": fix})
    (request.target / "greeter" / "data.txt").write_bytes(HELLO)
    report, peak = _peak(request)
    assert _status(report) == ["applied"]
    assert (request.target / "greeter" / "data.txt").read_bytes() == HELLO + added
    bound = MEMORY_FACTOR * len(fix) + MEMORY_SLACK
    assert peak < bound, f"peak {peak} bytes for a {len(fix)}-byte patch (bound {bound})"


def test_huge_python_module_memory_is_dominated_by_the_compile_check(tmp_path: Path) -> None:
    """The compile() check of a patched module costs about 100x its size: bounded by the module."""
    added = b"".join(b"VALUE_%d = %d\n" % (i, i) for i in range(20_000))
    fix = _diff(tmp_path, {"greeter/hello.py": HELLO}, {"greeter/hello.py": HELLO + added})
    request = _setup(tmp_path, {"huge.patch": fix})
    report, peak = _peak(request)
    assert _status(report) == ["applied"]
    bound = MEMORY_FACTOR * len(fix) + COMPILE_FACTOR * len(HELLO + added) + MEMORY_SLACK
    assert peak < bound, f"peak {peak} bytes (bound {bound})"


def test_thousands_of_files_in_one_patch(tmp_path: Path) -> None:
    """2,000 new modules in one patch are worked out; 200 are committed all at once."""
    def creations(n: int) -> bytes:
        parts = [_diff(tmp_path, {"greeter/hello.py": HELLO}, {"greeter/hello.py": HELLO.replace(b"world", b"w")})]
        parts += [b"--- /dev/null\n+++ b/greeter/gen/m%d.py\n@@ -0,0 +1 @@\n+N = %d\n" % (i, i) for i in range(n)]
        return b"".join(parts)

    request = _setup(tmp_path, {"many.patch": creations(2000)})
    report = check_patches(request)
    assert _status(report) == ["applicable"] and len(report.patches[0].files) == 2001
    shutil.rmtree(tmp_path / "evil-patches")
    make_tree(tmp_path / "evil-patches", {"many.patch": creations(200)})
    report = _run_both(request, tmp_path)
    assert _status(report) == ["applied"]
    assert len(list((request.target / "greeter" / "gen").glob("*.py"))) == 200


@pytest.mark.parametrize(("path", "statuses"), [
    pytest.param("greeter/" + "d/" * 300 + "deep.py", {"applied", "conflict"}, id="300-folders-deep"),
    pytest.param("greeter/" + "n" * 300 + ".py", {"refused", "invalid"}, id="name-too-long"),
    pytest.param("greeter/" + ("x" * 250 + "/") * 15 + "m.py", {"applied", "conflict"}, id="path-near-path-max"),
])
def test_deep_and_long_paths_end_cleanly(tmp_path: Path, path: str, statuses: set) -> None:
    patch = f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+X = 1\n".encode()
    request = _setup(tmp_path, {"deep.patch": patch})
    report = _run_both(request, tmp_path)
    assert set(_status(report)) <= statuses or report.error, (_status(report), report.error)


# -- hostile names and bytes --------------------------------------------------------------------

@pytest.mark.parametrize(("patch", "status"), [
    pytest.param(b"--- a/greeter/ev\0il.py\n+++ b/greeter/ev\0il.py\n@@ -0,0 +1 @@\n+x = 1\n",
                 {"refused", "invalid"}, id="nul-in-path"),
    pytest.param(b"--- /dev/null\n+++ b/greeter/new.py\n@@ -0,0 +1 @@\n+x = '\0'\n", {"conflict"},
                 id="nul-in-python-source"),
    pytest.param(b"--- /dev/null\n+++ b/greeter/data.txt\n@@ -0,0 +1 @@\n+a\0b\n", {"applied"},
                 id="nul-in-data-file"),
    pytest.param(b"--- /dev/null\n+++ b/greeter/\xff\xfe.py\n@@ -0,0 +1 @@\n+x = 1\n", {"applied"},
                 id="invalid-utf8-name"),
    pytest.param(b"--- /dev/null\n+++ b/greeter/new.py\n@@ -0,0 +1 @@\n+x = '\xff'\n", {"conflict"},
                 id="invalid-utf8-python-source"),
    pytest.param(b"--- /dev/null\n+++ /etc/passwd\n@@ -0,0 +1 @@\n+x\n", {"skipped"},
                 id="absolute-path-stripped-like-gnu-patch"),
    pytest.param(b"--- /dev/null\n+++ b/greeter/../../outside/victim.py\n@@ -0,0 +1 @@\n+x\n", {"refused"},
                 id="dotdot"),
    pytest.param(b"--- /dev/null\n+++ b/greeter/.victim.kolla-entry-abc\n@@ -0,0 +1 @@\n+x\n", {"refused"},
                 id="temp-name"),
    pytest.param(b"--- /dev/null\n+++ b/greeter/x.py\n@@ -0,0 +1,3 @@\n+x = 1\n", {"invalid"}, id="short-hunk"),
    pytest.param(b"--- /dev/null\n+++ b/greeter/x.py\n@@ -0,0 +99999999999999999999 @@\n+x = 1\n", {"invalid"},
                 id="absurd-count"),
    pytest.param(b"diff --git a/greeter/n.py b/greeter/n.py\nnew file mode 1000000000000000000000644\n"
                 b"--- /dev/null\n+++ b/greeter/n.py\n@@ -0,0 +1 @@\n+x = 1\n", {"invalid"},
                 id="mode-too-big-found-by-atheris"),
    pytest.param(b"diff --git a/greeter/hello.py b/greeter/hello.py\nold mode 100644\nnew mode 40755\n",
                 {"invalid"}, id="mode-of-a-folder"),
    pytest.param(b"\x00\x01\x02binary\xff" * 100, {"invalid"}, id="random-bytes"),
    pytest.param(b"", {"invalid"}, id="empty"),
    pytest.param(b"diff --git a/greeter/hello.py b/greeter/hello.py\nGIT binary patch\nliteral 3\nKcmZ?wU|;|M00aO5\n",
                 {"invalid"}, id="git-binary"),
])
def test_hostile_patches_end_as_a_clean_status(tmp_path: Path, patch: bytes, status: set) -> None:
    request = _setup(tmp_path, {"evil.patch": patch})
    report = _run_both(request, tmp_path)
    assert set(_status(report)) <= status, report.patches


def test_absolute_path_with_strip_0_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "outside" / "victim.py"
    patch = f"--- {victim}\n+++ {victim}\n@@ -1 +1 @@\n-SAFE = True\n+SAFE = False\n".encode()
    request = replace(_setup(tmp_path, {"abs.patch": patch}), strip=0)
    report = _run_both(request, tmp_path)
    assert _status(report) == ["refused"]
    assert "absolute" in report.patches[0].reason


def test_latin1_source_with_coding_cookie_is_patched_bytewise(tmp_path: Path) -> None:
    source = "# -*- coding: latin-1 -*-\nNAME = 'Müller'\nCITY = 'Zürich'\n".encode("latin-1")
    fixed = source.replace("Zürich".encode("latin-1"), "Genève".encode("latin-1"))
    request = _setup(tmp_path, {"latin1.patch": _diff(tmp_path, {"greeter/l1.py": source},
                                                        {"greeter/l1.py": fixed})})
    (request.target / "greeter" / "l1.py").write_bytes(source)
    report = _run_both(request, tmp_path)
    assert _status(report) == ["applied"]
    assert (request.target / "greeter" / "l1.py").read_bytes() == fixed


def test_crlf_mixes_end_cleanly(tmp_path: Path) -> None:
    """A CRLF file patched by an LF diff, an LF file by a CRLF diff, and a diff mixing both."""
    crlf = HELLO.replace(b"\n", b"\r\n")
    lf_fix = _diff(tmp_path, {"greeter/hello.py": HELLO}, {"greeter/hello.py": HELLO.replace(b"world", b"team")})
    patches = {
        "1-lf-on-crlf.patch": lf_fix,
        "2-crlf-on-lf.patch": lf_fix.replace(b"\n", b"\r\n").replace(b"hello.py", b"__init__.py"),
        "3-mixed.patch": b"".join(line + (b"\r\n" if i % 2 else b"\n")
                                  for i, line in enumerate(lf_fix.split(b"\n")[:-1])),
    }
    request = _setup(tmp_path, patches)
    (request.target / "greeter" / "hello.py").write_bytes(crlf)
    report = _run_both(replace(request, on_conflict="skip"), tmp_path)
    assert report.patches[0].status == "applied"
    assert (request.target / "greeter" / "hello.py").read_bytes() == crlf.replace(b"world", b"team")


def test_hostile_patches_exit_1_through_the_cli(tmp_path: Path) -> None:
    """The real command: one clean line per failure, exit 1, no traceback, JSON report on stdout."""
    request = _setup(tmp_path, {
        "1-nul.patch": b"--- a/greeter/ev\0il.py\n+++ b/greeter/ev\0il.py\n@@ -0,0 +1 @@\n+x = 1\n",
        "2-bytes.patch": bytes(range(256)) * 4,
        "3-name.patch": b"--- /dev/null\n+++ b/greeter/\xff.py\n@@ -0,0 +1 @@\n+x = 1\n",
    })
    before = read_tree(request.target)
    done = subprocess.run(
        [sys.executable, "-m", "kolla_entry", "apply-patches", "--target", str(request.target),
         "--patches", request.patterns[0], "--state-file", str(tmp_path / "run" / "state.json"), "--json"],
        cwd=ROOT, capture_output=True, check=False)
    assert done.returncode == 1, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr
    statuses = [p["status"] for p in json.loads(done.stdout)["patches"]]
    assert statuses == ["refused", "invalid", "applicable"] or statuses[:2] in (
        ["refused", "invalid"], ["invalid", "invalid"]), statuses
    assert read_tree(request.target) == before


# -- what reports and state may hold -----------------------------------------------------------

def test_reports_state_and_logs_never_hold_file_contents(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A marker in the target file and in the patch lines shows in no report, state or log."""
    marker = "MARKER-7f3a9c-do-not-log"
    secret = HELLO + f"TOKEN = '{marker}'\n".encode()
    applied = _diff(tmp_path, {"greeter/hello.py": secret},
                    {"greeter/hello.py": secret.replace(b"world", f"{marker}-new".encode())})
    conflicting = _diff(tmp_path, {"greeter/hello.py": secret.replace(marker.encode(), b"other")},
                        {"greeter/hello.py": secret.replace(marker.encode(), b"else")})
    request = _setup(tmp_path, {"1-ok.patch": applied, "2-conflict.patch": conflicting})
    (request.target / "greeter" / "hello.py").write_bytes(secret)
    outputs = []
    for on_conflict in ("fail", "skip"):
        report = apply_patches(replace(request, on_conflict=on_conflict))
        outputs += [json.dumps(report.to_dict()), "\n".join(report.failure_lines())]
    assert _status(report) == ["applied", "conflict"]
    outputs.append((tmp_path / "run" / "state.json").read_text())
    captured = capfd.readouterr()
    outputs += [captured.out, captured.err]
    for text in outputs:
        assert marker not in text


# -- a hostile disk: every operation of a five-file series fails once, through the CLI -----------

def _five_file_series(tmp_path: Path) -> tuple[Dict[str, bytes], bytes]:
    """A tree and one patch with an edit, a new file, a deletion, a rename and a mode change."""
    before = {"greeter/hello.py": HELLO, "greeter/gone.py": b"GONE = 1\n",
              "greeter/old_name.py": b"NAME = 'moved'\nVALUE = 1\nOTHER = 2\n", "greeter/tool.py": b"print(1)\n"}
    after = {"greeter/hello.py": HELLO.replace(b"world", b"team"), "greeter/gone.py": None,
             "greeter/old_name.py": None, "greeter/new_name.py": before["greeter/old_name.py"],
             "greeter/sub/fresh.py": b"FRESH = 1\n"}
    patch = git_diff(tmp_path / "git", before, after, args=("-M",))  # type: ignore[arg-type]
    patch += (b"diff --git a/greeter/tool.py b/greeter/tool.py\nold mode 100644\nnew mode 100755\n")
    return before, patch


@pytest.fixture
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``cli.main`` in-process configures logging to pytest's captured stream: put it back after."""
    import structlog

    from kolla_entry import log
    monkeypatch.setattr(log, "_format", log._format)
    monkeypatch.setattr(log, "_stream", log._stream)
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.slow
@pytest.mark.usefixtures("_restore_logging")
def test_a_failing_operation_anywhere_exits_1_naming_it_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """
    Engine level of tests/patching/test_transaction.py's TestRollback: EIO, ENOSPC and EACCES at every seam
    operation of apply-patches (journal included) give exit 1, a line naming the operation, the
    old tree byte for byte, no temp file and no journal; without a fault the new tree is written.
    """
    import errno
    import os

    from kolla_entry.cli import main
    from kolla_entry.fs.seam import FileSystem
    from kolla_entry.patching import transaction

    before, patch = _five_file_series(tmp_path)
    request = _setup(tmp_path, {"five.patch": patch})
    make_tree(request.target, before)
    pristine = read_tree(request.target)
    real_commit = transaction.commit
    calls: List[str] = []

    class Fault(FileSystem):
        def __init__(self, fail_at: int, code: int) -> None:
            self.fail_at, self.code, self.n = fail_at, code, 0

        def _count(self, operation: str, path: str) -> None:
            self.n += 1
            calls.append(operation)
            if self.n == self.fail_at:
                raise OSError(self.code, os.strerror(self.code), path)

    def run(fs: FileSystem) -> tuple[int, str]:
        monkeypatch.setattr(transaction, "commit", lambda *a, **k: real_commit(*a, **{**k, "fs": fs}))
        with pytest.raises(SystemExit) as done:
            main(["apply-patches", "--target", str(request.target), "--patches", request.patterns[0],
                  "--state-file", str(tmp_path / "run" / "state.json")])
        return int(done.value.code or 0), capsys.readouterr().err

    (tmp_path / "run").mkdir()  # the state folder exists from the first start on
    run(Fault(0, 0))
    total, new_tree = len(calls), read_tree(request.target)
    assert total >= 20 and new_tree != pristine
    assert new_tree["greeter/tool.py"] == (b"print(1)\n", 0o755)
    refused_at: set = set()
    for code in (errno.EIO, errno.ENOSPC, errno.EACCES):
        for n in range(1, total + 1):
            shutil.rmtree(request.target)
            make_tree(request.target, {k: v[0] for k, v in pristine.items()})  # type: ignore[index]
            for rel, (_, mode) in pristine.items():  # type: ignore[misc]
                (request.target / rel).chmod(mode)
            calls.clear()
            status, err = run(Fault(n, code))
            operation = calls[n - 1]
            if status == 0:
                # Past the point of no return (removing backups, journal): the new tree is whole;
                # the next start removes the leftovers and reports the patch already applied.
                # A timestamp pyc differs per run: it must be there and valid for the new source.
                files = {k: v for k, v in read_tree(request.target).items() if ".kolla-entry" not in k}
                assert without_bytecode(files) == without_bytecode(new_tree), f"op #{n} {operation}"
                assert set(files) == set(new_tree), f"op #{n} {operation}: bytecode missing or extra"
                changed = ("greeter/hello.py", "greeter/new_name.py", "greeter/sub/fresh.py", "greeter/tool.py")
                assert all(bytecode_mode(request.target, rel) == "timestamp" for rel in changed), n
                assert run(FileSystem())[0] == 0 and set(read_tree(request.target)) == set(new_tree)
                assert not (request.target / ".kolla-entry.journal").exists()
                continue
            assert status == 1, (n, operation, err)
            refused_at.add(operation)
            assert f"write failed ({operation})" in err and os.strerror(code) in err, err
            assert read_tree(request.target) == pristine, f"op #{n} {operation}: the tree changed"
            assert not (request.target / ".kolla-entry.journal").exists()
    assert refused_at >= {"mkdir", "open", "write", "fsync", "chmod", "link", "rename", "replace"}, refused_at


def test_a_state_file_that_cannot_be_recorded_does_not_stop_a_start(tmp_path: Path) -> None:
    """The state file is for operators: when it cannot be written, the patches still apply."""
    fix = _diff(tmp_path, {"greeter/hello.py": HELLO}, {"greeter/hello.py": HELLO.replace(b"world", b"team")})
    request = _setup(tmp_path, {"fix.patch": fix})
    (tmp_path / "run" / "state.json").mkdir(parents=True)  # a folder where the file should be
    report = apply_patches(request)
    assert _status(report) == ["applied"] and report.written and not report.failed


def test_a_state_folder_that_cannot_be_made_does_not_stop_a_start(tmp_path: Path) -> None:
    """The crash journal lives in the target, so an unusable state folder costs only the state file."""
    fix = _diff(tmp_path, {"greeter/hello.py": HELLO}, {"greeter/hello.py": HELLO.replace(b"world", b"team")})
    request = _setup(tmp_path, {"fix.patch": fix})
    (tmp_path / "not-a-folder").write_bytes(b"")
    report = apply_patches(replace(request, state_file=tmp_path / "not-a-folder" / "state.json"))
    assert _status(report) == ["applied"] and report.written and not report.failed
    assert not (request.target / ".kolla-entry.journal").exists()


@pytest.mark.parametrize("kind", ["dangling-symlink", "device"])
def test_a_patch_entry_that_cannot_be_read_is_never_silently_ignored(tmp_path: Path, kind: str) -> None:
    """A patch that is there but unreadable is an error or an `invalid` patch, never nothing."""
    from kolla_entry.errors import EnvironmentProblem

    request = _setup(tmp_path, {})
    link = tmp_path / "evil-patches" / "0001-fix.patch"
    link.symlink_to(tmp_path / "missing.patch" if kind == "dangling-symlink" else Path("/dev/zero"))
    try:
        report = check_patches(request)
    except EnvironmentProblem:
        return
    assert [p.status for p in report.patches] == ["invalid"]
