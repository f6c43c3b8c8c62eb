"""
``kolla-entry run`` in overlay mode (issue #16): the service, exec'd by the real CLI, imports the fix from
the overlay; the image is never written; a restart reuses the overlay; a non-root start writes only the
overlay and the state folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from tests import sysusers
from tests.helpers import read_tree
from tests.overlay.kit import Box, make_box
from tests.start.nonroot import run_as

IMAGE = {"pkg/__init__.py": b"", "pkg/mod.py": b"a = 1\nb = 2\nc = 4\n"}
FIX = {"pkg/mod.py": b"a = 1\nb = 3\nc = 4\n"}
SERVICE = ("import json, os, sys, pkg.mod\n"
           "json.dump({'file': pkg.mod.__file__, 'b': pkg.mod.b, 'uid': os.getuid(),\n"
           "           'overlay': os.environ.get('KOLLA_ENTRY_OVERLAY')}, open(sys.argv[1], 'w'))\n")


@pytest.fixture(scope="module")
def accounts() -> Iterator[sysusers.Accounts]:
    with sysusers.created() as created:
        yield created


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A folder other users can reach (pytest's tmp_path is under a 0700 folder)."""
    root = Path(tempfile.mkdtemp(prefix="kolla-entry-overlay-", dir="/tmp"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root)


def _events(stderr: str) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def _start(box: Box, *options: str) -> subprocess.CompletedProcess[str]:
    config = box.root / "config.json"
    config.write_text("{}")
    argv = [sys.executable, "-m", "kolla_entry", "--log-format", "json", "run", "--config", str(config),
            "--patches", f"{box.patches}/*.patch", "--target", str(box.site),
            "--state-file", str(box.root / "run" / "state.json"), *options,
            "--", str(box.python), "-c", SERVICE, str(box.root / "record.json")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOLLA_", "PYTHON"))}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)


def test_the_service_runs_the_fix_from_the_overlay_and_a_restart_reuses_it(tmp_path: Path) -> None:
    box = make_box(tmp_path, IMAGE)
    box.add_patch(IMAGE, FIX)
    image = read_tree(box.site)
    done = _start(box, "--overlay", str(box.overlay))
    assert done.returncode == 0, done.stderr
    record = json.loads((box.root / "record.json").read_text())
    assert record["b"] == 3 and record["file"].startswith(str(box.overlay / "gen-"))
    assert record["overlay"] == str(box.overlay)
    assert read_tree(box.site) == image
    step = next(e for e in _events(done.stderr) if e.get("step") == "patches")
    assert step["applied"] == 1 and step["overlay"] == str(box.overlay)
    again = _start(box, "--overlay", str(box.overlay))
    assert again.returncode == 0, again.stderr
    events = _events(again.stderr)
    assert any(e["event"] == "overlay_reused" for e in events)
    assert next(e for e in events if e.get("step") == "patches")["already-applied"] == 1
    assert json.loads((box.root / "record.json").read_text())["b"] == 3


def test_removing_the_patch_serves_the_image_again(tmp_path: Path) -> None:
    box = make_box(tmp_path, IMAGE)
    box.add_patch(IMAGE, FIX)
    assert _start(box, "--overlay", str(box.overlay)).returncode == 0
    for patch in box.patches.iterdir():
        patch.unlink()
    done = _start(box, "--overlay", str(box.overlay))
    assert done.returncode == 0, done.stderr
    assert json.loads((box.root / "record.json").read_text())["b"] == 2
    assert os.listdir(box.overlay) == []


def test_what_an_overlay_cannot_serve_refuses_the_start_in_one_line(tmp_path: Path) -> None:
    image = {**IMAGE, "pkg-1.0.dist-info/entry_points.txt": b"[console_scripts]\n"}
    box = make_box(tmp_path, image)
    box.add_patch(image, {**FIX, "pkg-1.0.dist-info/entry_points.txt": b"[console_scripts]\nx = pkg:main\n"})
    done = _start(box, "--overlay", str(box.overlay))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("kolla-entry: refusing to start: conflict:")
    assert "0001.patch: pkg-1.0.dist-info/entry_points.txt" in last and "overlay mode" in last
    assert not (box.root / "record.json").exists()


def test_a_sudo_caller_cannot_choose_the_overlay(tmp_path: Path) -> None:
    box = make_box(tmp_path, IMAGE)
    config = box.root / "config.json"
    config.write_text("{}")
    argv = [sys.executable, "-m", "kolla_entry", "--log-format", "json", "run", "--config", str(config),
            "--patches", f"{box.patches}/*.patch", "--target", str(box.site),
            "--state-file", str(box.root / "state.json"),
            "--", str(box.python), "-c", SERVICE, str(box.root / "record.json")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOLLA_", "PYTHON"))}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          env={**env, "SUDO_UID": "1000", "KOLLA_ENTRY_OVERLAY": str(box.overlay)})
    assert done.returncode == 0, done.stderr
    assert json.loads((box.root / "record.json").read_text())["overlay"] is None


def test_a_non_root_start_writes_only_the_overlay(shared_root: Path, accounts: sysusers.Accounts) -> None:
    """runAsUser: kolla-entry is the service uid throughout; the root-owned image is only read."""
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("needs a python3 any user may run, for the service's venv")
    box = make_box(shared_root, IMAGE, base="/usr/bin/python3")
    box.add_patch(IMAGE, FIX)
    user = accounts.service
    for writable in (box.overlay, box.root / "run"):
        writable.mkdir(exist_ok=True)
        os.chown(writable, user.uid, user.gid)
    os.chmod(box.root / "git", 0o755)
    image = read_tree(box.site)
    config = box.root / "config.json"
    config.write_text("{}")
    args = {"command": [str(box.python), "-c", SERVICE, str(box.root / "run" / "record.json")],
            "config": str(config), "patterns": [f"{box.patches}/*.patch"], "target": str(box.site),
            "state_file": str(box.root / "run" / "state.json"), "overlay": str(box.overlay)}
    done = run_as(user.uid, user.gid, args)
    assert done.get("returncode") == 0, done
    record = json.loads((box.root / "run" / "record.json").read_text())
    assert (record["uid"], record["b"]) == (user.uid, 3)
    assert read_tree(box.site) == image
    owners = {os.lstat(os.path.join(d, n)).st_uid for d, dirs, files in os.walk(box.overlay) for n in dirs + files}
    assert owners == {user.uid}


def test_the_config_can_choose_the_overlay(tmp_path: Path) -> None:
    box = make_box(tmp_path, IMAGE)
    box.add_patch(IMAGE, FIX)
    config = box.root / "config.json"
    argv = [sys.executable, "-m", "kolla_entry", "--log-format", "json", "run", "--config", str(config),
            "--patches", f"{box.patches}/*.patch", "--target", str(box.site),
            "--state-file", str(box.root / "state.json"),
            "--", str(box.python), "-c", SERVICE, str(box.root / "record.json")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOLLA_", "PYTHON"))}
    config.write_text(json.dumps({"overlay": "relative/overlay"}))
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert refused.returncode == 1 and "overlay" in refused.stderr.splitlines()[-1]
    config.write_text(json.dumps({"overlay": str(box.overlay)}))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads((box.root / "record.json").read_text())["b"] == 3
    assert read_tree(box.site)["pkg/mod.py"] == (IMAGE["pkg/mod.py"], 0o644)
