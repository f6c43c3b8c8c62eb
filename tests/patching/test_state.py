"""The state file: sections merged atomically, unreadable files reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from kolla_entry.errors import EnvironmentProblem
from kolla_entry.patching import state


def test_absent_state_is_empty(tmp_path: Path) -> None:
    assert state.load(tmp_path / "none.json") == {}


def test_sections_are_merged_and_folder_created(tmp_path: Path) -> None:
    path = tmp_path / "run" / "kolla-entry" / "state.json"
    state.record(path, "patches", {"written": True})
    state.record(path, "command", ["keystone", "--x"])
    data = state.load(path)
    assert data["patches"] == {"written": True}
    assert data["command"] == ["keystone", "--x"]
    assert data["version"] == state.STATE_VERSION
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_corrupt_state_is_reported_and_then_replaced(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(EnvironmentProblem, match="not valid JSON"):
        state.load(path)
    state.record(path, "patches", {})
    assert state.load(path)["patches"] == {}
