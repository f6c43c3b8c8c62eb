"""
atheris harness for the patch engine's pure part (parse + plan), run by tests/patching/test_fuzz_engine.py.

Usage: ``python tests/patching/fuzz_atheris_engine.py -runs=N -max_total_time=S CORPUS_DIR``. Any exception
escaping :func:`kolla_entry.patching.plan.plan_series` is a crash (it must turn every failure into a
status); libFuzzer then prints the input and exits non-zero.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from kolla_entry.patching import parse, plan
    from kolla_entry.patching.report import PATCH_STATUSES

from tests.helpers import make_tree
from tests.patching.test_fuzz_engine import fuzz_target_tree

ROOT = make_tree(Path(tempfile.mkdtemp(prefix="kolla-atheris-")), fuzz_target_tree())


def one_input(data: bytes) -> None:
    """Plan one patch against the fixed tree; every outcome must be a known status."""
    fuzz = 2 if data[:1] == b"F" else 0  # some inputs also exercise the fuzz levels
    result = plan.plan_series([plan.PatchInput("fuzz.patch", "", data)], ROOT, strip=1, fuzz=fuzz,
                              on_conflict="skip", dry_run=True)
    assert all(report.status in PATCH_STATUSES for report in result.reports)
    with contextlib.suppress(parse.PatchInvalid):
        parse.parse_patch(data, name="fuzz.patch")


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
