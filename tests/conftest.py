"""Guard rails for every test (STYLE.md 10)."""

from __future__ import annotations

import os
from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def _clean_kolla_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No KOLLA_* or DEBUG_CONTAINER variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("KOLLA_") or name in {"DEBUG_CONTAINER", "SUDO_UID"}:
            monkeypatch.delenv(name, raising=False)
    yield
