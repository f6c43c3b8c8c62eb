"""
The real trap of issue #2: a fresh nova stable fix that a fuzzy reverse check calls "already applied".

nova 31.0.0 -> 31.3.1 changes ``nova/compute/claims.py`` next to a near-identical twin block.
GNU ``patch -R`` with its default fuzz finds the fix "already applied" at offset 26 with fuzz 2;
kolla-entry must apply it, and only then report it already applied. Needs PyPI (two 6 MB wheels,
cached under work/wheels).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kolla_entry.patching.engine import PatchRequest, apply_patches, check_patches
from tests.helpers import configmap_dir, git_diff

pytestmark = pytest.mark.e2e

WHEELS = Path(__file__).parent.parent.parent / "work" / "wheels"
CLAIMS = "nova/compute/claims.py"


def _claims(version: str) -> bytes:
    wheel = WHEELS / f"nova-{version}-py3-none-any.whl"
    if not wheel.exists():
        WHEELS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "-d", str(WHEELS), f"nova=={version}"], check=True)
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(CLAIMS)


@pytest.fixture(scope="module")
def claims() -> tuple[bytes, bytes]:
    return _claims("31.0.0"), _claims("31.3.1")


def test_fuzzy_reverse_check_is_fooled_but_kolla_entry_is_not(tmp_path: Path, claims: tuple[bytes, bytes]) -> None:
    old, new = claims
    patch = git_diff(tmp_path / "scratch", {CLAIMS: old}, {CLAIMS: new})
    target = tmp_path / "site-packages"
    (target / "nova" / "compute").mkdir(parents=True)
    (target / CLAIMS).write_bytes(old)
    gnu = subprocess.run(["patch", "-p1", "-R", "-f", "--dry-run"], input=patch, cwd=target,
                         capture_output=True, check=False)
    assert b"with fuzz 2 (offset 26 lines)" in gnu.stdout, gnu.stdout  # the reference really is fooled

    configmap_dir(tmp_path, "nova-patches", {"0001-claims.patch": patch})
    request = PatchRequest(target=target, patterns=(f"{tmp_path}/nova-patches/*.patch",))
    assert check_patches(request).patches[0].status == "applicable"
    assert apply_patches(request).patches[0].status == "applied"
    assert (target / CLAIMS).read_bytes() == new
    assert check_patches(request).patches[0].status == "already-applied"
    shutil.rmtree(tmp_path / "scratch")
