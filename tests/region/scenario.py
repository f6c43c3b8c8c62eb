"""
The region test's scenario: python-openstackclient (work/region/osc, tests/region/client-requirements.txt)
as the region's admin against the catalog's public endpoints, which are the Services' names: the client
runs in a mount namespace of its own whose /etc/hosts holds the Services (as a pod's does).

```
token issue ─> catalog (every enabled chart's service type) ─> image upload + download, byte-identical
─> network + subnet ─> flavor ─> hypervisor up and mapped into cell1 ─> server --nic none ACTIVE
─> hypervisor show: the nova hot-fix's resources ─> server delete ─> kolla-entry status in every nova pod
─> (region-test-all) each other service answers an authenticated list call; horizon logs the admin in
```
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Tuple

import yaml

from tests.region.kubelet import REPO, logs, podman

if TYPE_CHECKING:
    from tests.region.run import Region

Result = Tuple[bool, str]
# The nova hot-fix the scenario sees through the API (patches/nova/0002-fake-driver-host-size.patch).
HOTFIX = "0002-fake-driver-host-size.patch"
HOTFIX_VCPUS, HOTFIX_MEMORY_MB = 48, 65536
# A list call per other service of region-test-all: the path below its public endpoint, extra headers.
LIST_CALLS: Dict[str, List[str]] = {
    "block-storage": ["/volumes"],
    "key-manager": ["/v1/secrets"],
    "dns": ["/v2/zones"],
    "baremetal": ["/v1/nodes"],
    "shared-file-system": ["/shares", "X-OpenStack-Manila-API-Version=2.60"],
}
HTTP_CALLS = Path(__file__).resolve().parent / "http_calls.py"
WAIT = 300.0


class Client:
    """`openstack` as the region's admin, resolving the Services' names through the region's hosts file."""

    def __init__(self, region: Region, work: Path) -> None:
        self.work = work
        self.hosts = work / "client-hosts"
        self.hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {host}\n" for host, ip in region.hosts))
        region_values = yaml.safe_load((REPO / "charts" / "europe-example-region" / "values.yaml").read_text())
        umbrella = yaml.safe_load((REPO / "charts" / "openstack" / "values.yaml").read_text())
        password = region.sources.secrets["keystone-secrets"]["keystone_admin_password"].decode()
        self.env = dict(os.environ, OS_AUTH_URL=f"http://{umbrella['global']['endpoints']['identity']}/v3",
                        OS_USERNAME="admin", OS_PASSWORD=password, OS_PROJECT_NAME="admin",
                        OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default",
                        OS_REGION_NAME=region_values["global"]["region"], OS_IDENTITY_API_VERSION="3",
                        OS_INTERFACE="public")
        self.openstack = work / "osc" / "bin" / "openstack"

    def run(self, *args: str, timeout: float = 300, program: bool = False) -> subprocess.CompletedProcess[str]:
        """`openstack ARGS` (or, with ``program``, the command ARGS) with the region's hosts file."""
        command = ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(self.hosts),
                   *([] if program else [str(self.openstack)]), *args]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)

    def json(self, *args: str) -> Any:
        result = self.run(*args, "-f", "json")
        if result.returncode != 0:
            raise RuntimeError(f"openstack {' '.join(args)}: exit {result.returncode}: {result.stderr[-1500:]}")
        return json.loads(result.stdout)


def step(results: List[Result], what: str, action: Callable[[], Tuple[bool, str]],
         say: Callable[[str], None]) -> bool:
    """Run one step, time it, record PASS/FAIL with its detail (an exception is a failure with its text)."""
    began = time.monotonic()
    try:
        ok, detail = action()
    except (RuntimeError, subprocess.TimeoutExpired, KeyError, ValueError) as err:
        ok, detail = False, str(err)
    results.append((ok, f"{what} ({detail})" if ok else f"{what}: {detail}"))
    say(f"{'PASS' if ok else 'FAIL'} {what} ({time.monotonic() - began:.1f} s)")
    return ok


def expected_types(region: Region) -> List[str]:
    """identity, and the catalog type of every chart of the region that registers itself."""
    charts = sorted({p.chart for p in region.pods})
    types = ["identity"]
    for chart in charts:
        values = yaml.safe_load((REPO / "charts" / chart / "values.yaml").read_text())
        if values.get("registration", {}).get("enabled"):
            types.append(values["registration"]["serviceType"])
    return types


def run(region: Region, work: Path, say: Callable[[str], None]) -> List[Result]:
    client = Client(region, work)
    results: List[Result] = []
    types = expected_types(region)

    def token() -> Tuple[bool, str]:
        issued = client.json("token", "issue")
        return bool(issued.get("id")), f"project {issued.get('project_id')}"

    def catalog() -> Tuple[bool, str]:
        found = {entry["Type"] for entry in client.json("catalog", "list")}
        return set(types) <= found, f"has {', '.join(sorted(found))}; expected {', '.join(types)}"

    if not step(results, "token issue as the region's admin", token, say):
        return results
    step(results, "the catalog lists every enabled service", catalog, say)
    step(results, "glance: an image uploaded is downloaded byte-identical", lambda: image(client), say)
    step(results, "neutron: network and subnet created", lambda: network(client), say)
    core_scenario(client, region, results, say, work)
    for service_type in types:
        if service_type not in {"identity", "image", "placement", "compute", "network"}:
            step(results, f"{service_type}: an authenticated list call answers",
                 lambda t=service_type: list_call(client, t), say)  # type: ignore[misc]
    if any(p.chart == "horizon" for p in region.pods):
        step(results, "horizon: the login page loads and the admin logs in", lambda: horizon(client, region), say)
    return results


def image(client: Client) -> Tuple[bool, str]:
    upload, download = client.work / "image.raw", client.work / "image.out"
    upload.write_bytes(os.urandom(1 << 20))
    download.unlink(missing_ok=True)
    client.json("image", "create", "--disk-format", "raw", "--container-format", "bare", "--file", str(upload),
                "rt-image")
    saved = client.run("image", "save", "--file", str(download), "rt-image")
    if saved.returncode != 0:
        return False, saved.stderr[-1500:]
    return download.read_bytes() == upload.read_bytes(), f"{download.stat().st_size} bytes"


def network(client: Client) -> Tuple[bool, str]:
    net = client.json("network", "create", "rt-net")
    subnet = client.json("subnet", "create", "--network", "rt-net", "--subnet-range", "192.0.2.0/24", "rt-subnet")
    return net.get("status") == "ACTIVE" and subnet.get("cidr") == "192.0.2.0/24", \
        f"network {net.get('status')}, subnet {subnet.get('cidr')}"


def core_scenario(client: Client, region: Region, results: List[Result], say: Callable[[str], None],
                  work: Path) -> None:
    """Flavor, the fake hypervisor, a server ACTIVE and deleted, and the nova hot-fix."""
    computes = [p for p in region.pods
                if p.chart == "nova" and p.labels.get("app.kubernetes.io/component") == "compute"]
    if not computes:
        return
    host = computes[0].node.name
    scheduler = next(p for p in region.pods if p.owner == "nova-scheduler")

    def flavor() -> Tuple[bool, str]:
        made = client.json("flavor", "create", "--ram", "64", "--vcpus", "1", "--disk", "1", "rt-tiny")
        return made.get("name") == "rt-tiny", f"{made.get('vcpus')} vCPU, {made.get('ram')} MB"

    def hypervisor() -> Tuple[bool, str]:
        # Up in `hypervisor list`, then mapped into cell1 by the scheduler's periodic discovery (its log says
        # so): only a mapped host can be scheduled to.
        deadline, listed = time.monotonic() + WAIT, []
        while time.monotonic() < deadline:
            listed = client.json("hypervisor", "list")
            up = [h for h in listed if h.get("Hypervisor Hostname") == host and h.get("State") == "up"]
            # The log of every run of the scheduler: a restarted one does not discover the host again.
            saved = work / "logs" / f"{scheduler.name}.log"
            said = logs(scheduler.cname) + (saved.read_text(errors="replace") if saved.exists() else "")
            if up and f"cell1:{host}" in said:
                return True, f"{host}: type {up[0].get('Hypervisor Type')}, up, mapped into cell1"
            time.sleep(5)
        return False, f"{host} not up and mapped within {WAIT:.0f} s; hypervisor list: {listed}"

    def server() -> Tuple[bool, str]:
        made = client.json("server", "create", "--flavor", "rt-tiny", "--image", "rt-image", "--nic", "none",
                           "--wait", "rt-server")
        where = made.get("OS-EXT-SRV-ATTR:hypervisor_hostname")
        return made.get("status") == "ACTIVE" and where == host, f"status {made.get('status')} on {where}"

    def hotfix() -> Tuple[bool, str]:
        # vcpus and memory_mb are in the hypervisor's answer up to microversion 2.87.
        ids = [h["ID"] for h in client.json("hypervisor", "list") if h.get("Hypervisor Hostname") == host]
        shown = client.json("--os-compute-api-version", "2.87", "hypervisor", "show", str(ids[0]))
        vcpus, memory = shown.get("vcpus"), shown.get("memory_mb")
        return (vcpus, memory) == (HOTFIX_VCPUS, HOTFIX_MEMORY_MB), \
            f"vcpus {vcpus}, memory_mb {memory}; the fake driver's own are 1000 and 800000"

    def delete() -> Tuple[bool, str]:
        gone = client.run("server", "delete", "--wait", "rt-server")
        left = client.json("server", "list")
        return gone.returncode == 0 and not left, f"exit {gone.returncode}, {len(left)} server(s) left"

    step(results, "nova: flavor created", flavor, say)
    if step(results, "nova: the fake hypervisor is up and in cell1", hypervisor, say) \
            and step(results, "nova: server create --nic none reaches ACTIVE on the fake hypervisor", server, say):
        step(results, f"nova hot-fix {HOTFIX}: hypervisor show gives its resources", hotfix, say)
        step(results, "nova: the server is deleted", delete, say)
    nova = [p for p in region.pods if p.chart == "nova" and p.kind != "Job"]
    step(results, f"kolla-entry status in every nova pod shows {HOTFIX} applied",
         lambda: statuses(nova), say)


def statuses(pods: List[Any]) -> Tuple[bool, str]:
    """`kolla-entry status --json` in each pod: the hot-fix applied."""
    seen = []
    for pod in pods:
        result = podman("exec", pod.cname, "kolla-entry", "status", "--json")
        try:
            state = json.loads(result.stdout)
            entries = state["patches"]["patches"] if isinstance(state["patches"], dict) else state["patches"]
            status = {Path(e["patch"]).name: e["status"] for e in entries}.get(HOTFIX, "absent")
        except (ValueError, KeyError, TypeError):
            status = f"no state (exit {result.returncode}: {(result.stdout + result.stderr)[-300:]})"
        seen.append(f"{pod.name} {status}")
    return all(s.endswith(" applied") for s in seen), "; ".join(seen)


def list_call(client: Client, service_type: str) -> Tuple[bool, str]:
    """An authenticated list call to one service, through the catalog's public endpoint."""
    path, *headers = LIST_CALLS[service_type]
    result = client.run(sys.executable, str(HTTP_CALLS), "list", service_type, path, *headers, program=True)
    return result.returncode == 0, (result.stdout + result.stderr).strip()[-400:]


def horizon(client: Client, region: Region) -> Tuple[bool, str]:
    """horizon's login page through its Service, and the admin's login."""
    service = next(host for host, _ in region.hosts if host.startswith("horizon-"))
    port = next(p for p in region.pods if p.chart == "horizon").port("api")
    result = client.run(sys.executable, str(HTTP_CALLS), "horizon", f"http://{service}:{port}", program=True)
    return result.returncode == 0, (result.stdout + result.stderr).strip()[-400:]
