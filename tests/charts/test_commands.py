"""
The service commands the charts put in each config.json name programs the images provide: every command
starts with a console script of its service's PyPI package, or is gunicorn serving the service's WSGI module
(through an argv-clearing shim the chart ships, for the oslo services).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import pytest

from kolla_entry.start.execute import split_command
from tests.charts.conftest import REGION, REPO, SERVICES, chart_of, render

pytestmark = pytest.mark.charts

CONFIG_DIR = "/var/lib/kolla/config_files"
IMAGES = REPO / "images"
# One resolve of every service image (images/resolve.sh).
CONSTRAINTS = IMAGES / "constraints.txt"
WSGI_SERVER = "gunicorn"

# console_scripts of each service's wheel (entry_points.txt of the versions pip resolved on 2026-11-25:
# barbican 23.0.0, cinder 29.0.0, designate 23.0.0, glance 33.0.0, horizon 27.0.0, ironic 39.0.0,
# keystone 30.0.0, manila 23.0.1, neutron 29.0.0, nova 34.0.0, openstack-placement 16.0.0), limited to the
# ones a chart could start.
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
    "placement": {"placement-manage", "placement-status"},
}
# The API servers these packages no longer ship, as the WSGI modules that replace them: each defines
# `application` when imported (the module calls its own init function). Read in the wheels barbican 23.0.0,
# horizon 27.0.0, keystone 30.0.0, neutron 29.0.0 and nova 34.0.0 (2026-11-25), glance 33.0.0 and
# openstack-placement 16.0.0, designate 23.0.0 and manila 23.0.1 (2026-12-02; the container test found that
# glance-api only says standalone mode is gone, designate-api and manila-api refuse the threading backend).
WSGI_MODULES: Dict[str, str] = {
    "barbican": "barbican.wsgi.api",
    "designate": "designate.wsgi.api",
    "glance": "glance.wsgi.api",
    "manila": "manila.wsgi.api",
    "placement": "placement.wsgi.api",
    "horizon": "openstack_dashboard.wsgi",
    "keystone": "keystone.wsgi.api",
    "neutron": "neutron.wsgi.api",
    "nova": "nova.wsgi.osapi_compute",
}
WHEEL_VERSIONS: Dict[str, str] = {
    "barbican": "23.0.0", "designate": "23.0.0", "manila": "23.0.1", "glance": "33.0.0", "placement": "16.0.0",
    "horizon": "27.0.0", "keystone": "30.0.0", "neutron": "29.0.0", "nova": "34.0.0",
}
# The shim module gunicorn loads instead, by service: oslo.config parses sys.argv (nova, neutron, keystone;
# barbican 23 does not, the shim guards it all the same). Django does not: horizon's module (below) has another job.
SHIMS: Dict[str, str] = {
    "barbican": "barbican_wsgi_api",
    "designate": "designate_wsgi_api",
    "glance": "glance_wsgi_api",
    "manila": "manila_wsgi_api",
    "placement": "placement_wsgi_api",
    "keystone": "keystone_wsgi_public",
    "neutron": "neutron_wsgi_api",
    "nova": "nova_wsgi_osapi_compute",
}
# Every module gunicorn loads from --chdir instead of the service's own: the shims above, and horizon's, which
# wraps Django's application in WhiteNoise so that the dashboard serves its static files (no web server in the pod).
CHDIR_MODULES: Dict[str, str] = SHIMS | {"horizon": "horizon_wsgi"}
# What a shim puts in the environment before the import: neutron looks for ml2_conf.ini under
# plugins/ml2/ unless told otherwise (neutron.server._get_config_files).
SHIM_ENVIRONMENT: Dict[str, Dict[str, str]] = {"neutron": {"OS_NEUTRON_CONFIG_FILES": "neutron.conf;ml2_conf.ini"}}
# PyPI project of each service (images/<service>/requirements.txt names it).
PROJECTS: Dict[str, str] = {service: service for service in SERVICES} | {"placement": "openstack-placement"}
# Programs every image adds on top of its service package (images/<service>/requirements.txt).
IMAGE_EXTRAS: Set[str] = {WSGI_SERVER}


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


def _wsgi_commands(region: List[Dict[str, Any]]) -> Dict[str, Tuple[str, Tuple[str, ...]]]:
    """service -> (component, argv) of the one component each service runs under gunicorn."""
    found: Dict[str, Tuple[str, Tuple[str, ...]]] = {}
    for (service, component), argv in _commands(region).items():
        if argv[0] == WSGI_SERVER:
            assert service not in found, f"{service}: more than one gunicorn component"
            found[service] = (component, argv)
    return found


def _option(argv: Tuple[str, ...], name: str) -> str:
    assert argv.count(name) == 1, f"{name} given {argv.count(name)} times in {argv}"
    return argv[argv.index(name) + 1]


def _container_port(region: List[Dict[str, Any]], service: str, component: str) -> int:
    workloads = [
        o for o in region
        if o["kind"] == "Deployment" and chart_of(o) == service
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    assert len(workloads) == 1, f"{service}/{component}: {len(workloads)} Deployments"
    (container,) = workloads[0]["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    return int(port["containerPort"])


SHELL_TOOLS = {"grep"}
SEPARATORS = {"&&", "||", "|", "{", "}"}


def _programs(argv: Tuple[str, ...]) -> List[str]:
    """The programs a command runs: argv[0], or each step of a `sh -c '... && ...'` (a multi-step Job)."""
    if argv[:2] != ("sh", "-c"):
        return [argv[0]]
    programs, start = [], True
    for token in shlex.split(argv[2]):
        if token in SEPARATORS or token.endswith(";"):
            start = True
        elif start:
            programs.append(token)
            start = False
    return programs


def _requirements(path: Path) -> Set[str]:
    return {
        re.split(r"[=<>!~ ;\[]", line.strip(), maxsplit=1)[0].lower()
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }


def test_the_wsgi_services_are_exactly_the_listed_ones(region: List[Dict[str, Any]]) -> None:
    assert set(_wsgi_commands(region)) == set(WSGI_MODULES)
    assert set(CHDIR_MODULES) <= set(WSGI_MODULES)


@pytest.mark.parametrize("service", sorted(WSGI_MODULES))
def test_gunicorn_serves_the_service_on_its_port(region: List[Dict[str, Any]], service: str) -> None:
    """All interfaces, the port the Deployment declares, at least one worker, no control socket."""
    component, argv = _wsgi_commands(region)[service]
    # gunicorn 27 opens a control socket under $HOME by default; a service user's home is not for that.
    assert "--no-control-socket" in argv
    assert _option(argv, "--bind") == f"0.0.0.0:{_container_port(region, service, component)}"
    assert int(_option(argv, "--workers")) >= 1
    module, _, attribute = argv[-1].partition(":")
    assert attribute == "application"
    assert module == CHDIR_MODULES.get(service, WSGI_MODULES[service])


# The component each WSGI service runs under gunicorn, whose `workers` value is its --workers.
WSGI_COMPONENTS: Dict[str, str] = {service: "api" for service in WSGI_MODULES} | {
    "horizon": "dashboard", "neutron": "server"}
DEFAULT_WORKERS = 2


def test_gunicorn_workers_default_to_the_charts_value(region: List[Dict[str, Any]]) -> None:
    """Every gunicorn command runs the charts' default worker count unless a region sets `workers`."""
    commands = _wsgi_commands(region)
    assert {service: commands[service][0] for service in commands} == WSGI_COMPONENTS
    assert {service: int(_option(argv, "--workers")) for service, (_, argv) in commands.items()} == dict.fromkeys(
        WSGI_MODULES, DEFAULT_WORKERS)


def test_a_regions_workers_value_reaches_the_gunicorn_command(built_charts: Path) -> None:
    """`openstack.<chart>.components.<component>.workers` is the --workers of that chart's command alone."""
    wanted = {service: 3 + index for index, service in enumerate(sorted(WSGI_COMPONENTS))}
    values = {"openstack": {
        service: {"enabled": True, "components": {WSGI_COMPONENTS[service]: {"workers": workers}}}
        for service, workers in wanted.items()
    }}
    commands = _wsgi_commands(render(built_charts / REGION, values))
    assert {service: int(_option(argv, "--workers")) for service, (_, argv) in commands.items()} == wanted


@pytest.mark.parametrize("service", sorted(CHDIR_MODULES))
def test_the_shim_is_shipped_into_gunicorns_chdir(region: List[Dict[str, Any]], service: str) -> None:
    """gunicorn loads <shim>:application from --chdir, where config.json puts <shim>.py from the ConfigMap."""
    data = _config_configmap(region, service)
    component, argv = _wsgi_commands(region)[service]
    config = json.loads(data[f"{component}.json"])
    chdir = _option(argv, "--chdir")
    module = CHDIR_MODULES[service]
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", module), f"{module!r} is not a top-level module name"
    assert f"{module}.py" in data
    entries = [e for e in config["config_files"] if e["source"] == f"{CONFIG_DIR}/{module}.py"]
    assert [e["dest"] for e in entries] == [f"{chdir}/{module}.py"]
    # The service user must be able to read it (kolla-entry drops to config["user"] before exec).
    assert entries[0]["owner"].split(":")[0] == config["user"]
    imports = [n for n in ast.walk(ast.parse(data[f"{module}.py"])) if isinstance(n, ast.ImportFrom)]
    imported = [(n.module, [a.name for a in n.names]) for n in imports]
    if service in SHIMS:  # its one import is the verified WSGI module's application
        assert imported == [(WSGI_MODULES[service], ["application"])]
    else:  # a wrapper: it wraps the verified WSGI module's application (so a hot-fix of that module applies)
        assert (WSGI_MODULES[service], ["application"]) in imported


@pytest.mark.parametrize("service", sorted(SHIMS))
def test_the_shim_hides_gunicorns_arguments_before_the_service_loads(
    region: List[Dict[str, Any]], tmp_path: Path, service: str
) -> None:
    """
    Import the shim as a gunicorn worker would (gunicorn's argv, --chdir on sys.path) with a stand-in WSGI
    module that records sys.argv and the OS_* environment when it loads: oslo.config must see no gunicorn
    option, and every config file the shim names must be one the ConfigMap puts in the service's configDir.
    """
    data = _config_configmap(region, service)
    component, argv = _wsgi_commands(region)[service]
    module = SHIMS[service]
    chdir = tmp_path / "chdir"
    chdir.mkdir()
    (chdir / f"{module}.py").write_text(data[f"{module}.py"])
    package = tmp_path / "stand-in"
    *parents, leaf = WSGI_MODULES[service].split(".")
    for depth in range(1, len(parents) + 1):
        (package.joinpath(*parents[:depth])).mkdir(parents=True, exist_ok=True)
        (package.joinpath(*parents[:depth]) / "__init__.py").write_text("")
    (package.joinpath(*parents) / f"{leaf}.py").write_text(
        "import os\nimport sys\n\n"
        "application = [list(sys.argv), {k: v for k, v in os.environ.items() if k.startswith('OS_')}]\n"
    )
    probe = (
        "import json, sys\n"
        f"sys.argv = {list(argv)!r}\n"
        f"sys.path[:0] = [{str(chdir)!r}, {str(package)!r}]\n"
        f"import {module}\n"
        f"print(json.dumps({module}.application))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    seen_argv, seen_env = json.loads(result.stdout)
    assert seen_argv == [WSGI_SERVER]
    assert seen_env == SHIM_ENVIRONMENT.get(service, {})
    shipped = {e["dest"] for e in json.loads(data[f"{component}.json"])["config_files"]}
    for name, value in seen_env.items():
        if name.endswith("_CONFIG_FILES"):
            # Relative to the service's default OS_<SERVICE>_CONFIG_DIR, /etc/<service> (no shim sets it).
            for file in value.split(";"):
                assert f"/etc/{service}/{file}" in shipped, f"{name} names {file}, which the ConfigMap does not ship"


@pytest.mark.parametrize("service", sorted(WSGI_MODULES))
def test_the_wsgi_module_defines_application_in_the_wheel(service: str) -> None:
    """
    Re-check WSGI_MODULES against the real wheels (downloaded once from PyPI into the ignored
    work/commands/): the module exists and assigns `application` at its top level.
    """
    project = PROJECTS[service]
    wheel = REPO / "work" / "commands" / f"{project.replace('-', '_')}-{WHEEL_VERSIONS[service]}-py3-none-any.whl"
    if not wheel.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "-d", str(wheel.parent), f"{project}=={WHEEL_VERSIONS[service]}"], check=True)
    path = WSGI_MODULES[service].replace(".", "/") + ".py"
    with zipfile.ZipFile(wheel) as archive:
        tree = ast.parse(archive.read(path))
    # Module level, including under the `with lock:` / `if application is None:` the services use.
    assigned = {
        target.id
        for node in tree.body
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        for statement in ast.walk(node)
        if isinstance(statement, ast.Assign)
        for target in statement.targets
        if isinstance(target, ast.Name)
    }
    assert "application" in assigned


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_image_installs_what_the_chart_runs(region: List[Dict[str, Any]], service: str) -> None:
    """
    Every command of the service's chart starts with a program its image installs (the service's console
    scripts, gunicorn), and the image's packages are pinned by the one constraints file.
    """
    requirements = _requirements(IMAGES / service / "requirements.txt")
    assert {PROJECTS[service], WSGI_SERVER} <= requirements
    pins = {line.split("==")[0].lower() for line in CONSTRAINTS.read_text().splitlines() if "==" in line}
    assert requirements <= pins, f"not pinned by {CONSTRAINTS}: {requirements - pins}"
    programs = CONSOLE_SCRIPTS[service] | IMAGE_EXTRAS
    argvs = {component: argv for (name, component), argv in _commands(region).items() if name == service}
    assert argvs
    assert {c: p for c, argv in argvs.items() if not _runs_a_configmap_script(region, service, argv)
            for p in _programs(argv) if p not in programs | SHELL_TOOLS} == {}


def _runs_a_configmap_script(region: List[Dict[str, Any]], service: str, argv: Tuple[str, ...]) -> bool:
    """`python3 <script>` or `sh <script>` (every image has both) with a script the config ConfigMap holds."""
    folder = "/var/lib/kolla/config_files/"
    return (len(argv) >= 2 and argv[0] in {"python3", "sh"} and argv[1].startswith(folder)
            and argv[1][len(folder):] in _config_configmap(region, service))


def test_every_command_names_a_console_script_of_its_service_or_gunicorn(region: List[Dict[str, Any]]) -> None:
    """A command whose program the service package does not ship crash-loops its pod: there is none."""
    gaps = {
        (service, component, program)
        for (service, component), argv in _commands(region).items()
        for program in _programs(argv)
        if program not in CONSOLE_SCRIPTS[service] | ({WSGI_SERVER} if service in WSGI_MODULES else set()) | SHELL_TOOLS
        and not _runs_a_configmap_script(region, service, argv)
    }
    assert gaps == set()


def test_nova_db_sync_prepares_the_api_database_and_cells_first(region: List[Dict[str, Any]]) -> None:
    """`nova-manage db sync` alone fails on an empty region (no cell_mappings): the Job runs the steps in order."""
    argv = _commands(region)[("nova", "db-sync")]
    assert _runs_a_configmap_script(region, "nova", argv), argv
    script = " ".join(_config_configmap(region, "nova")[argv[1].rsplit("/", 1)[1]].split())
    order = ["nova-manage api_db sync", "nova-manage cell_v2 map_cell0", "create_cell --name cell1",
             "nova-manage db sync"]
    positions = [script.find(step) for step in order]
    assert -1 not in positions and positions == sorted(positions), script
