"""
nova's cell setup and schema check as the nova chart renders them (issue #15), run with a real nova 34 on
SQLite: the db-sync Job's script converges on a fresh install and when run again with a changed transport URL
(a rotated password), and the schema check kolla-entry runs before nova's database users fails before and
passes after. The nova venv is built once into work/venvs/nova from tests/e2e/data/nova-constraints.txt
(about 2 minutes cold); nova-manage finds nova.conf in $HOME, as in an image it finds /etc/nova/nova.conf.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest

from tests.charts.conftest import build_charts, render

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / "work" / "venvs" / "nova"
CONSTRAINTS = Path(__file__).parent / "data" / "nova-constraints.txt"


def _ensure_venv() -> Path:
    stamp = VENV / ".complete"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / ".nova.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == CONSTRAINTS.read_text():
            return VENV
        shutil.rmtree(VENV, ignore_errors=True)
        python = str(VENV / "bin/python")
        for argv in ([sys.executable, "-m", "venv", str(VENV)],
                     [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c",
                      str(CONSTRAINTS), "nova"]):
            subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        stamp.write_text(CONSTRAINTS.read_text())
    return VENV


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """db-setup.sh and schema-check.py from the nova chart's config ConfigMap, rendered by Helm."""
    charts = build_charts(tmp_path_factory.mktemp("charts") / "charts")
    config = next(o for o in render(charts / "nova") if o["kind"] == "ConfigMap" and o["metadata"]["name"] ==
                  "nova-config")
    return {name: config["data"][name] for name in ("db-setup.sh", "schema-check.py")}


class Cell:
    """A nova "pod": nova.conf with SQLite databases, the rendered scripts, nova's venv first on PATH."""

    def __init__(self, home: Path, scripts: Dict[str, str]) -> None:
        self.home = home
        (home / "db-setup.sh").write_text(scripts["db-setup.sh"])
        (home / "schema-check.py").write_text(scripts["schema-check.py"].replace("/etc/nova/nova.conf",
                                                                                 str(home / "nova.conf")))
        self.write_conf("rabbit://openstack:first@127.0.0.1:5672/")

    def write_conf(self, transport_url: str) -> None:
        (self.home / "nova.conf").write_text(
            f"[DEFAULT]\ntransport_url = {transport_url}\n"
            f"[api_database]\nconnection = sqlite:///{self.home}/nova_api.db\n"
            f"[database]\nconnection = sqlite:///{self.home}/nova.db\n")

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{_ensure_venv() / 'bin'}:{os.environ['PATH']}", "HOME": str(self.home),
               "PYTHONWARNINGS": "ignore"}
        return subprocess.run(argv, cwd=self.home, env=env, capture_output=True, text=True, timeout=600,
                              check=False)

    def cells(self) -> Dict[str, str]:
        """name -> transport URL (password masked by nova-manage)."""
        out = self.run("nova-manage", "cell_v2", "list_cells").stdout
        rows = [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines() if line.startswith("| ")]
        return {row[0]: row[2] for row in rows[1:]}


@pytest.fixture(scope="module")
def cell(scripts: Dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cell]:
    yield Cell(tmp_path_factory.mktemp("nova"), scripts)


class TestCellSetup:
    """In order, on one set of databases."""

    def test_the_schema_check_fails_before_the_setup(self, cell: Cell) -> None:
        done = cell.run("python3", "schema-check.py")
        assert done.returncode == 1
        assert done.stderr.strip().splitlines()[-1].startswith("nova schema not ready")

    def test_a_fresh_install_maps_cell0_and_cell1_and_syncs_every_database(self, cell: Cell) -> None:
        done = cell.run("sh", "db-setup.sh")
        assert done.returncode == 0, done.stdout + done.stderr
        cells = cell.cells()
        assert set(cells) == {"cell0", "cell1"} and cells["cell1"].endswith("@127.0.0.1:5672/")
        assert (cell.home / "nova.db_cell0").is_file()
        check = cell.run("python3", "schema-check.py")
        assert check.returncode == 0 and check.stdout.strip() == "nova schema at head", check.stderr

    def test_a_rerun_with_a_new_transport_url_updates_cell1_in_place(self, cell: Cell) -> None:
        """As an upgrade or a rotated messaging password: the same Job again, no second cell1."""
        before = cell.cells()
        cell.write_conf("rabbit://openstack:second@mq.example:5672/")
        done = cell.run("sh", "db-setup.sh")
        assert done.returncode == 0, done.stdout + done.stderr
        after = cell.cells()
        assert set(after) == {"cell0", "cell1"}
        assert after["cell1"] == "rabbit://openstack:****@mq.example:5672/" != before["cell1"]
        assert cell.run("python3", "schema-check.py").returncode == 0
