"""
Why the engine does not use patch-ng: its behaviour on concrete cases, next to kolla-entry's and GNU patch's.

The original design listed patch-ng (a pure-Python patch library) among kolla-entry's packages; the
engine is our own instead (README, "Where kolla-entry differs from GNU patch"). These tests pin what
patch-ng does today, so the choice is checked again when patch-ng changes: when one of them fails,
patch-ng changed and the README's measurements need a new look. patch-ng runs in a subprocess: it
changes the working directory and writes in place, and one case limits the file size it may write.
patch-ng is a test dependency (pyproject's test extras): without it these tests fail, they do not skip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest

from kolla_entry.patching.engine import PatchRequest, apply_patches
from tests.helpers import make_tree, read_tree

pytestmark = pytest.mark.skipif(shutil.which("patch") is None, reason="GNU patch is the reference")

# Run patch-ng on a tree: argv root, strip, file size limit (0: none); the patch on stdin.
_RUN_PATCH_NG = """
import logging, resource, signal, sys
import patch_ng
logging.disable(logging.CRITICAL)
root, strip, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
patch = patch_ng.fromstring(sys.stdin.buffer.read())
print("applied" if patch and patch.apply(strip=strip, root=root) else "failed")
"""

LINES = b"".join(b"line_%d = %d\n" % (i, i) for i in range(10))
FIX = (b"--- a/pkg/m.py\n+++ b/pkg/m.py\n@@ -4,3 +4,3 @@\n line_3 = 3\n-line_4 = 4\n+line_4 = 'four'\n"
       b" line_5 = 5\n")
FIXED = LINES.replace(b"line_4 = 4", b"line_4 = 'four'")


def _patch_ng(root: Path, patch: bytes, strip: int = 1, limit: int = 0) -> str:
    done = subprocess.run([sys.executable, "-c", _RUN_PATCH_NG, str(root), str(strip), str(limit)], input=patch,
                          capture_output=True, check=False)
    if done.returncode:
        return "crashed: " + done.stderr.decode(errors="replace").strip().splitlines()[-1]
    return done.stdout.decode().strip()


def _kolla(root: Path, patch: bytes, strip: int = 1) -> str:
    make_tree(root.parent / "fix-patches", {"0001-fix.patch": patch})
    report = apply_patches(PatchRequest(target=root, patterns=(f"{root.parent}/fix-patches/*.patch",), strip=strip))
    return report.patches[0].status


def _gnu(root: Path, patch: bytes) -> bool:
    done = subprocess.run(["patch", "-p1", "--fuzz=0", "--no-backup-if-mismatch", "-s"], input=patch, cwd=root,
                          capture_output=True, check=False)
    return done.returncode == 0


def _three(tmp_path: Path, files: Dict[str, bytes]) -> Tuple[Path, Path, Path]:
    return tuple(make_tree(tmp_path / tool / "site-packages", files)  # type: ignore[return-value]
                 for tool in ("patch-ng", "kolla", "gnu"))


def test_placement_patch_ng_only_looks_at_the_stated_line(tmp_path: Path) -> None:
    """Three lines added above the hunk (the image is a newer release): GNU patch and kolla-entry use the offset."""
    shifted = b"pad = 0\n" * 3 + LINES
    ng, kolla, gnu = _three(tmp_path, {"pkg/m.py": shifted})
    assert _patch_ng(ng, FIX) == "failed"
    assert read_tree(ng)["pkg/m.py"][0] == shifted  # type: ignore[index]
    assert _kolla(kolla, FIX) == "applied" and _gnu(gnu, FIX)
    assert (kolla / "pkg/m.py").read_bytes() == (gnu / "pkg/m.py").read_bytes() == b"pad = 0\n" * 3 + FIXED


def test_a_failing_second_file_leaves_patch_ng_s_first_file_patched(tmp_path: Path) -> None:
    """All or nothing: patch-ng writes file by file, so a conflict in the second file leaves a half-patched tree."""
    patch = FIX + b"--- a/pkg/n.py\n+++ b/pkg/n.py\n@@ -1 +1 @@\n-not there\n+x = 1\n"
    files = {"pkg/m.py": LINES, "pkg/n.py": b"other = 1\n"}
    ng, kolla, _ = _three(tmp_path, files)
    before = read_tree(kolla)
    assert _patch_ng(ng, patch) == "failed"
    assert (ng / "pkg/m.py").read_bytes() == FIXED, "patch-ng no longer half-patches: update the README"
    assert _kolla(kolla, patch) == "conflict"
    assert read_tree(kolla) == before


def test_backup_files_a_stray_orig_blocks_patch_ng(tmp_path: Path) -> None:
    """A ``m.py.orig`` left by an earlier GNU patch run: patch-ng gives up, kolla-entry does not use the name."""
    files = {"pkg/m.py": LINES, "pkg/m.py.orig": b"left over\n"}
    ng, kolla, _ = _three(tmp_path, files)
    assert _patch_ng(ng, FIX) == "failed"
    assert (ng / "pkg/m.py").read_bytes() == LINES
    assert _kolla(kolla, FIX) == "applied"
    # Besides the module's bytecode (issue #13: written with it), the tree is the fix and the untouched .orig.
    tree = {k: v[0] for k, v in read_tree(kolla).items()}  # type: ignore[index]
    assert tree.pop(f"pkg/__pycache__/m.{sys.implementation.cache_tag}.pyc")
    assert tree == {"pkg/m.py": FIXED, "pkg/m.py.orig": b"left over\n"}


def test_backup_files_a_failed_write_leaves_patch_ng_s_backup_and_a_cut_module(tmp_path: Path) -> None:
    """
    A write that fails half way (here: a file size limit; on a node: a full disk). patch-ng moved the module
    to ``m.py.orig`` first, so what is left is the backup and a truncated ``m.py``; kolla-entry's commit
    rolls back (tests/patching/test_transaction.py) and the tree is the old one.
    """
    big = LINES + b"# padding\n" * 2000
    ng, kolla, _ = _three(tmp_path, {"pkg/m.py": big})
    limit = len(big) - 100
    outcome = _patch_ng(ng, FIX, limit=limit)
    assert outcome == "crashed: OSError: [Errno 27] File too large", outcome
    left = read_tree(ng)
    assert left["pkg/m.py.orig"][0] == big  # type: ignore[index]
    assert len(left["pkg/m.py"][0]) <= limit  # type: ignore[index,arg-type]
    before = read_tree(kolla)
    make_tree(tmp_path / "fix-patches", {"0001-fix.patch": FIX})
    command = [sys.executable, "-m", "kolla_entry", "apply-patches", "--target", str(kolla), "--patches",
               f"{tmp_path}/fix-patches/*.patch", "--state-file", str(tmp_path / "state.json")]
    done = subprocess.run(command, preexec_fn=lambda: _limit_file_size(limit), capture_output=True, text=True,
                          check=False)
    assert done.returncode == 1 and "write failed" in done.stderr, done.stderr
    assert read_tree(kolla) == before


def _limit_file_size(limit: int) -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("case", ["dotdot", "absolute"])
def test_unsafe_paths_patch_ng_rewrites_them_and_reports_success(tmp_path: Path, case: str) -> None:
    """patch-ng keeps inside the root by silently renaming: success, and a file the patch never named."""
    ng, kolla, _ = _three(tmp_path, {"pkg/m.py": LINES})
    outside = tmp_path / "patch-ng" / "outside.py"  # where the patch points, beside the root
    name, strip = (b"b/pkg/../../outside.py", 1) if case == "dotdot" else (bytes(outside), 0)
    patch = b"--- /dev/null\n+++ " + name + b"\n@@ -0,0 +1 @@\n+x = 1\n"
    written = "outside.py" if case == "dotdot" else str(outside).lstrip("/")
    assert _patch_ng(ng, patch, strip) == "applied"
    assert not outside.exists()
    assert (ng / written).read_bytes() == b"x = 1\n"
    before = read_tree(kolla)
    assert _kolla(kolla, patch, strip) == "refused"
    assert read_tree(kolla) == before
