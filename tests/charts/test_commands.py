"""
The service commands the charts put in each config.json name programs the images provide: the keystone chart
runs gunicorn on an argv-clearing shim it ships itself, and every other command starts with a console script
of its service's PyPI package (or is listed below as a known gap).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import pytest

from kolla_entry.execute import split_command
from tests.charts.conftest import REPO, SERVICES

pytestmark = pytest.mark.charts

CONFIG_DIR = "/var/lib/kolla/config_files"
KEYSTONE_IMAGE = REPO / "images" / "keystone"
KEYSTONE_CONSTRAINTS = REPO / "examples" / "keystone" / "constraints.txt"

# console_scripts of each service's wheel (entry_points.txt of the versions pip resolved on 2026-11-25:
# barbican 23.0.0, cinder 29.0.0, designate 23.0.0, glance 33.0.0, horizon 27.0.0, ironic 39.0.0,
# keystone 30.0.0, manila 23.0.1, neutron 29.0.0, nova 34.0.0), limited to the ones a chart could start.
CONSOLE_SCRIPTS: Dict[str, Set[str]] = {
    "barbican": {"barbican-manage", "barbican-db-manage", "barbican-keystone-listener", "barbican-worker"},
    "cinder": {"cinder-api", "cinder-backup", "cinder-manage", "cinder-scheduler", "cinder-volume"},
    "designate": {"designate-api", "designate-central", "designate-manage", "designate-mdns",
                  "designate-producer", "designate-sink", "designate-worker"},
    "glance": {"glance-api", "glance-manage"},
    "horizon": set(),
    "ironic": {"ironic", "ironic-api", "ironic-conductor", "ironic-dbsync", "ironic-novncproxy"},
    "keystone": {"keystone-manage", "keystone-status"},
    "manila": {"manila-api", "manila-data", "manila-manage", "manila-scheduler", "manila-share"},
    "neutron": {"neutron-db-manage", "neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent",
                "neutron-openvswitch-agent", "neutron-periodic-workers", "neutron-rpc-server"},
    "nova": {"nova-compute", "nova-conductor", "nova-manage", "nova-novncproxy", "nova-scheduler"},
}
# Programs an image adds on top of its service package, by service (images/<service>/requirements.txt).
IMAGE_EXTRAS: Dict[str, Set[str]] = {"keystone": {"gunicorn"}}
# Commands that name a program their service package does not ship any more (API servers became WSGI
# modules: nova.wsgi.osapi_compute, neutron.wsgi.api, barbican.wsgi.api; horizon ships no server at all).
# They need a WSGI server in their image and a shim like keystone's; no such image is built here yet.
KNOWN_GAPS: Set[Tuple[str, str, str]] = {
    ("barbican", "api", "barbican-api"),
    ("horizon", "dashboard", "gunicorn"),
    ("neutron", "server", "neutron-server"),
    ("nova", "api", "nova-api"),
}


def _config_configmap(region: List[Dict[str, Any]], service: str) -> Dict[str, str]:
    matches = [o for o in region if o["kind"] == "ConfigMap" and o["metadata"]["name"] == f"{service}-config"]
    assert len(matches) == 1, f"ConfigMap/{service}-config: {len(matches)} found"
    return dict(matches[0]["data"])


def _commands(region: List[Dict[str, Any]]) -> Dict[Tuple[str, str], Tuple[str, ...]]:
    """(service, component) -> argv of each config.json in the config ConfigMaps, split as kolla-entry splits it."""
    commands = {}
    for service in SERVICES:
        for key, text in _config_configmap(region, service).items():
            if key.endswith(".json"):
                commands[(service, key[: -len(".json")])] = split_command(json.loads(text)["command"])
    return commands


def _keystone_api(region: List[Dict[str, Any]]) -> Tuple[Dict[str, str], Dict[str, Any], Tuple[str, ...]]:
    data = _config_configmap(region, "keystone")
    config = json.loads(data["api.json"])
    return data, config, split_command(config["command"])


def _option(argv: Tuple[str, ...], name: str) -> str:
    assert argv.count(name) == 1, f"{name} given {argv.count(name)} times in {argv}"
    return argv[argv.index(name) + 1]


def test_keystone_api_runs_gunicorn_on_the_shim_its_configmap_ships(region: List[Dict[str, Any]]) -> None:
    """gunicorn loads <module>:application from --chdir, where config.json puts <module>.py from the ConfigMap."""
    data, config, argv = _keystone_api(region)
    assert argv[0] == "gunicorn"
    # gunicorn 27 opens a control socket under $HOME by default; the keystone user's home is not for that.
    assert "--no-control-socket" in argv
    assert _option(argv, "--bind").endswith(":5000")
    assert int(_option(argv, "--workers")) >= 1
    chdir = _option(argv, "--chdir")
    module, _, attribute = argv[-1].partition(":")
    assert attribute == "application"
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", module), f"{module!r} is not a top-level module name"
    assert f"{module}.py" in data
    entries = [e for e in config["config_files"] if e["source"] == f"{CONFIG_DIR}/{module}.py"]
    assert [e["dest"] for e in entries] == [f"{chdir}/{module}.py"]
    # The service user must be able to read it (kolla-entry drops to config["user"] before exec).
    assert entries[0]["owner"].split(":")[0] == config["user"]


def test_keystone_shim_hides_gunicorns_arguments_before_keystone_loads(
    region: List[Dict[str, Any]], tmp_path: Path
) -> None:
    """
    Import the shim as a gunicorn worker would (gunicorn's argv, --chdir on sys.path) with a stand-in
    keystone.wsgi.api that records sys.argv when it loads: oslo.config must see no gunicorn option.
    """
    data, _, argv = _keystone_api(region)
    module = argv[-1].partition(":")[0]
    chdir = tmp_path / "chdir"
    chdir.mkdir()
    (chdir / f"{module}.py").write_text(data[f"{module}.py"])
    stand_in = tmp_path / "stand-in" / "keystone" / "wsgi"
    stand_in.mkdir(parents=True)
    (stand_in.parent / "__init__.py").write_text("")
    (stand_in / "__init__.py").write_text("")
    (stand_in / "api.py").write_text("import sys\n\napplication = list(sys.argv)\n")
    probe = (
        "import json, sys\n"
        f"sys.argv = {list(argv)!r}\n"
        f"sys.path[:0] = [{str(chdir)!r}, {str(tmp_path / 'stand-in')!r}]\n"
        f"import {module}\n"
        f"print(json.dumps({module}.application))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == ["gunicorn"]


def test_keystone_image_installs_what_the_chart_runs(region: List[Dict[str, Any]]) -> None:
    """Every keystone command starts with a program the keystone image installs, pinned by the constraints."""
    requirements = {
        re.split(r"[=<>!~ ;\[]", line.strip(), maxsplit=1)[0].lower()
        for line in (KEYSTONE_IMAGE / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert {"keystone", "gunicorn"} <= requirements
    assert re.search(r"^gunicorn==\S+$", KEYSTONE_CONSTRAINTS.read_text(), re.MULTILINE), "gunicorn is not pinned"
    programs = CONSOLE_SCRIPTS["keystone"] | IMAGE_EXTRAS["keystone"]
    keystone = {component: argv for (service, component), argv in _commands(region).items() if service == "keystone"}
    assert set(keystone) == {"api", "db-sync"}
    assert {component: argv[0] in programs for component, argv in keystone.items()} == {"api": True, "db-sync": True}


def test_every_command_names_a_console_script_of_its_service(region: List[Dict[str, Any]]) -> None:
    """
    A command whose program the service package does not ship crash-loops its pod. The mismatches are
    exactly the known gaps, so fixing one (or adding one) shows up here.
    """
    gaps = {
        (service, component, argv[0])
        for (service, component), argv in _commands(region).items()
        if argv[0] not in CONSOLE_SCRIPTS[service] | IMAGE_EXTRAS.get(service, set())
    }
    assert gaps == KNOWN_GAPS
