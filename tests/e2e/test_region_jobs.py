"""
The charts' region Jobs against the real Keystone of tests/e2e (issue #15): the registration script the common
chart renders (taken from the nova chart as Helm renders it, run with the Keystone venv's python, which has
keystoneauth1 as every OpenStack venv does), and keystone's schema check.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from tests.charts.conftest import build_charts, render
from tests.e2e.podkit import Pod, podlayout

pytestmark = pytest.mark.e2e

REGION = "e2e-region"


@pytest.fixture(scope="module")
def built_charts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_charts(tmp_path_factory.mktemp("charts") / "charts")


def _config_data(charts: Path, service: str, values: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """The <service>-config ConfigMap's data, rendered by the real Helm engine."""
    config = next(o for o in render(charts / service, values) if o["kind"] == "ConfigMap" and
                  o["metadata"]["name"] == f"{service}-config")
    return dict(config["data"])


@pytest.fixture(scope="module")
def register_script(built_charts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """register.py from the nova chart's config ConfigMap."""
    path = tmp_path_factory.mktemp("register") / "register.py"
    path.write_text(_config_data(built_charts, "nova")["register.py"])
    return path


class Registration:
    """Runs the script for one service against the pod's Keystone and reads the result back as the admin."""

    def __init__(self, pod: Pod, script: Path, folder: Path) -> None:
        self.pod = pod
        self.script = script
        self.spec_path = folder / "register.spec"
        self.service_password = "svc-" + secrets.token_hex(8)
        self.spec: Dict[str, Any] = {
            "authUrl": f"{pod.base}/v3", "adminUser": "admin", "adminProject": "admin", "domain": "default",
            "project": "service", "user": "e2e-nova", "roles": ["admin", "service"], "region": REGION,
            "service": {"name": "e2e-nova", "type": "compute", "description": "e2e"},
            "endpoints": {"internal": "http://nova-api:8774/v2.1", "public": "http://nova.example:8774/v2.1"},
            "timeout": 30,
        }

    def run(self, admin_password: str = "") -> subprocess.CompletedProcess[str]:
        self.spec_path.write_text(json.dumps(self.spec))
        env = {"PATH": os.environ["PATH"], "ADMIN_PASSWORD": admin_password or self.pod.password,
               "SERVICE_PASSWORD": self.service_password}
        return subprocess.run([str(self.pod.venv / "bin/python"), str(self.script), str(self.spec_path)],
                              env=env, capture_output=True, text=True, timeout=300, check=False)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, headers, _ = podlayout.http("POST", f"{self.pod.base}/v3/auth/tokens",
                                            podlayout.password_auth(self.pod.password))
        assert status == 201
        status, _, data = podlayout.http(method, f"{self.pod.base}/v3{path}", body,
                                         {"X-Auth-Token": headers["X-Subject-Token"]})
        assert status < 300, (status, data)
        return json.loads(data) if data else None

    def endpoints(self) -> Dict[str, List[str]]:
        services = [s for s in self.api("GET", "/services?type=compute")["services"] if s["name"] == "e2e-nova"]
        assert len(services) == 1
        found: Dict[str, List[str]] = {}
        for endpoint in self.api("GET", f"/endpoints?service_id={services[0]['id']}")["endpoints"]:
            assert endpoint["region_id"] == REGION
            found.setdefault(endpoint["interface"], []).append(endpoint["url"])
        return found

    def service_user_token(self) -> int:
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "e2e-nova", "domain": {"id": "default"}, "password": self.service_password}}},
            "scope": {"project": {"name": "service", "domain": {"id": "default"}}}}}
        status, _, data = podlayout.http("POST", f"{self.pod.base}/v3/auth/tokens", body)
        if status == 201:
            roles = {role["name"] for role in json.loads(data)["token"]["roles"]}
            assert {"admin", "service"} <= roles
        return status


@pytest.fixture(scope="module")
def registration(keystone_pod: Pod, register_script: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registration]:
    yield Registration(keystone_pod, register_script, tmp_path_factory.mktemp("spec"))


def _lines(done: subprocess.CompletedProcess[str]) -> List[str]:
    return done.stdout.splitlines()


class TestRegistration:
    """In order: a first run creates, a second keeps, changes converge (one Keystone for the module)."""

    def test_first_run_creates_user_roles_region_service_and_endpoints(self, registration: Registration) -> None:
        done = registration.run()
        assert done.returncode == 0, done.stdout + done.stderr
        lines = _lines(done)
        assert "user e2e-nova: created" in lines and f"region {REGION}: created" in lines
        assert "service e2e-nova (compute): created" in lines
        assert registration.endpoints() == {"internal": ["http://nova-api:8774/v2.1"],
                                            "public": ["http://nova.example:8774/v2.1"]}
        assert registration.service_user_token() == 201

    def test_a_second_run_changes_nothing(self, registration: Registration) -> None:
        done = registration.run()
        assert done.returncode == 0, done.stdout + done.stderr
        assert "user e2e-nova: kept" in _lines(done)
        assert [line for line in _lines(done) if line.startswith("endpoint")] == [
            "endpoint internal http://nova-api:8774/v2.1: kept", "endpoint public http://nova.example:8774/v2.1: kept"]
        assert len(registration.endpoints()["public"]) == 1

    def test_a_changed_url_and_password_and_a_duplicate_converge(self, registration: Registration) -> None:
        """As after `openstack endpoint create` ran twice, a new public address and a rotated password."""
        service_id = next(s for s in registration.api("GET", "/services?type=compute")["services"]
                      if s["name"] == "e2e-nova")["id"]
        registration.api("POST", "/endpoints", {"endpoint": {
            "service_id": service_id, "interface": "internal", "region_id": REGION, "url": "http://stale/"}})
        registration.spec["endpoints"]["public"] = "https://compute.example/v2.1"
        registration.service_password = "svc-" + secrets.token_hex(8)
        assert registration.service_user_token() == 401
        done = registration.run()
        assert done.returncode == 0, done.stdout + done.stderr
        assert "user e2e-nova: password updated" in _lines(done)
        assert registration.endpoints() == {"internal": ["http://nova-api:8774/v2.1"],
                                            "public": ["https://compute.example/v2.1"]}
        assert registration.service_user_token() == 201

    def test_a_wrong_admin_password_fails_with_one_line_and_no_secret(self, registration: Registration) -> None:
        registration.spec["timeout"] = 1
        wrong = "wrong-" + secrets.token_hex(8)
        done = registration.run(admin_password=wrong)
        registration.spec["timeout"] = 30
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and "gave no admin token" in done.stderr
        assert "Unauthorized" in done.stdout + done.stderr
        for secret in (wrong, registration.service_password, registration.pod.password):
            assert secret not in done.stdout + done.stderr


class TestKeystoneSchemaCheck:
    def test_the_check_passes_on_a_synced_database_and_fails_on_an_empty_one(self, keystone_pod: Pod,
                                                                              tmp_path: Path) -> None:
        """The keystone chart's schemaCheck: exit 0 only when db_sync has run (kolla-entry waits on it)."""
        python, manage = str(keystone_pod.venv / "bin/python"), str(keystone_pod.venv / "bin/keystone-manage")
        conf = keystone_pod.root / "etc/keystone/keystone.conf"
        synced = subprocess.run([python, manage, "--config-file", str(conf), "db_sync", "--check"],
                                capture_output=True, text=True, timeout=120, check=False)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        empty = tmp_path / "keystone.conf"
        text = conf.read_text()
        start = text.index("connection = ")
        end = text.index("\n", start)
        empty.write_text(text[:start] + f"connection = sqlite:///{tmp_path}/empty.db" + text[end:])
        fresh = subprocess.run([python, manage, "--config-file", str(empty), "db_sync", "--check"],
                               capture_output=True, text=True, timeout=120, check=False)
        assert fresh.returncode == 2, fresh.stdout + fresh.stderr


class TestKeystoneBootstrap:
    def test_the_rendered_bootstrap_converges_when_run_again(self, keystone_pod: Pod, built_charts: Path,
                                                             registration: Registration) -> None:
        """The keystone chart's bootstrap Job command, twice: the region and one identity endpoint per interface."""
        region = "e2e-bootstrap-region"
        config = json.loads(_config_data(built_charts, "keystone", {"global": {"region": region}})["bootstrap.json"])
        argv = shlex.split(config["command"])
        assert argv[:2] == ["keystone-manage", "bootstrap"]
        venv = keystone_pod.venv
        command = [str(venv / "bin/python"), str(venv / "bin/keystone-manage"), "--config-file",
                   str(keystone_pod.root / "etc/keystone/keystone.conf"), *argv[1:]]
        env = {"PATH": os.environ["PATH"], "OS_BOOTSTRAP_PASSWORD": keystone_pod.password}
        for _ in range(2):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
        assert registration.api("GET", f"/regions/{region}")["region"]["id"] == region
        identity = registration.api("GET", "/services?type=identity")["services"]
        endpoints = [e for s in identity for e in registration.api("GET", f"/endpoints?service_id={s['id']}")[
            "endpoints"] if e["region_id"] == region]
        assert sorted((e["interface"], e["url"]) for e in endpoints) == [
            (interface, "http://keystone-api:5000/v3") for interface in ("admin", "internal", "public")]
        assert keystone_pod.password not in done.stdout + done.stderr
