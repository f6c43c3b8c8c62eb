"""
What makes a rendered region able to work (issue #15), checked on the example region as Helm renders it:
Keystone's key repositories and bootstrap, every service's registration Job, nova's cell setup and the
schema checks kolla-entry runs before a component that uses the database starts.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import pwd
import stat
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest

from kolla_entry.start.install import apply_configs, resolve_owners
from kolla_entry.start.reader import parse_config
from tests.charts.conftest import SERVICES, chart_of, pod_templates, render, umbrella_globals

pytestmark = pytest.mark.charts

CONFIG_DIR = "/var/lib/kolla/config_files/"
CHECKSUM = "checksum/kolla-entry"
# Catalog service type of each chart that registers itself (keystone's bootstrap registers identity).
CATALOG = {"barbican": "key-manager", "cinder": "block-storage", "designate": "dns", "glance": "image",
           "ironic": "baremetal", "manila": "shared-file-system", "neutron": "network", "nova": "compute",
           "placement": "placement"}
# The service's main config file, where keystone_authtoken is (glance's API reads glance-api.conf).
MAIN_CONF = {"glance": "glance-api.conf"}
# The region's database endpoint (the umbrella's global.endpoints.database).
DATABASE = umbrella_globals()["global"]["endpoints"]["database"]
# The charts whose database-using components wait for the schema, and the check they run.
SCHEMA_CHECKS = {
    "keystone": "keystone-manage db_sync --check",
    "glance": "python3 /var/lib/kolla/config_files/schema-check.py",
    "neutron": "python3 /var/lib/kolla/config_files/schema-check.py",
    "nova": "python3 /var/lib/kolla/config_files/schema-check.py",
    **{service: "python3 /var/lib/kolla/config_files/schema-check.py"
       for service in ("barbican", "cinder", "designate", "ironic", "manila", "placement")},
}


def _find(objects: List[Dict[str, Any]], kind: str, name: str) -> Dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def _component(obj: Dict[str, Any]) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


def _jobs(objects: List[Dict[str, Any]], service: str) -> Dict[str, Dict[str, Any]]:
    return {_component(o): o for o in objects if o["kind"] == "Job" and chart_of(o) == service}


def _config(objects: List[Dict[str, Any]], service: str) -> Dict[str, str]:
    return dict(_find(objects, "ConfigMap", f"{service}-config")["data"])


def _secret(objects: List[Dict[str, Any]], name: str) -> Dict[str, str]:
    data = _find(objects, "Secret", name).get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def _container(obj: Dict[str, Any]) -> Dict[str, Any]:
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _config_json(objects: List[Dict[str, Any]], obj: Dict[str, Any]) -> Dict[str, Any]:
    path = _container(obj)["command"][-1]
    return dict(json.loads(_config(objects, chart_of(obj))[path[len(CONFIG_DIR):]]))


def _checks(config_json: Dict[str, Any]) -> List[str]:
    return [d["command"] for d in config_json.get("dependencies", []) if "command" in d]


class TestKeystone:
    def test_key_repositories_come_from_the_secret_as_whole_folders(self, region: List[Dict[str, Any]]) -> None:
        """fernet_key_<n> -> fernet-keys/<n>: kolla-entry copies each folder, keystone-owned, keys 0600."""
        api = _find(region, "Deployment", "keystone-api")
        volumes = {v["name"]: v for v in api["spec"]["template"]["spec"]["volumes"]}
        items = {i["key"]: i["path"] for i in volumes["secret-folders"]["secret"]["items"]}
        secret = _secret(region, "keystone-secrets")
        assert items == {key: key.replace("fernet_key_", "fernet-keys/").replace("credential_key_", "credential-keys/")
                         for key in secret if key.startswith(("fernet_key_", "credential_key_"))}
        assert len([k for k in items if k.startswith("fernet_key_")]) >= 2 and "credential_key_0" in items
        conf = configparser.ConfigParser(interpolation=None)
        conf.read_string(_config(region, "keystone")["keystone.conf"])
        repositories = {conf["fernet_tokens"]["key_repository"], conf["credential"]["key_repository"]}
        copies = {e["dest"]: e for e in _config_json(region, api)["config_files"] if "secret-folders" in e["source"]}
        assert set(copies) == repositories
        assert all(e["owner"] == "keystone:keystone" and e["perm"] == "0600" and not e.get("template")
                   for e in copies.values())

    def test_example_keys_are_fernet_keys(self, region: List[Dict[str, Any]]) -> None:
        """Each key is 32 bytes in URL-safe base64, as keystone-manage fernet_setup writes them."""
        keys = {k: v for k, v in _secret(region, "keystone-secrets").items() if k.startswith(("fernet", "credential"))}
        assert keys and all(len(base64.urlsafe_b64decode(value)) == 32 for value in keys.values())
        assert len(set(keys.values())) == len(keys)

    def test_a_new_key_rolls_the_pods(self, built_charts: Path, region_values: Dict[str, Any]) -> None:
        """Rotation: a key added to the Secret changes the pods' checksum and reaches the folder."""
        before = render(built_charts / "europe-example-region")
        values = json.loads(json.dumps(region_values))
        values["openstack"]["keystone"]["secrets"]["fernet_key_3"] = base64.urlsafe_b64encode(b"k" * 32).decode()
        after = render(built_charts / "europe-example-region", values)
        api_before, api_after = (_find(r, "Deployment", "keystone-api")["spec"]["template"] for r in (before, after))
        assert api_before["metadata"]["annotations"][CHECKSUM] != api_after["metadata"]["annotations"][CHECKSUM]
        items = {i["path"] for v in api_after["spec"]["volumes"] if v["name"] == "secret-folders"
                 for i in v["secret"]["items"]}
        assert "fernet-keys/3" in items

    def test_bootstrap_job_creates_admin_region_and_identity_endpoints(self, region: List[Dict[str, Any]]) -> None:
        job = _jobs(region, "keystone")["bootstrap"]
        config = _config_json(region, job)
        argv = config["command"].split()
        assert argv[:2] == ["keystone-manage", "bootstrap"]
        options = dict(zip(argv[2::2], argv[3::2]))
        assert options["--bootstrap-region-id"] == "europe-example-1"
        assert {options[f"--bootstrap-{i}-url"] for i in ("admin", "internal", "public")} == {
            "http://keystone-api:5000/v3"}
        env = {e["name"]: e for e in _container(job).get("env", [])}
        assert env["OS_BOOTSTRAP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "keystone-secrets", "key": "keystone_admin_password"}
        assert _checks(config) == [SCHEMA_CHECKS["keystone"]]


class TestRegistration:
    @pytest.mark.parametrize("service", sorted(CATALOG))
    def test_every_service_registers_itself(self, region: List[Dict[str, Any]], service: str) -> None:
        """A Job runs register.py once Keystone's port answers, with the passwords from the service's Secret."""
        job = _jobs(region, service)["register"]
        config = _config_json(region, job)
        assert config["command"] == f"python3 {CONFIG_DIR}register.py {CONFIG_DIR}register.spec"
        assert config["dependencies"] == [{"tcp": "keystone-api:5000"}] and config["config_files"] == []
        spec = json.loads(_config(region, service)["register.spec"])
        assert spec["service"]["type"] == CATALOG[service] and spec["service"]["name"] == service
        assert spec["user"] == service and spec["project"] == "service" and spec["roles"] == ["admin", "service"]
        assert spec["region"] == "europe-example-1" and spec["authUrl"] == "http://keystone-api:5000/v3"
        assert set(spec["endpoints"]) == {"internal", "public"}
        assert all(url.startswith("http://") for url in spec["endpoints"].values())
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in _container(job)["env"] if "valueFrom" in e
               and "secretKeyRef" in e["valueFrom"]}
        assert env == {"ADMIN_PASSWORD": {"name": f"{service}-secrets", "key": "keystone_admin_password"},
                       "SERVICE_PASSWORD": {"name": f"{service}-secrets", "key": f"{service}_keystone_password"}}

    def test_the_service_user_is_the_one_the_config_logs_in_as(self, region: List[Dict[str, Any]]) -> None:
        """keystone_authtoken's username and password file are the registered user's."""
        for service in CATALOG:
            conf = configparser.ConfigParser(interpolation=None, strict=False)
            name = MAIN_CONF.get(service, f"{service}.conf")
            conf.read_string(_config(region, service)[name])
            assert conf["keystone_authtoken"]["username"] == service
            assert conf["keystone_authtoken"]["password"].endswith(f"/{service}_keystone_password}}")

    def test_the_script_compiles(self, region: List[Dict[str, Any]]) -> None:
        compile(_config(region, "nova")["register.py"], "register.py", "exec")

    def test_every_secret_reference_names_a_set_key_of_its_secret(self, region: List[Dict[str, Any]]) -> None:
        """A secretKeyRef to a missing key keeps the pod from starting: each one is set, and not empty."""
        seen = 0
        for _, template in pod_templates(region):
            for container in template["spec"]["containers"]:
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert _secret(region, ref["name"]).get(ref["key"]), ref
                        seen += 1
        assert seen >= 2 * len(CATALOG) + 1


class TestSchema:
    @pytest.mark.parametrize("service", sorted(SCHEMA_CHECKS))
    def test_components_using_the_database_wait_for_the_schema(self, region: List[Dict[str, Any]],
                                                               service: str) -> None:
        """After the config files, kolla-entry runs the check until it exits 0; db-sync (which makes it) never."""
        waited = set()
        for obj, _ in pod_templates(region):
            if chart_of(obj) != service:
                continue
            config = _config_json(region, obj)
            uses_database = any(d.get("tcp") == DATABASE for d in config.get("dependencies", []))
            checks = _checks(config)
            if _component(obj) == "db-sync":
                assert checks == []
            elif uses_database and _component(obj) != "register":
                assert checks == [SCHEMA_CHECKS[service]], _component(obj)
                waited.add(_component(obj))
            else:
                assert checks == [], _component(obj)
        assert waited

    def test_charts_without_a_check_start_as_before(self, region: List[Dict[str, Any]]) -> None:
        assert set(SERVICES) - set(SCHEMA_CHECKS) == {"horizon"}
        for service in set(SERVICES) - set(SCHEMA_CHECKS):
            for obj, _ in pod_templates(region):
                if chart_of(obj) == service:
                    assert _checks(_config_json(region, obj)) == []


class TestNovaCells:
    def test_db_sync_runs_the_cell_setup_in_order(self, region: List[Dict[str, Any]]) -> None:
        job = _jobs(region, "nova")["db-sync"]
        assert _config_json(region, job)["command"] == f"sh {CONFIG_DIR}db-setup.sh"
        script = _config(region, "nova")["db-setup.sh"]
        steps = [line.split("#")[0].strip() for line in script.splitlines()]
        order = ["nova-manage api_db sync", "nova-manage cell_v2 map_cell0", "nova-manage cell_v2 list_cells",
                 "nova-manage cell_v2 create_cell --name cell1", "nova-manage db sync"]
        positions = [next(i for i, step in enumerate(steps) if want in step) for want in order]
        assert positions == sorted(positions) and steps[0] == "set -e"
        subprocess.run(["sh", "-n"], input=script, text=True, check=True)

    def test_scheduler_discovers_new_hosts(self, region: List[Dict[str, Any]]) -> None:
        conf = configparser.ConfigParser(interpolation=None)
        conf.read_string(_config(region, "nova")["nova.conf"])
        assert 0 < int(conf["scheduler"]["discover_hosts_in_cells_interval"]) <= 300

    def test_schema_check_compiles_and_reads_the_rendered_config(self, region: List[Dict[str, Any]]) -> None:
        script = _config(region, "nova")["schema-check.py"]
        compile(script, "schema-check.py", "exec")
        assert '"/etc/nova/nova.conf"' in script


@pytest.mark.parametrize("service", sorted(set(SCHEMA_CHECKS) - {"keystone"}))
def test_schema_check_scripts_compile(region: List[Dict[str, Any]], service: str) -> None:
    compile(_config(region, service)["schema-check.py"], f"{service}/schema-check.py", "exec")



def _kubelet_secret_volume(mount: Path, items: Dict[str, bytes]) -> None:
    """A Secret volume with `items` paths such as fernet-keys/0, in the kubelet's ..data layout."""
    stamp = mount / "..2026_12_02_03_00_00.000000001"
    for path, data in items.items():
        (stamp / path).parent.mkdir(parents=True, exist_ok=True)
        (stamp / path).write_bytes(data)
    os.symlink(stamp.name, mount / "..data")
    for top in {path.split("/")[0] for path in items}:
        os.symlink(f"..data/{top}", mount / top)


def _install_key_folders(region: List[Dict[str, Any]], root: Path, volume: Dict[str, bytes]) -> None:
    """kolla-entry's own config reader and installer on the keystone API's key-folder entries, under root."""
    mount = root / f"mount-{len(list(root.glob('mount-*')))}"
    _kubelet_secret_volume(mount, volume)
    entries = [dict(e, source=e["source"].replace("/var/lib/kolla/secret-folders/keystone", str(mount)),
                    dest=str(root) + e["dest"], owner=pwd.getpwuid(os.getuid()).pw_name)
               for e in _config_json(region, _find(region, "Deployment", "keystone-api"))["config_files"]
               if "secret-folders" in e["source"]]
    config = parse_config({"config_files": entries}, "api.json")
    apply_configs(config, resolve_owners(config), environ={})


def test_kolla_entry_installs_the_key_folders_with_keystones_modes(region: List[Dict[str, Any]],
                                                                  tmp_path: Path) -> None:
    """The rendered entries, run through kolla-entry: 0700 folders, 0600 keys, exactly the Secret's keys."""
    api = _find(region, "Deployment", "keystone-api")
    items = next(v for v in api["spec"]["template"]["spec"]["volumes"] if v["name"] == "secret-folders")
    secret = _secret(region, "keystone-secrets")
    volume = {i["path"]: secret[i["key"]].encode() for i in items["secret"]["items"]}
    _install_key_folders(region, tmp_path, volume)
    fernet = tmp_path / "var/lib/keystone/fernet-keys"
    assert stat.S_IMODE(fernet.stat().st_mode) == 0o700
    assert {p.name: (stat.S_IMODE(p.stat().st_mode), p.read_bytes()) for p in fernet.iterdir()} == {
        path.split("/")[1]: (0o600, data) for path, data in volume.items() if path.startswith("fernet-keys/")}
    assert sorted(p.name for p in (tmp_path / "var/lib/keystone/credential-keys").iterdir()) == ["0", "1"]

    # Rotation: key 0 promoted to 3, a new 0, 1 dropped; the next start's folder is exactly the new set.
    rotated = {"fernet-keys/0": b"new-staged", "fernet-keys/2": volume["fernet-keys/2"],
               "fernet-keys/3": volume["fernet-keys/0"], "credential-keys/0": volume["credential-keys/0"]}
    _install_key_folders(region, tmp_path, rotated)
    assert {p.name: p.read_bytes() for p in fernet.iterdir()} == {
        "0": b"new-staged", "2": volume["fernet-keys/2"], "3": volume["fernet-keys/0"]}


def test_designate_gives_every_cotyledon_service_a_worker_count(region: List[Dict[str, Any]]) -> None:
    """designate 23 exits at start when a service's `workers` is unset (cotyledon wants an int >= 1)."""
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(_find(region, "ConfigMap", "designate-config")["data"]["designate.conf"])
    for component in ("central", "mdns", "worker", "producer"):
        assert conf.getint(f"service:{component}", "workers") >= 1, component
