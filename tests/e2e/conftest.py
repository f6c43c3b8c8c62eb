"""
Fixtures of the end-to-end tests (issue #4).

The pristine Keystone service venv is built once and cached in ``work/venvs/keystone`` (git-ignored;
rebuilt when the constraints or the interpreter change; about 20 s cold). Each pod gets a ``cp -a``
copy of it (about 1.5 s): copies keep the original's shebangs, so every keystone script is started
through the copy's own ``bin/python`` (see podlayout.bootstrap_commands).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest

from tests.e2e.podkit import DATA, VENV_CACHE, Pod, digest_tree, example_patches, podlayout


@pytest.fixture(scope="session")
def venv_cache() -> Path:
    """The pristine Keystone service venv, built on first use and kept in work/venvs/keystone."""
    start = time.monotonic()
    VENV_CACHE.parent.mkdir(parents=True, exist_ok=True)
    if podlayout.ensure_service_venv(VENV_CACHE, sys.executable):
        print(f"built the Keystone service venv in {time.monotonic() - start:.1f} s", file=sys.stderr)
    return VENV_CACHE


@pytest.fixture(scope="module")
def keystone_pod(venv_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """
    A pod after a fresh start: check-patches on the pristine copy (``pod.fresh_check``), the
    bootstrap one-shots (the first one applies the patches), then Keystone running.
    """
    pod = Pod(tmp_path_factory.mktemp("pod") / "root", example_patches())
    pod.pristine = digest_tree(pod.site_packages)
    pod.fresh_check = pod.kolla("check-patches", "--json")
    try:
        pod.bootstrap_results = pod.bootstrap()
        pod.start()
        yield pod
    finally:
        pod.stop()
        # The ~200 MB venv copy goes; the logs stay for a failed run's post-mortem.
        shutil.rmtree(pod.venv, ignore_errors=True)


@pytest.fixture
def conflict_patches() -> Dict[str, bytes]:
    """The example hot-fixes plus a patch written for keystone 29.1.0 that conflicts with 30.0.0."""
    patches = example_patches()
    for path in sorted(DATA.glob("*.patch")):
        patches[path.name] = path.read_bytes()
    return patches


@pytest.fixture
def fresh_pod_factory(venv_cache: Path, tmp_path: Path) -> Iterator[Callable[[Dict[str, bytes]], Pod]]:
    """Make pods on fresh venv copies; stop whatever they started and drop their venvs."""
    pods: List[Pod] = []

    def make(patches: Dict[str, bytes]) -> Pod:
        pod = Pod(tmp_path / f"pod{len(pods)}" / "root", patches)
        pods.append(pod)
        return pod

    yield make
    for pod in pods:
        pod.stop()
        shutil.rmtree(pod.venv, ignore_errors=True)
