"""
The example region as Helm renders it: valid Kubernetes 1.30 objects, every OpenStack container started
through kolla-entry with its patches, config and secrets wired as documented in charts/README.md.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set

import kubernetes_validate
import pytest
import yaml

from tests.charts.conftest import (
    CHARTS,
    INFRA,
    PATCHES,
    REGION,
    SERVICES,
    chart_of,
    pod_templates,
    render,
)

pytestmark = pytest.mark.charts

KOLLA_COMMAND = ["dumb-init", "--single-child", "--", "kolla-entry", "run", "--config"]
CONFIG_DIR = "/var/lib/kolla/config_files/"
CHECKSUM = "checksum/kolla-entry"
SPECIES = ("hypervisor", "network")
PLACEHOLDER = re.compile(r"\$\{(env|file):([^}:]+)(?::-[^}]*)?\}")

# The components issue #6 asks for, as <service>-<component> workload names.
EXPECTED_WORKLOADS = {
    "nova": {"api", "scheduler", "conductor", "novncproxy", "compute"},
    "neutron": {"server", "rpc-server", "periodic-workers", "dhcp-agent", "l3-agent", "metadata-agent",
                "openvswitch-agent"},
    "cinder": {"api", "scheduler", "volume"},
    "designate": {"api", "central", "mdns", "worker", "producer"},
    "ironic": {"api", "conductor"},
    "manila": {"api", "scheduler", "share"},
    "glance": {"api"},
    "placement": {"api"},
    "keystone": {"api"},
    "barbican": {"api"},
    "horizon": {"dashboard"},
}
# Pods that belong on a node species, by <service>/<component>.
ON_SPECIES = {
    "nova/compute": "hypervisor",
    "neutron/dhcp-agent": "network",
    "neutron/l3-agent": "network",
    "neutron/metadata-agent": "network",
    "neutron/openvswitch-agent": "network",
}


def _openstack_pods(objects: List[Dict[str, Any]]) -> Iterator[tuple]:
    for obj, template in pod_templates(objects):
        if chart_of(obj) in SERVICES:
            yield obj, template


def _component(obj: Dict[str, Any]) -> str:
    return f"{chart_of(obj)}/{obj['metadata']['labels']['app.kubernetes.io/component']}"


def _find(objects: List[Dict[str, Any]], kind: str, name: str) -> Dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def _sensitive_values(region_values: Dict[str, Any]) -> Set[str]:
    """Every value the region declares sensitive: global.secrets and openstack.<chart>.secrets."""
    values = set(region_values["global"]["secrets"].values())
    for chart_values in region_values["openstack"].values():
        values |= set((chart_values.get("secrets") or {}).values())
    return {str(v) for v in values}


def test_every_object_validates_against_kubernetes_1_30(region: List[Dict[str, Any]]) -> None:
    failures = []
    for obj in region:
        try:
            kubernetes_validate.validate(obj, "1.30", strict=True)
        except kubernetes_validate.ValidationError as err:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {err}")
    assert failures == []
    assert len(region) > 50


def test_every_service_runs_the_components_operators_need(region: List[Dict[str, Any]]) -> None:
    found: Dict[str, Set[str]] = {service: set() for service in SERVICES}
    for obj, _ in _openstack_pods(region):
        if obj["kind"] != "Job":
            found[chart_of(obj)].add(_component(obj).split("/")[1])
    assert found == EXPECTED_WORKLOADS


def test_every_service_with_a_database_has_a_db_sync_job(region: List[Dict[str, Any]]) -> None:
    jobs = {chart_of(o): o["metadata"]["name"] for o in region
            if o["kind"] == "Job" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "db-sync"}
    assert set(jobs) == set(SERVICES) - {"horizon"}
    for service, name in jobs.items():
        assert re.fullmatch(rf"{service}-db-sync-[0-9a-f]{{10}}", name)


def test_every_openstack_container_starts_kolla_entry(region: List[Dict[str, Any]]) -> None:
    """The command is kolla-entry run with a config.json that the service's ConfigMap holds."""
    seen = 0
    for obj, template in _openstack_pods(region):
        service = chart_of(obj)
        config = _find(region, "ConfigMap", f"{service}-config")["data"]
        for container in template["spec"]["containers"] + template["spec"].get("initContainers", []):
            command = container["command"]
            assert command[:6] == KOLLA_COMMAND, obj["metadata"]["name"]
            assert command[6].startswith(CONFIG_DIR) and len(command) == 7
            config_json = json.loads(config[command[6][len(CONFIG_DIR):]])
            assert config_json["user"] == service and config_json["command"]
            # Config files from the ConfigMap are templates; Secret folders (keystone's keys) are copied as they are.
            assert all(entry.get("template") is (entry["source"].startswith(CONFIG_DIR) or None)
                       for entry in config_json["config_files"])
            seen += 1
    assert seen >= sum(len(c) for c in EXPECTED_WORKLOADS.values())


def test_every_openstack_container_mounts_patches_config_and_secrets(region: List[Dict[str, Any]]) -> None:
    """Patches at /<service>-patches (whole ConfigMap, read-only, no subPath); config; Secret read-only."""
    for obj, template in _openstack_pods(region):
        service = chart_of(obj)
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        for container in template["spec"]["containers"]:
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            expected = {
                f"/{service}-patches": ("configMap", f"{service}-patches"),
                CONFIG_DIR: ("configMap", f"{service}-config"),
                f"/var/lib/kolla/secrets/{service}/": ("secret", f"{service}-secrets"),
            }
            for path, (kind, name) in expected.items():
                mount = mounts[path]
                assert mount.get("readOnly") is True and "subPath" not in mount, (obj["metadata"]["name"], path)
                source = volumes[mount["name"]][kind]
                assert source.get("name", source.get("secretName")) == name


def test_every_openstack_container_gets_pod_values_for_placeholders(region: List[Dict[str, Any]]) -> None:
    for _, template in _openstack_pods(region):
        for container in template["spec"]["containers"]:
            env = {e["name"]: e for e in container["env"]}
            assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
            assert env["KOLLA_CONFIG_STRATEGY"]["value"] == "COPY_ALWAYS"


def test_placeholders_name_mounted_secrets_and_set_variables(region: List[Dict[str, Any]]) -> None:
    """Each ${file:...} in a service's config points into its Secret's mount at a key the Secret has;
    each ${env:...} names a variable its containers set. So kolla-entry can resolve every one."""
    env_names = {"POD_IP", "NODE_NAME", "POD_NAME", "KOLLA_CONFIG_STRATEGY"}
    for service in SERVICES:
        config = _find(region, "ConfigMap", f"{service}-config")["data"]
        secret_keys = set(_find(region, "Secret", f"{service}-secrets").get("data") or {})
        used = 0
        for text in config.values():
            for kind, ref in PLACEHOLDER.findall(text):
                used += 1
                if kind == "env":
                    assert ref in env_names, (service, ref)
                else:
                    folder, _, key = ref.rpartition("/")
                    assert folder == f"/var/lib/kolla/secrets/{service}", (service, ref)
                    assert key in secret_keys, (service, ref)
        assert used, service


def test_patches_configmap_holds_the_repository_patches(region: List[Dict[str, Any]]) -> None:
    """`make charts` vendors patches/<service>/*.patch; the ConfigMap carries them byte for byte."""
    for service in SERVICES:
        data = _find(region, "ConfigMap", f"{service}-patches").get("data") or {}
        expected = {p.name: p.read_text() for p in sorted((PATCHES / service).glob("*.patch"))}
        assert data == expected, service


def test_every_pod_template_has_the_checksum_annotation(region: List[Dict[str, Any]]) -> None:
    for obj, template in pod_templates(region):
        assert re.fullmatch(r"[0-9a-f]{64}", template["metadata"]["annotations"][CHECKSUM]), obj["metadata"]


def _checksums(objects: List[Dict[str, Any]]) -> Dict[str, str]:
    return {_component(o): t["metadata"]["annotations"][CHECKSUM] for o, t in pod_templates(objects)}


def _job_name(objects: List[Dict[str, Any]]) -> str:
    return next(o["metadata"]["name"] for o in objects if o["kind"] == "Job")


def test_checksum_and_db_sync_job_follow_a_patch_change(chart_copy: Path, umbrella_values: Dict[str, Any]) -> None:
    """Adding or editing a patch rolls every pod of the service and names a new db-sync Job."""
    before = render(chart_copy, umbrella_values)
    assert render(chart_copy, umbrella_values) == before  # deterministic: nothing changed, nothing rolls
    patch = chart_copy / "patches" / "9999-test.patch"
    patch.write_text("--- a/keystone/x.py\n+++ b/keystone/x.py\n@@ -1 +1 @@\n-a\n+b\n")
    added = render(chart_copy, umbrella_values)
    patch.write_text("--- a/keystone/x.py\n+++ b/keystone/x.py\n@@ -1 +1 @@\n-a\n+c\n")
    edited = render(chart_copy, umbrella_values)

    checksums = [_checksums(r) for r in (before, added, edited)]
    assert set(checksums[0]) == {"keystone/api", "keystone/bootstrap", "keystone/db-sync"}
    for component in checksums[0]:
        assert len({c[component] for c in checksums}) == 3, component
    assert len({_job_name(r) for r in (before, added, edited)}) == 3
    assert "9999-test.patch" in _find(edited, "ConfigMap", "keystone-patches")["data"]


def test_checksum_follows_config_and_secret_changes(chart_copy: Path, umbrella_values: Dict[str, Any]) -> None:
    base = _checksums(render(chart_copy, umbrella_values))
    config = dict(umbrella_values, conf={"keystone.conf": {"DEFAULT": {"debug": True}}})
    secret = dict(umbrella_values, secrets={"extra": "value"})
    for changed in (config, secret):
        assert _checksums(render(chart_copy, changed))["keystone/api"] != base["keystone/api"]


def test_no_configmap_holds_a_sensitive_value(
    region: List[Dict[str, Any]], region_values: Dict[str, Any]
) -> None:
    """Sensitive values reach pods only through Secrets, and every one of them does reach a Secret."""
    sensitive = _sensitive_values(region_values)
    assert len(sensitive) > 10
    for obj in region:
        if obj["kind"] != "Secret":
            text = json.dumps(obj)
            leaked = sorted(value for value in sensitive if value in text)
            assert leaked == [], f"{obj['kind']}/{obj['metadata']['name']}"
    in_secrets = {
        base64.b64decode(v).decode() for o in region if o["kind"] == "Secret" for v in (o.get("data") or {}).values()
    }
    assert sensitive <= in_secrets


def test_the_region_sets_every_secret_a_chart_uses(region: List[Dict[str, Any]]) -> None:
    for obj in region:
        if obj["kind"] == "Secret":
            empty = sorted(k for k, v in (obj.get("data") or {}).items() if not base64.b64decode(v))
            assert empty == [], obj["metadata"]["name"]


_SECRET_KEY = re.compile(r"password|secret|kek|token|_key$", re.IGNORECASE)


def _secret_leaves(values: Any, path: str = "") -> Iterator[str]:
    """
    Paths of values that look like secrets but are neither kolla-entry ${file:...} placeholders nor
    templates (a template's result is checked in the rendered config files).
    """
    if isinstance(values, dict):
        for key, value in values.items():
            here = f"{path}.{key}"
            if key == "secrets" and value:
                yield here
            elif key == "secretName":  # the name of a Secret a volume mounts, not a value
                continue
            elif isinstance(value, (str, int, float)) and _SECRET_KEY.search(str(key)):
                if str(value) and "${file:" not in str(value) and "{{" not in str(value):
                    yield here
            else:
                yield from _secret_leaves(value, here)
    elif isinstance(values, list):
        for index, item in enumerate(values):
            yield from _secret_leaves(item, f"{path}[{index}]")


def test_no_chart_but_the_region_holds_a_secret(build: Any) -> None:
    """Value layering rules 3 and 4: no password or key anywhere but the region chart, not even a default."""
    offenders = []
    for name, chart_dir in build.chart_dirs(CHARTS).items():
        if name != REGION:
            offenders += [f"{name}{p}" for p in _secret_leaves(yaml.safe_load((chart_dir / "values.yaml").read_text()))]
    assert offenders == []


def test_secret_options_in_config_files_are_placeholders(region: List[Dict[str, Any]]) -> None:
    """Every oslo option that carries a credential is a ${file:...} placeholder, never a literal."""
    option = re.compile(r"^(\S*(?:password|secret|kek|_key)|connection|transport_url)\s*=\s*(.*)$", re.M | re.I)
    checked = 0
    for service in SERVICES:
        for name, text in _find(region, "ConfigMap", f"{service}-config")["data"].items():
            if name.endswith(".json"):
                continue
            for key, value in option.findall(text):
                checked += 1
                assert "${file:/var/lib/kolla/secrets/" in value, (service, name, key)
    assert checked > 30


def test_only_compute_and_network_agents_tolerate_their_species(
    region: List[Dict[str, Any]], region_values: Dict[str, Any]
) -> None:
    pinned = {f"nova-compute-{h['name']}": h["hostname"] for h in region_values["global"]["hypervisors"]}
    for obj, template in pod_templates(region):
        spec = template["spec"]
        species = ON_SPECIES.get(_component(obj))
        tolerated = {t.get("value") for t in spec.get("tolerations", []) if t.get("key") == "species"}
        selector = spec.get("nodeSelector", {})
        if species:
            assert tolerated == {species} and selector.get("species") == species, obj["metadata"]["name"]
        else:
            assert tolerated == set() and "species" not in selector, obj["metadata"]["name"]
            terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            expression = terms["nodeSelectorTerms"][0]["matchExpressions"][0]
            assert expression == {"key": "species", "operator": "NotIn", "values": list(SPECIES)}
        assert selector.get("kubernetes.io/hostname") == pinned.get(obj["metadata"]["name"])
    computes = [o["metadata"]["name"] for o, _ in pod_templates(region) if _component(o) == "nova/compute"]
    assert sorted(computes) == sorted(pinned)


def test_images_come_from_the_region_registry(
    region: List[Dict[str, Any]], region_values: Dict[str, Any]
) -> None:
    registry = region_values["global"]["registry"] + "/"
    images = [
        c["image"]
        for _, template in pod_templates(region)
        for c in template["spec"]["containers"] + template["spec"].get("initContainers", [])
    ]
    assert images and [i for i in images if not i.startswith(registry)] == []


def _object_keys(objects: List[Dict[str, Any]]) -> Set[tuple]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


@pytest.mark.parametrize("chart", [*SERVICES, *INFRA])
def test_disabling_a_chart_removes_all_its_objects(
    built_charts: Path, region: List[Dict[str, Any]], chart: str
) -> None:
    reduced = render(built_charts / REGION, {"openstack": {chart: {"enabled": False}}})
    assert [o for o in reduced if chart_of(o) == chart] == []
    others = [o for o in region if chart_of(o) != chart]
    assert _object_keys(reduced) == _object_keys(others)


def test_a_component_can_be_pinned_to_one_node(chart_copy: Path, umbrella_values: Dict[str, Any]) -> None:
    """`components.<c>.hostname` pins a pod to one node; it still stays off the tainted species."""
    values = dict(umbrella_values, components={"api": {"hostname": "node-a"}})
    api = _find(render(chart_copy, values), "Deployment", "keystone-api")["spec"]["template"]["spec"]
    assert api["nodeSelector"] == {"kubernetes.io/hostname": "node-a"}
    assert "tolerations" not in api and api["affinity"]["nodeAffinity"]
