"""
The rendered region on podman (issue #15): `make region-test` (core) and `make region-test-all`.

```
charts/europe-example-region + tests/region/values.yaml ──(real Helm engine)──> objects
objects ──> nodes (node-control + every kubernetes.io/hostname a nodeSelector names, tainted species)
        ──> pods: Deployment/StatefulSet replicas, one DaemonSet pod per fitting node, one per Job
        ──> Services: name, name.ns, name.ns.svc, name.ns.svc.cluster.local -> the backing pod's address
pods ──> podman containers (tests/region/kubelet.py), all started at once as `helm install` would;
         each pod its own network namespace on one podman bridge with a fixed address (hostNetwork pods:
         the host's), the Services as /etc/hosts entries
supervise: Jobs run to completion (a failed one runs again after a back-off, up to backoffLimit), a
         container that exits is started again with the kubelet's back-off, readinessProbes decide ready
scenario (tests/region/scenario.py): python-openstackclient against the catalog's public endpoints
```

What a kubelet does and this runner does not: Services are host names, not virtual addresses, so a
Service's port must equal its pod's port (checked) and a Service with several replicas would name the first
only (the test values run one each); resources, affinity and liveness probes are not enforced; a pod does not
move once placed.

Exit status 1 on any failure; every container's log is kept under work/region/logs/.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.charts.conftest import build_charts, render  # noqa: E402
from tests.region import scenario  # noqa: E402
from tests.region.kubelet import Obj, PodPlace, Sources, podman, podman_args  # noqa: E402

WORK = REPO / "work" / "region"
LOGS = WORK / "logs"
NAMESPACE = "openstack"
PREFIX = os.environ.get("IMAGE_PREFIX", "localhost/kolla-entry")
TAG = os.environ.get("IMAGE_TAG", "latest")
# Containers and network carry the tag, so that runs of other checkouts on this machine never collide.
NAME = f"kolla-entry-{TAG}-region"
SUBNET = f"10.{200 + zlib.crc32(TAG.encode()) % 50}.{zlib.crc32(TAG.encode()) % 250}"
CONTROL_NODE = "node-control"
BRINGUP_TIMEOUT = float(os.environ.get("REGION_TIMEOUT", "900"))
# The kubelet's back-offs: a crashed container 10 s doubling to 5 min; a failed Job's pod 10 s doubling to 6 min.
CRASH_BACKOFF = (10.0, 300.0)
JOB_BACKOFF = (10.0, 360.0)
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")

started_at = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - started_at:6.0f} s] {text}", flush=True)


@dataclass(frozen=True)
class Node:
    name: str
    labels: Dict[str, str]
    # The taint species=<value>:NoSchedule of the charts' node species (charts/README.md "Node placement").
    species: str = ""

    def fits(self, pod: Obj) -> bool:
        selector = pod.get("nodeSelector", {})
        if any(self.labels.get(k) != v for k, v in selector.items()):
            return False
        return not self.species or any(t.get("key") == "species" and t.get("value") == self.species
                                       for t in pod.get("tolerations", []))


@dataclass
class Pod:
    """One pod of a rendered workload and what the supervisor knows of its one container."""

    name: str
    kind: str
    owner: str
    chart: str
    spec: Obj
    labels: Dict[str, str]
    node: Node
    ip: str
    backoff_limit: int = 6
    runs: int = 0
    failures: int = 0
    next_start: float = 0.0
    started: float = 0.0
    ready: bool = False
    done: bool = False
    failed: bool = False
    last_probe: float = 0.0
    events: List[str] = field(default_factory=list)

    @property
    def container(self) -> Obj:
        (container,) = self.spec["containers"]
        return dict(container)

    @property
    def cname(self) -> str:
        return f"{NAME}-{self.name}"

    @property
    def host_network(self) -> bool:
        return bool(self.spec.get("hostNetwork"))

    @property
    def image(self) -> str:
        # One image per chart (images/README.md): the chart's components all run from it.
        return f"{PREFIX}-{self.chart}:{TAG}"

    def port(self, port: Any) -> int:
        """A container port by number or by name."""
        if isinstance(port, int):
            return port
        for item in self.container.get("ports", []):
            if item.get("name") == port:
                return int(item["containerPort"])
        raise KeyError(f"pod {self.name}: no container port named {port!r}")


def render_region(values_files: List[Path], work: Path) -> List[Obj]:
    """The region chart built under ``work`` and rendered by the real Helm engine with the test values
    (later files win)."""
    charts = build_charts(work / "charts")
    values: Obj = {}
    for path in values_files:
        values = merge(values, yaml.safe_load(path.read_text()))
    return render(charts / "europe-example-region", values)


def merge(base: Obj, over: Obj) -> Obj:
    """Helm's merge of values files: maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def nodes_of(objects: List[Obj]) -> List[Node]:
    """The control node, and one node per kubernetes.io/hostname a pod is pinned to (with its species)."""
    found = {CONTROL_NODE: Node(CONTROL_NODE, {"kubernetes.io/hostname": CONTROL_NODE})}
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            selector = obj["spec"]["template"]["spec"].get("nodeSelector", {})
            host = selector.get("kubernetes.io/hostname")
            if host and host not in found:
                found[host] = Node(host, dict(selector), selector.get("species", ""))
    return list(found.values())


def pods_of(objects: List[Obj], nodes: List[Node]) -> List[Pod]:
    """Every pod the workloads ask for, each on the first node it fits, each with a fixed address."""
    pods: List[Pod] = []
    for obj in objects:
        if obj["kind"] not in WORKLOADS:
            continue
        owner, spec = obj["metadata"]["name"], obj["spec"]["template"]["spec"]
        if len(spec["containers"]) != 1 or spec.get("initContainers"):
            raise RuntimeError(f"{obj['kind']} {owner}: the runner runs pods of one container and no init "
                               "containers; extend tests/region/run.py before rendering such a pod")
        fitting = [n for n in nodes if n.fits(spec)]
        if obj["kind"] == "DaemonSet":
            names = [(f"{owner}-{n.name}", n) for n in fitting]
        elif not fitting:
            raise RuntimeError(f"{obj['kind']} {owner}: no node fits its nodeSelector/tolerations "
                               f"({spec.get('nodeSelector')}); nodes: {[n.name for n in nodes]}")
        elif obj["kind"] == "Job":
            names = [(owner, fitting[0])]
        else:
            names = [(f"{owner}-{i}", fitting[0]) for i in range(obj["spec"].get("replicas", 1))]
        for name, node in names:
            ip = f"{SUBNET}.1" if spec.get("hostNetwork") else f"{SUBNET}.{10 + len(pods)}"
            pods.append(Pod(name, obj["kind"], owner, obj["metadata"]["labels"]["app.kubernetes.io/name"], spec,
                            dict(obj["spec"]["template"]["metadata"].get("labels", {})), node, ip,
                            backoff_limit=obj["spec"].get("backoffLimit", 6)))
    return pods


def service_hosts(objects: List[Obj], pods: List[Pod]) -> List[Tuple[str, str]]:
    """(host name, address) of every Service with a backing pod, in the four forms a pod can resolve."""
    hosts = []
    for svc in (o for o in objects if o["kind"] == "Service"):
        name, selector = svc["metadata"]["name"], svc["spec"].get("selector", {})
        backing = [p for p in pods if p.kind != "Job" and all(p.labels.get(k) == v for k, v in selector.items())]
        if not backing:
            continue
        for port in svc["spec"].get("ports", []):
            target = backing[0].port(port.get("targetPort", port["port"]))
            if target != port["port"]:
                raise RuntimeError(f"Service {name}: port {port['port']} goes to pod port {target}; the runner's "
                                   "Services are host names, so the two must be equal")
        for form in (name, f"{name}.{NAMESPACE}", f"{name}.{NAMESPACE}.svc", f"{name}.{NAMESPACE}.svc.cluster.local"):
            hosts.append((form, backing[0].ip))
    return hosts


class Region:
    """The pods of a rendered region, run and supervised with podman."""

    def __init__(self, objects: List[Obj]) -> None:
        self.objects = objects
        self.sources = Sources.of(objects)
        self.nodes = nodes_of(objects)
        self.pods = pods_of(objects, self.nodes)
        self.hosts = service_hosts(objects, self.pods)

    def pod(self, owner: str) -> Pod:
        return next(p for p in self.pods if p.owner == owner or p.name == owner)

    def start(self, pod: Pod) -> None:
        podman("rm", "--force", "--ignore", "--time", "0", pod.cname)
        fields = {"status.podIP": pod.ip, "spec.nodeName": pod.node.name, "metadata.name": pod.name}
        if pod.host_network:
            network = ["--network", "host", "--hostname", pod.node.name]
        else:
            network = ["--network", NAME, "--ip", pod.ip, "--hostname", pod.name]
        hosts = [arg for host, ip in self.hosts for arg in ("--add-host", f"{host}:{ip}")]
        args = podman_args(pod.spec, pod.container, self.sources, PodPlace(WORK / "run", pod.name, pod.node.name),
                           fields)
        result = podman("run", "-d", "--name", pod.cname, *network, *hosts, *args, pod.image,
                        *pod.container.get("args", []))
        pod.runs += 1
        pod.started = time.monotonic()
        pod.ready = False
        if result.returncode != 0:
            raise RuntimeError(f"pod {pod.name}: podman run failed: {result.stderr.strip()}")

    def save_log(self, pod: Pod, note: str) -> None:
        """Append the container's output to work/region/logs/<pod>.log (before it is replaced)."""
        result = podman("logs", pod.cname)
        LOGS.mkdir(parents=True, exist_ok=True)
        with (LOGS / f"{pod.name}.log").open("a") as out:
            out.write(f"----- {pod.cname} run {pod.runs}: {note}\n{result.stdout}{result.stderr}")

    def states(self) -> Dict[str, Tuple[str, int]]:
        """container name -> (state, exit code) for this region's containers."""
        result = podman("ps", "-a", "--filter", f"name=^{NAME}-", "--format", "json")
        return {c["Names"][0]: (c["State"], int(c.get("ExitCode", 0))) for c in json.loads(result.stdout or "[]")}

    def probe(self, pod: Pod, now: float) -> bool:
        """The container's readinessProbe (tcpSocket, httpGet or exec), from the node as the kubelet does;
        ready once it passes; a pod without one is ready when running."""
        probe = pod.container.get("readinessProbe")
        if not probe:
            return True
        if now - pod.started < probe.get("initialDelaySeconds", 0) or now - pod.last_probe < 3:
            return False
        pod.last_probe = now
        timeout = float(probe.get("timeoutSeconds", 1))
        address = "127.0.0.1" if pod.host_network else pod.ip
        if "tcpSocket" in probe:
            try:
                socket.create_connection((address, pod.port(probe["tcpSocket"]["port"])), timeout).close()
                return True
            except OSError:
                return False
        if "httpGet" in probe:
            get = probe["httpGet"]
            try:
                with urllib.request.urlopen(f"http://{address}:{pod.port(get['port'])}{get.get('path', '/')}",
                                            timeout=timeout) as answer:
                    return 200 <= int(answer.status) < 400
            except OSError:
                return False
        command = probe["exec"]["command"]
        return bool(podman("exec", pod.cname, *command, timeout=max(timeout, 30)).returncode == 0)

    def step(self, now: float) -> None:
        """One pass of the supervisor: starts due, exits handled, probes run."""
        states = self.states()
        for pod in self.pods:
            if pod.done or pod.failed:
                continue
            state, code = states.get(pod.cname, ("missing", -1))
            if state == "running":
                if pod.kind != "Job" and not pod.ready and self.probe(pod, now):
                    pod.ready = True
                    say(f"{pod.name}: ready (run {pod.runs})")
                continue
            if state in ("exited", "stopped") and pod.next_start <= pod.started:
                self.exited(pod, code, now)
            elif state in ("exited", "stopped", "missing") and pod.next_start <= now:
                self.start(pod)

    def exited(self, pod: Pod, code: int, now: float) -> None:
        """A container ended: a Job completes or runs again; any other pod's container restarts after a
        back-off (reset after 10 minutes of running, as the kubelet does)."""
        self.save_log(pod, f"exit {code}")
        pod.ready = False
        if pod.kind == "Job" and code == 0:
            pod.done = True
            say(f"{pod.name}: Job complete ({now - started_at:.0f} s after the start)")
            podman("rm", "--ignore", pod.cname)
            return
        if now - pod.started > 600:
            pod.failures = 0
        pod.failures += 1
        if pod.kind == "Job" and pod.failures > pod.backoff_limit:
            pod.failed = True
            say(f"{pod.name}: Job failed {pod.failures} times (backoffLimit {pod.backoff_limit})")
            return
        first, cap = JOB_BACKOFF if pod.kind == "Job" else CRASH_BACKOFF
        delay = min(first * 2 ** (pod.failures - 1), cap)
        pod.next_start = now + delay
        say(f"{pod.name}: exited {code} (run {pod.runs}); starts again in {delay:.0f} s")

    def up(self) -> bool:
        return all(p.done or (p.kind != "Job" and p.ready) for p in self.pods)

    def wait_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.step(time.monotonic())
            if self.up():
                return True
            if any(p.failed for p in self.pods):
                return False
            time.sleep(2)
        return False

    def report_not_ready(self) -> None:
        """Which pods are not ready (or Jobs not complete), with their last lines."""
        for pod in self.pods:
            if pod.done or (pod.kind != "Job" and pod.ready):
                continue
            what = "Job not complete" if pod.kind == "Job" else "not ready"
            print(f"NOT READY: {pod.name} ({pod.kind} {pod.owner}, {what}, {pod.runs} run(s), "
                  f"{pod.failures} failure(s)); last lines:", flush=True)
            text = podman("logs", "--tail", "25", pod.cname)
            print("      " + (text.stdout + text.stderr).strip().replace("\n", "\n      "), flush=True)

    def save_logs(self) -> None:
        for pod in self.pods:
            if podman("container", "exists", pod.cname).returncode == 0:
                self.save_log(pod, "at the end of the test")

    def stop(self) -> None:
        """Stop nova and neutron first (they log reconnect errors when RabbitMQ goes first), the
        infrastructure last."""
        infra = {"mariadb", "rabbitmq", "memcached", "postgres"}
        for group in ([p for p in self.pods if p.chart not in infra], [p for p in self.pods if p.chart in infra]):
            names = [p.cname for p in group]
            if names:
                podman("rm", "--force", "--ignore", "--time", "10", *names)


def clean_leftovers() -> None:
    """Containers and the network an interrupted run of this tag left behind."""
    names = podman("ps", "-a", "--filter", f"name=^{NAME}-", "--format", "{{.Names}}").stdout.split()
    if names:
        podman("rm", "--force", "--time", "0", *names)
    podman("network", "rm", "--force", NAME)


def main(argv: List[str]) -> int:
    values = [REPO / "tests" / "region" / "values.yaml"]
    if argv == ["all"]:
        values.append(REPO / "tests" / "region" / "all-values.yaml")
    results: List[Tuple[bool, str]] = []
    phase = time.monotonic()

    def done(name: str) -> None:
        nonlocal phase
        say(f"phase {name}: {time.monotonic() - phase:.0f} s")
        phase = time.monotonic()

    region = Region(render_region(values, WORK))
    done("render")
    missing = sorted({p.image for p in region.pods if podman("image", "exists", p.image).returncode != 0})
    if missing:
        print(f"FAIL: images missing: {' '.join(missing)} (IMAGE_TAG={TAG} bash images/build.sh "
              f"{' '.join(sorted({m.rsplit('-', 1)[-1].split(':')[0] for m in missing}))})")
        return 1
    clean_leftovers()
    shutil.rmtree(WORK / "run", ignore_errors=True)
    shutil.rmtree(LOGS, ignore_errors=True)
    podman("network", "create", "--subnet", f"{SUBNET}.0/24", NAME, check_rc=True)
    say(f"{len(region.pods)} pods on {len(region.nodes)} nodes, network {NAME} {SUBNET}.0/24: "
        + ", ".join(p.name for p in region.pods))
    try:
        for pod in region.pods:
            region.start(pod)
        done("start")
        up = region.wait_up(BRINGUP_TIMEOUT)
        results.append((up, f"every pod ready and every Job complete ({len(region.pods)} pods)"))
        done("bring-up")
        if not up:
            region.report_not_ready()
        else:
            runs = {p.name: p.runs for p in region.pods}
            results += scenario.run(region, WORK, say)
            done("scenario")
            region.step(time.monotonic())
            restarted = [p.name for p in region.pods if p.runs != runs[p.name] or (p.kind != "Job" and not p.ready)]
            results.append((not restarted, "no pod exited or became unready during the scenario"
                            + (f": {', '.join(restarted)}" if restarted else "")))
    finally:
        region.save_logs()
        if not os.environ.get("KEEP"):
            region.stop()
            podman("network", "rm", "--force", NAME)
            done("teardown")
    for ok, what in results:
        print(f"{'PASS' if ok else 'FAIL'}: {what}")
    failed = sum(1 for ok, _ in results if not ok)
    print(f"{len(results) - failed} passed, {failed} failed ({time.monotonic() - started_at:.0f} s); "
          f"logs: {LOGS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
