"""Guard rails for every test (STYLE.md 10)."""

from __future__ import annotations

import os
from typing import Iterator

import pytest
from hypothesis import settings

# `make test` (and CI) must be repeatable: property tests run a fixed set of examples. `make stress`
# (KOLLA_ENTRY_STRESS=1) explores new ones on every run.
settings.register_profile("repeatable", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", derandomize=False, deadline=None, print_blob=True)
settings.load_profile("explore" if os.environ.get("KOLLA_ENTRY_STRESS") else "repeatable")


@pytest.fixture(autouse=True)
def _clean_kolla_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No KOLLA_* or DEBUG_CONTAINER variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("KOLLA_") or name in {"DEBUG_CONTAINER", "SUDO_UID"}:
            monkeypatch.delenv(name, raising=False)
    yield
