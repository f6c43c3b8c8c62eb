"""The overlay options and the hook installer through the real ``kolla-entry`` command (issue #16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

from tests.helpers import git_diff, make_tree

IMAGE = {"pkg/__init__.py": b"", "pkg/mod.py": b"b = 2\n"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOLLA_")}
    return subprocess.run([sys.executable, "-m", "kolla_entry", "--log-format", "json", *args],
                          capture_output=True, text=True, timeout=60, check=False, env=env)


def _layout(tmp_path: Path) -> List[str]:
    site = make_tree(tmp_path / "site", dict(IMAGE))
    (tmp_path / "patches").mkdir()
    (tmp_path / "patches" / "0001.patch").write_bytes(git_diff(tmp_path, IMAGE, {"pkg/mod.py": b"b = 3\n"}))
    (tmp_path / "overlay").mkdir()
    return ["--target", str(site), "--patches", f"{tmp_path}/patches/*.patch", "--overlay", str(tmp_path / "overlay")]


def test_install_then_apply_into_an_overlay(tmp_path: Path) -> None:
    options = _layout(tmp_path)
    refused = _cli("apply-patches", *options)
    assert refused.returncode == 2 and "install-overlay-hook" in refused.stderr.splitlines()[-1]
    installed = _cli("install-overlay-hook", "--target", str(tmp_path / "site"))
    assert installed.returncode == 0, installed.stderr
    assert sorted(os.listdir(tmp_path / "site")) == ["kolla-entry-overlay.pth", "kolla_entry_overlay.py", "pkg"]
    checked = _cli("check-patches", *options, "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["summary"] == {"applicable": 1}
    assert os.listdir(tmp_path / "overlay") == []
    applied = _cli("apply-patches", *options, "--json", "--state-file", str(tmp_path / "state.json"))
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["written"] is True
    assert (tmp_path / "site" / "pkg" / "mod.py").read_bytes() == b"b = 2\n"
    assert (tmp_path / "overlay" / "current" / "site-packages" / "pkg" / "mod.py").read_bytes() == b"b = 3\n"


def test_the_environment_selects_the_overlay(tmp_path: Path) -> None:
    options = _layout(tmp_path)[:-2]
    _cli("install-overlay-hook", "--target", str(tmp_path / "site"))
    env = {**os.environ, "KOLLA_ENTRY_OVERLAY": str(tmp_path / "overlay")}
    done = subprocess.run([sys.executable, "-m", "kolla_entry", "apply-patches", *options, "--state-file",
                           str(tmp_path / "state.json")], capture_output=True, text=True, timeout=60, check=False,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "pkg" / "mod.py").read_bytes() == b"b = 2\n"
    assert (tmp_path / "overlay" / "current").is_symlink()
