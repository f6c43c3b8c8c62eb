"""
Hardened pods (issue #16, charts/README.md "Hardened pods"): every rendered pod of the example region that claims
hardening passes the Pod Security Standards "restricted" profile (which includes "baseline"), written out here
from the published standard; the pods that do not claim it are exactly the documented exceptions; the region
switch global.hardening.enabled turns it all off.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from tests.charts.conftest import CHARTS, REGION, REPO, SERVICES, chart_of, pod_templates, render

# Pod Security Standards, restricted profile: the only volume types allowed.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
# Baseline: the sysctls a pod may set ("safe" sysctls).
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
OVERLAY = "/var/lib/kolla-entry/overlay"
# The components that keep privileges (charts/README.md "Hardened pods"); every other OpenStack pod is hardened.
PRIVILEGED = {("cinder", "volume"), ("ironic", "conductor"), ("manila", "share"), ("neutron", "openvswitch-agent"),
              ("neutron", "l3-agent"), ("neutron", "dhcp-agent"), ("neutron", "metadata-agent"), ("nova", "compute")}


def restricted_violations(pod: Dict[str, Any]) -> List[str]:
    """What in one pod spec breaks the Pod Security Standards "restricted" profile (baseline included)."""
    bad: List[str] = []
    spec = pod["spec"]
    psc = spec.get("securityContext") or {}
    containers = [*spec.get("initContainers", []), *spec.get("containers", []), *spec.get("ephemeralContainers", [])]
    # Baseline: host namespaces, hostPath, host ports, privileged, capabilities, /proc, SELinux, seccomp, sysctls.
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            bad.append(f"{field}: true")
    if psc.get("windowsOptions", {}).get("hostProcess"):
        bad.append("windowsOptions.hostProcess")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if "hostPath" in kinds:
            bad.append(f"volume {volume['name']}: hostPath")
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume {volume['name']}: type {sorted(kinds - RESTRICTED_VOLUMES)} not allowed")
    for sysctl in psc.get("sysctls", []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            bad.append(f"sysctl {sysctl.get('name')}")
    contexts = [("pod", psc)]
    for c in containers:
        sc = c.get("securityContext") or {}
        contexts.append((f"container {c['name']}", sc))
        where = f"container {c['name']}"
        if sc.get("privileged"):
            bad.append(f"{where}: privileged")
        if sc.get("windowsOptions", {}).get("hostProcess"):
            bad.append(f"{where}: windowsOptions.hostProcess")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                bad.append(f"{where}: hostPort {port['hostPort']}")
        if sc.get("procMount", "Default") != "Default":
            bad.append(f"{where}: procMount {sc['procMount']}")
        # Restricted: no escalation, non-root, capabilities dropped.
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{where}: allowPrivilegeEscalation is not false")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            bad.append(f"{where}: runAsNonRoot is not true")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{where}: capabilities do not drop ALL")
        added = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            bad.append(f"{where}: capabilities add {sorted(added)}")
        profile = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if profile not in {"RuntimeDefault", "Localhost"}:
            bad.append(f"{where}: seccompProfile {profile}")
    for where, sc in contexts:
        if sc.get("runAsUser") == 0:
            bad.append(f"{where}: runAsUser 0")
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            bad.append(f"{where}: seLinuxOptions {selinux}")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            bad.append(f"{where}: seccompProfile Unconfined")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            bad.append(f"{where}: appArmorProfile Unconfined")
    return bad


def claims_hardening(pod: Dict[str, Any]) -> bool:
    """A pod claims hardening when it says it runs as non-root or any container has a read-only root."""
    spec = pod["spec"]
    return bool((spec.get("securityContext") or {}).get("runAsNonRoot")) or any(
        (c.get("securityContext") or {}).get("readOnlyRootFilesystem") for c in spec["containers"])


def kolla_uid(service: str) -> int:
    match = re.search(r"^SERVICE_UID=(\d+)$", (REPO / "images" / service / "image.env").read_text(), re.M)
    assert match, service
    return int(match.group(1))


def component(obj: Dict[str, Any]) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


def openstack_pods(objects: List[Dict[str, Any]]) -> List[tuple]:
    return [(obj, pod) for obj, pod in pod_templates(objects) if chart_of(obj) in SERVICES]


def test_checker_catches_each_rule(region: List[Dict[str, Any]]) -> None:
    """The rules can fail: a hardened pod passes, and each single breach of it is reported."""
    pod = next(p for o, p in openstack_pods(region) if claims_hardening(p))
    assert restricted_violations(pod) == []
    breaches = {
        "hostNetwork": lambda p: p["spec"].update(hostNetwork=True),
        "hostPath": lambda p: p["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "privileged": lambda p: p["spec"]["containers"][0]["securityContext"].update(privileged=True),
        "allowPrivilegeEscalation": lambda p: p["spec"]["containers"][0]["securityContext"].pop(
            "allowPrivilegeEscalation"),
        "capabilities add": lambda p: p["spec"]["containers"][0]["securityContext"]["capabilities"].update(
            add=["NET_ADMIN"]),
        "capabilities do not drop": lambda p: p["spec"]["containers"][0]["securityContext"].pop("capabilities"),
        "runAsNonRoot": lambda p: p["spec"]["containers"][0]["securityContext"].update(runAsNonRoot=False),
        "runAsUser 0": lambda p: p["spec"]["securityContext"].update(runAsUser=0),
        "seccompProfile": lambda p: (p["spec"]["securityContext"].pop("seccompProfile"),
                                     p["spec"]["containers"][0]["securityContext"].pop("seccompProfile")),
        "hostPort": lambda p: p["spec"]["containers"][0].setdefault("ports", []).append(
            {"containerPort": 1, "hostPort": 1}),
    }
    for rule, breach in breaches.items():
        broken = copy.deepcopy(pod)
        breach(broken)
        found = restricted_violations(broken)
        assert any(rule in v for v in found), (rule, found)
    # NET_BIND_SERVICE is the one capability restricted allows.
    allowed = copy.deepcopy(pod)
    allowed["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    assert restricted_violations(allowed) == []


def test_every_pod_claiming_hardening_is_restricted(region: List[Dict[str, Any]]) -> None:
    """Pod Security Standards "restricted" for every OpenStack pod of the region that claims hardening."""
    claiming = [(o, p) for o, p in openstack_pods(region) if claims_hardening(p)]
    assert claiming
    failures = {o["metadata"]["name"]: v for o, p in claiming if (v := restricted_violations(p))}
    assert failures == {}


def test_hardened_pods_are_exactly_the_unprivileged_ones(region: List[Dict[str, Any]]) -> None:
    """Every OpenStack pod of the region is hardened except the privileged components, in every chart."""
    seen = set()
    for obj, pod in openstack_pods(region):
        key = (chart_of(obj), component(obj))
        seen.add(key)
        assert claims_hardening(pod) == (key not in PRIVILEGED), obj["metadata"]["name"]
    assert seen >= PRIVILEGED, PRIVILEGED - seen
    assert {chart for chart, _ in seen} == set(SERVICES)


def test_hardened_pods_run_as_the_kolla_uid_with_writable_emptydirs(region: List[Dict[str, Any]]) -> None:
    """The uid/gid are the image's service user; the overlay, state, config, /tmp and service state are emptyDirs."""
    for obj, pod in openstack_pods(region):
        if not claims_hardening(pod):
            continue
        service = chart_of(obj)
        uid = kolla_uid(service)
        chart_values = yaml.safe_load((CHARTS / service / "values.yaml").read_text())
        spec = pod["spec"]
        psc = spec["securityContext"]
        assert (psc["runAsUser"], psc["runAsGroup"], psc["fsGroup"]) == (uid, uid, uid), obj["metadata"]["name"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        (container,) = spec["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and (sc["runAsUser"], sc["runAsGroup"]) == (uid, uid)
        writable = {m["mountPath"] for m in container["volumeMounts"]
                    if not m.get("readOnly") and "emptyDir" in volumes[m["name"]]}
        wanted = {OVERLAY, "/run/kolla-entry", chart_values["configDir"], "/tmp", f"/var/lib/{service}"}
        assert wanted <= writable, (obj["metadata"]["name"], wanted - writable)
        # Every read-write mount is an emptyDir (nothing else of the pod is writable).
        assert all(m.get("readOnly") or "emptyDir" in volumes[m["name"]] for m in container["volumeMounts"])
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["KOLLA_ENTRY_OVERLAY"] == OVERLAY and env["KOLLA_CONFIG_STRATEGY"] == "COPY_ALWAYS"


def test_chart_uid_is_the_image_uid() -> None:
    for service in SERVICES:
        values = yaml.safe_load((CHARTS / service / "values.yaml").read_text())
        assert values["uid"] == kolla_uid(service), service


def test_hardened_config_copies_the_image_config_files_first(region: List[Dict[str, Any]]) -> None:
    """configDir is an emptyDir: the image's files (paste ini, rootwrap) are copied there before the chart's."""
    config = next(o for o in region if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nova-config")
    api = json.loads(config["data"]["api.json"])
    first = api["config_files"][0]
    assert first["source"] == "/var/lib/kolla/venv/etc/nova/*" and first["dest"] == "/etc/nova/"
    assert first["merge"] is True and first["optional"] is True and api["user"] == "nova"
    assert any(f["dest"] == "/etc/nova/nova.conf" for f in api["config_files"][1:])
    # A privileged component keeps the image's configDir: no copy.
    compute = json.loads(config["data"]["compute.json"])
    assert all(not f["source"].startswith("/var/lib/kolla/venv/etc/") for f in compute["config_files"])


def test_region_switch_turns_hardening_off(built_charts: Path) -> None:
    """global.hardening.enabled: false renders no hardened pod, no overlay and no image-file copy."""
    objects = render(built_charts / REGION, {"global": {"hardening": {"enabled": False}}})
    pods = openstack_pods(objects)
    assert pods
    for obj, pod in pods:
        assert not claims_hardening(pod), obj["metadata"]["name"]
        assert "securityContext" not in pod["spec"], obj["metadata"]["name"]
        for container in pod["spec"]["containers"]:
            assert "KOLLA_ENTRY_OVERLAY" not in {e["name"] for e in container["env"]}
            assert OVERLAY not in {m["mountPath"] for m in container["volumeMounts"]}
    for obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].endswith("-config"):
            for key, text in obj["data"].items():
                if key.endswith(".json"):
                    assert "/var/lib/kolla/venv/etc/" not in text, (obj["metadata"]["name"], key)


@pytest.mark.parametrize("name", ["keystone", "horizon"])
def test_chart_switch_turns_hardening_off(built_charts: Path, name: str) -> None:
    """A chart's own hardening.enabled: false turns it off for that chart only."""
    objects = render(built_charts / name, {"hardening": {"enabled": False}})
    assert all(not claims_hardening(p) for _, p in pod_templates(objects))
    assert any(claims_hardening(p) for _, p in pod_templates(render(built_charts / name)))


def test_horizon_serves_the_static_files_the_image_compressed() -> None:
    """A read-only dashboard: the chart's STATIC_ROOT is where the image build collected and compressed offline."""
    setup = (REPO / "images" / "horizon" / "setup.sh").read_text()
    static = re.search(r"^static=(\S+)$", setup, re.M)
    assert static is not None
    settings = yaml.safe_load((CHARTS / "horizon" / "values.yaml").read_text())["conf"]["local_settings.py"]
    assert f'STATIC_ROOT = "{static.group(1)}"' in settings and "COMPRESS_OFFLINE = True" in settings
    assert "django-admin compress" in setup and "COMPRESS_OFFLINE = True" in setup
    # Outside every writable folder of the hardened pod, so no emptyDir hides it.
    assert not static.group(1).startswith(("/var/lib/horizon", "/etc/openstack-dashboard", "/tmp"))
