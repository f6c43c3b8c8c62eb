"""
Fuzzing the whole engine (issue #8): mutated real patches and random bytes, with hypothesis,
and a coverage-guided atheris run (``tests/patching/fuzz_atheris_engine.py``) when atheris is installed.

Every example goes through :func:`check_patches` then :func:`apply_patches` on a real tree and must
end as a clean status (no exception at all escapes), write nothing outside the target, leave no
temp file, and write nothing unless the report says it did. ``KOLLA_ENTRY_STRESS=1`` (``make
stress``) runs many more examples and a longer atheris run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kolla_entry.patching.engine import PatchRequest, apply_patches, check_patches
from kolla_entry.patching.report import PATCH_STATUSES, SeriesReport
from tests.helpers import make_tree, read_tree

STRESS = bool(os.environ.get("KOLLA_ENTRY_STRESS"))
EXAMPLES = 3000 if STRESS else 150
ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted((ROOT / "examples" / "small" / "patches").glob("*.patch")) + sorted(
    (ROOT / "tests" / "patching" / "data" / "parse").glob("*.patch"))
SEED_BYTES = [path.read_bytes() for path in SEEDS]


def fuzz_target_tree() -> Dict[str, bytes]:
    """A target most seed patches are relevant to (shared with the atheris harness)."""
    tree = {f"greeter/{p.name}": p.read_bytes()
            for p in (ROOT / "examples" / "small" / "site-packages" / "greeter").iterdir() if p.is_file()}
    claims = "".join(f"def claim_{i}(x):\n    return x + {i}\n\n" for i in range(40)).encode()
    tree.update({"nova/__init__.py": b"", "nova/compute/claims.py": claims, "nova/mv.py": b"X = 1\n",
                 "pkg/__init__.py": b"", "pkg/a.py": b"a = 1\nb = 2\nc = 3\n", "pkg/gone.py": b"GONE = 1\n",
                 "pkg/w.txt": b"one\ntwo\n"})
    return tree


# -- mutations --------------------------------------------------------------------------------

@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEED_BYTES)))
    for _ in range(draw(st.integers(1, 4))):
        lines = bytes(data).split(b"\n")
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["flip", "drop", "dup", "insert", "number", "prefix", "crlf",
                                     "truncate", "nul", "latin1"]))
        if kind == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
            continue
        if kind == "drop":
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[i])
        elif kind == "insert":
            lines.insert(i, draw(st.binary(max_size=40)))
        elif kind == "number":
            lines[i] = lines[i].replace(b"1", str(draw(st.integers(0, 10**6))).encode(), 1)
        elif kind == "prefix" and lines[i]:
            lines[i] = draw(st.sampled_from([b"+", b"-", b" ", b"\\", b"@"])) + lines[i][1:]
        elif kind == "crlf":
            lines[i] += b"\r"
        elif kind == "truncate":
            lines = lines[:i]
        elif kind == "nul":
            lines[i] += b"\0"
        elif kind == "latin1":
            lines[i] += "é".encode("latin-1")
        data = bytearray(b"\n".join(lines))
    return bytes(data)


_inputs = st.one_of(_mutated(), st.binary(max_size=2000),
                    st.lists(st.sampled_from([*SEED_BYTES, b"\n", b"@@ -1 +1 @@\n", b"--- a\n+++ b\n"]),
                             max_size=6).map(b"".join))


# -- the engine on a fixed tree ------------------------------------------------------------------

class Bench:
    """A scratch folder with a pristine target, a copy under test and an ``outside`` folder."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.pristine = make_tree(base / "pristine", fuzz_target_tree())
        self.target = base / "site-packages"
        shutil.copytree(self.pristine, self.target)
        make_tree(base / "outside", {"victim.py": b"SAFE = True\n", "greeter/hello.py": b"x = 1\n"})
        self.outside = read_tree(base / "outside")
        self.before = read_tree(self.target)

    def run(self, patches: List[bytes]) -> Tuple[SeriesReport, SeriesReport]:
        folder = self.base / "fuzz-patches"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        make_tree(folder, {f"{i:04d}.patch": data for i, data in enumerate(patches)})
        request = PatchRequest(target=self.target, patterns=(f"{folder}/*.patch",), on_conflict="skip")
        checked = check_patches(request)
        assert read_tree(self.target) == self.before, "check_patches wrote into the target"
        applied = apply_patches(request)
        return checked, applied

    def verify(self, checked: SeriesReport, applied: SeriesReport) -> None:
        for report in (checked, applied):
            assert all(p.status in PATCH_STATUSES for p in report.patches)
            assert all(p.reason for p in report.patches if p.failed), "a failure without a reason"
        assert read_tree(self.base / "outside") == self.outside, "written outside the target"
        after = read_tree(self.target)
        assert not any(".kolla-entry-" in rel for rel in after), "temp file left in the target"
        if not applied.written:
            assert after == self.before, "the tree changed although nothing was written"
        else:
            shutil.rmtree(self.target)
            shutil.copytree(self.pristine, self.target)


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    with tempfile.TemporaryDirectory(prefix="kolla-fuzz-") as scratch:
        yield Bench(Path(scratch))


def _same_statuses(checked: SeriesReport, applied: SeriesReport) -> None:
    """check-patches predicts apply-patches: applicable becomes applied, the rest is the same."""
    expected = ["applied" if p.status == "applicable" else p.status for p in checked.patches]
    assert [p.status for p in applied.patches] == expected


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(_inputs, min_size=1, max_size=3))
def test_fuzzed_patches_end_as_clean_statuses(bench: Bench, patches: List[bytes]) -> None:
    """Mutated real patches, random bytes and spliced patches: a clean status each, nothing stray."""
    checked, applied = bench.run(patches)
    _same_statuses(checked, applied)
    bench.verify(checked, applied)


def test_seed_patches_are_relevant_to_the_fuzz_tree(bench: Bench) -> None:
    """The fuzzer starts from patches that do apply or fail for real, not from skipped ones."""
    checked, applied = bench.run(SEED_BYTES)
    statuses = [p.status for p in applied.patches]
    assert statuses.count("skipped") < len(statuses) // 2, statuses
    bench.verify(checked, applied)


# -- atheris ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_atheris_finds_no_uncaught_exception(tmp_path: Path) -> None:
    """Coverage-guided fuzzing of parse + plan, bounded in runs and seconds."""
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in SEEDS:
        shutil.copy(path, corpus / path.name)
    runs, seconds = (500_000, 300) if STRESS else (20_000, 15)
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "patching" / "fuzz_atheris_engine.py"), f"-runs={runs}",
         f"-max_total_time={seconds}", "-max_len=4096", "-rss_limit_mb=1024", str(corpus)],
        cwd=tmp_path, capture_output=True, text=True, timeout=seconds + 120, check=False)
    output = done.stdout + done.stderr
    crash = output.find("Uncaught Python exception")
    assert done.returncode == 0, output[crash:crash + 4000] if crash >= 0 else output[-4000:]
    assert re.search(r"^Done \d+ runs", output, re.MULTILINE), output[-4000:]
