"""
Every service image, started from its own chart (issue #14): `make container-test SERVICES="keystone nova"`.

For each service the chart is rendered with the real Helm engine (helm-python-sdk, as tests/charts do), and
every pod the chart renders is run with podman as the kubelet would run it:

- the config ConfigMap, the Secret and the patches ConfigMap are laid out as the kubelet mounts them (a
  timestamped folder, a `..data` symlink to it, one symlink per key), read-only, the Secret mode 0400;
- the container gets exactly the rendered `command` (as its entrypoint, no args), `env` (fieldRefs filled
  with the sandbox's values), the user the image runs as when the pod sets none, else the merged pod and
  container securityContext (runAsUser:runAsGroup, fsGroup as an extra group, `privileged`,
  readOnlyRootFilesystem as `--read-only` without podman's own tmpfs, capability drops/adds,
  allowPrivilegeEscalation false as no-new-privileges), and the Secret/ConfigMap volumes of its volumeMounts
  (hostPath and other volumes, emptyDirs included, become empty folders owned by the fsGroup);
- all containers share one network namespace with nothing but a loopback (like one pod): the charts'
  endpoints are pointed at 127.0.0.1 with their own ports, nothing can collide with the host's ports, and
  nothing leaves the machine.

The infrastructure (postgres, rabbitmq, memcached) runs from the images in images/ and from the pod specs
of charts/postgres, charts/rabbitmq and charts/memcached the same way (their env, init ConfigMap, Secret
mounts). Keystone runs first when another service is tested (their APIs wait for the identity endpoint).

Checks per service: `kolla-entry check-patches --json` in the image with the chart's patches (every patch
applicable, or skipped when it is another service's); every Job (db-sync, keystone's bootstrap, the
registration) exits 0; the main API answers its version document over HTTP, with the X-Kolla-Hotfix header
of the chart's example hot-fix; its worker processes run as the config.json user; every other component's
command gets exec'd by kolla-entry (its `exec` event) or, when a dependency it needs is not in this test,
kolla-entry's dependency wait is where it stops (its `dependency_waiting` event, never a crash); in a hardened
pod (read-only root) that started, kolla-entry chose overlay mode (its patches step names the overlay).

Prints one PASS/FAIL line per check and `N passed, N failed`; exit status 1 on any failure.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
# The kubelet's part (volumes in the ..data layout, env, securityContext), shared with the region test.
from tests.charts.conftest import build_charts, render  # noqa: E402
from tests.region.kubelet import PODMAN, PodPlace, Sources, events, logs, podman, podman_args, running  # noqa: E402

WORK = REPO / "work" / "images" / "chart-test"
PREFIX = os.environ.get("IMAGE_PREFIX", "localhost/kolla-entry")
TAG = os.environ.get("IMAGE_TAG", "latest")
# Container names: a run with another IMAGE_TAG (another worktree, sharing this machine's podman) has its own,
# so that neither removes the other's containers as leftovers of an interrupted run.
NAME = "kolla-entry-cht" if TAG == "latest" else f"kolla-entry-{TAG}-cht"
ALL = ["keystone", "placement", "glance", "nova", "neutron", "cinder", "barbican", "designate", "ironic",
       "manila", "horizon"]
# The main API of each service: component, path of its version document, the statuses it answers with.
API = {
    "barbican": ("api", "/", (200, 300)),
    "cinder": ("api", "/", (200, 300)),
    "designate": ("api", "/", (200, 300)),
    "glance": ("api", "/", (200, 300)),
    "horizon": ("dashboard", "/auth/login/", (200,)),
    "ironic": ("api", "/", (200,)),
    "keystone": ("api", "/v3", (200,)),
    "manila": ("api", "/", (200, 300)),
    "neutron": ("server", "/", (200,)),
    "nova": ("api", "/", (200,)),
    "placement": ("api", "/", (200,)),
}
ENDPOINTS = {"database": 3306, "messaging": 5672, "cache": 11211, "identity": 5000, "image": 9292,
             "compute": 8774, "network": 9696, "placement": 8778}
WAIT_API = 240.0
WAIT_COMPONENT = 40.0

results: List[Tuple[bool, str]] = []
containers: List[str] = []


def check(ok: bool, what: str, detail: str = "") -> bool:
    results.append((ok, what))
    print(f"{'PASS' if ok else 'FAIL'}: {what}", flush=True)
    if not ok and detail:
        print("      " + detail[-3000:].replace("\n", "\n      "), flush=True)
    return ok


def values(secret_values: Dict[str, str]) -> Dict[str, Any]:
    """The umbrella's globals, endpoints on the sandbox's loopback, and this run's random secrets."""
    umbrella = yaml.safe_load((REPO / "charts" / "openstack" / "values.yaml").read_text())
    glob = umbrella["global"]
    glob["endpoints"] = {key: f"127.0.0.1:{port}" for key, port in ENDPOINTS.items()}
    glob["secrets"] = secret_values
    # One hypervisor, so that the nova chart renders its nova-compute.
    glob["hypervisors"] = [{"name": "ctest", "hostname": "ctest-node"}]
    return {"global": glob}


def chart_secrets(service: str) -> Dict[str, Any]:
    """Rule 3 secrets: the keys the example region sets for this chart, each a fresh Fernet-shaped key
    (32 random bytes, urlsafe base64: what barbican's kek must be, and fine as Django's SECRET_KEY)."""
    region = yaml.safe_load((REPO / "charts" / "europe-example-region" / "values.yaml").read_text())
    keys = region.get("openstack", {}).get(service, {}).get("secrets", {})
    return {"secrets": {key: base64.urlsafe_b64encode(os.urandom(32)).decode() for key in keys}}


def pods(objects: List[Dict[str, Any]]) -> List[Tuple[str, str, Dict[str, Any]]]:
    """(kind, component, pod spec) of every workload and Job."""
    found = []
    for obj in objects:
        if obj["kind"] in {"Deployment", "DaemonSet", "StatefulSet", "Job"}:
            component = obj["metadata"]["labels"].get("app.kubernetes.io/component", obj["metadata"]["name"])
            found.append((obj["kind"], component, obj["spec"]["template"]["spec"]))
    return found


def check_overlay(name: str, pod: Dict[str, Any]) -> None:
    """A hardened pod (read-only root): kolla-entry chose overlay mode (its patches step names the overlay)."""
    (container,) = pod["containers"]
    if not container.get("securityContext", {}).get("readOnlyRootFilesystem"):
        return
    steps = [e for e in events(logs(name)) if e.get("event") == "run_step" and e.get("step") == "patches"]
    check(bool(steps) and all(e.get("overlay") == "/var/lib/kolla-entry/overlay" for e in steps),
          f"{name}: hardened (read-only root, uid {pod['securityContext'].get('runAsUser')}, no capabilities): "
          "kolla-entry chose overlay mode", logs(name)[-2000:])


def container_args(pod: Dict[str, Any], sources: Sources, run: Path, name: str) -> List[str]:
    """The rendered container's podman options, in the sandbox's network namespace: its address is 127.0.0.1."""
    (container,) = pod["containers"]
    fields = {"status.podIP": "127.0.0.1", "spec.nodeName": "ctest-node", "metadata.name": name}
    return ["--name", name, "--network", f"container:{NAME}-sandbox",
            *podman_args(pod, container, sources, PodPlace(run, name, "ctest-node"), fields)]


def start(pod: Dict[str, Any], sources: Sources, run: Path, name: str, image: str) -> bool:
    (container,) = pod["containers"]
    podman("rm", "--force", "--ignore", "--time", "0", name)
    args = container_args(pod, sources, run, name)
    result = podman("run", "-d", *args, image, *container.get("args", []))
    containers.append(name)
    return check(result.returncode == 0, f"{name}: container starts with the rendered command",
                 result.stderr)


def sandbox_pid() -> str:
    return str(podman("inspect", "--format", "{{.State.Pid}}", f"{NAME}-sandbox", check_rc=True).stdout).strip()


def http_get(port: int, path: str) -> Tuple[int, str, str]:
    """GET from inside the sandbox's network namespace (nsenter runs this script's own Python there):
    status, the start of the body, and the X-Kolla-Hotfix response header ("" when absent)."""
    code = ("import sys, urllib.request, urllib.error\n"
            "try:\n r = urllib.request.urlopen(sys.argv[1], timeout=20)\n"
            "except urllib.error.HTTPError as e:\n r = e\n"
            "print(r.status); print(r.headers.get('X-Kolla-Hotfix', '')); print(r.read(400))\n")
    result = subprocess.run(["nsenter", "-t", sandbox_pid(), "-n", sys.executable, "-c", code,
                             f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return 0, result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "", ""
    status, hotfix, body = result.stdout.split("\n", 2)
    return int(status), body, hotfix


def tcp_open(port: int) -> bool:
    code = "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2).close()"
    return subprocess.run(["nsenter", "-t", sandbox_pid(), "-n", sys.executable, "-c", code, str(port)],
                          capture_output=True).returncode == 0


def wait_api(name: str, port: int, path: str, statuses: Tuple[int, ...], hotfix: str) -> bool:
    """The API answers; with ``hotfix`` (the name of the chart's patch that tags responses), its answer
    carries ``X-Kolla-Hotfix: <hotfix>``: the patch kolla-entry applied is the code that runs."""
    deadline = time.monotonic() + WAIT_API
    last: Tuple[int, str, str] = (0, "", "")
    while time.monotonic() < deadline and running(name):
        if tcp_open(port):
            last = http_get(port, path)
            if last[0] in statuses:
                ok = check(True, f"{name}: GET {path} answers {last[0]} ({last[1][:80]})")
                if hotfix:
                    ok = check(last[2] == hotfix, f"{name}: the answer carries X-Kolla-Hotfix: {hotfix} "
                               "(the chart's hot-fix patch is what runs)", f"header {last[2]!r}") and ok
                return ok
        time.sleep(2)
    return check(False, f"{name}: GET {path} answers one of {statuses}",
                 f"last answer {last}; running {running(name)}\n{logs(name)[-2500:]}")


def processes(name: str) -> List[Tuple[int, str]]:
    """(real uid, cmdline) of every process of a container, from its /proc (images/test/inside.py procs)."""
    probe = (REPO / "images" / "test" / "inside.py").read_text()
    env = dict(os.environ, CONTAINERS_CONF=str(REPO / "images" / "test" / "containers.conf"))
    result = subprocess.run([*PODMAN, "exec", "-i", name, "python3", "-", "procs"], input=probe,
                            capture_output=True, text=True, timeout=60, env=env)
    found = []
    for line in result.stdout.splitlines():
        fields = line.split(" ", 4)
        if len(fields) == 5 and fields[2].isdigit():
            found.append((int(fields[2]), fields[4]))
    return found


def image_uid(image: str, user: str) -> int:
    result = podman("run", "--rm", "--network", "none", "--ulimit", "host", "--entrypoint",
                    '["id", "-u", "' + user + '"]', image)
    return int(result.stdout.strip() or -1)


def stop(name: str) -> None:
    podman("rm", "--force", "--ignore", "--time", "3", name)


def start_infra(charts: Path, vals: Dict[str, Any], run: Path) -> bool:
    """The umbrella's database (mariadb or postgres), rabbitmq and memcached: their charts' pods, images/."""
    ok = True
    umbrella = yaml.safe_load((REPO / "charts" / "openstack" / "values.yaml").read_text())
    database = ("mariadb", 3306) if umbrella["mariadb"]["enabled"] else ("postgres", 5432)
    for chart, probe in (database, ("rabbitmq", 5672), ("memcached", 11211)):
        objects = render(charts / chart, vals)
        sources = Sources.of(objects)
        ((_, _, pod),) = pods(objects)
        name = f"{NAME}-{chart}"
        if not start(pod, sources, run / chart, name, f"{PREFIX}-{chart}:{TAG}"):
            return False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and running(name) and not tcp_open(probe):
            time.sleep(1)
        ok = check(tcp_open(probe), f"{chart}: listens on its chart's port {probe} (image {PREFIX}-{chart})",
                   logs(name)) and ok
        # The chart's exec probes run in the image (its healthcheck.sh, pg_isready, rabbitmq-diagnostics).
        (container,) = pod["containers"]
        for kind in ("readinessProbe", "livenessProbe"):
            command = container.get(kind, {}).get("exec", {}).get("command")
            if command:
                deadline = time.monotonic() + 90
                result = podman("exec", name, *command, timeout=60)
                while result.returncode != 0 and time.monotonic() < deadline:
                    time.sleep(2)
                    result = podman("exec", name, *command, timeout=60)
                ok = check(result.returncode == 0, f"{chart}: the chart's {kind} `{' '.join(command)}` succeeds",
                           result.stdout + result.stderr) and ok
    # postgres answers on its port before the init scripts ran only on a second start; wait for the roles.
    return ok


def check_patches(service: str, image: str, sources: Sources, run: Path, pod: Dict[str, Any]) -> None:
    name = f"{NAME}-{service}-check-patches"
    args = container_args(pod, sources, run, name)
    entry = args.index("--entrypoint")
    del args[entry:entry + 2]
    podman("rm", "--force", "--ignore", name)
    result = podman("run", "--rm", *args, image, "check-patches", "--json")
    try:
        report = json.loads(result.stdout)
        items = report.get("patches", []) if isinstance(report, dict) else []
    except ValueError:
        check(False, f"{service}: kolla-entry check-patches --json in the image", result.stdout + result.stderr)
        return
    statuses = {str(i.get("patch", "")).rsplit("/", 1)[-1]: i.get("status") for i in items}
    # The service's own header patch (checked on the API's answer) must apply, never be skipped.
    bad = {p: s for p, s in statuses.items()
           if not (s == "applicable" or (s == "skipped" and not p.split("-", 1)[-1].startswith(service)
                                         and not p.endswith("-x-kolla-hotfix-header.patch")))}
    check(result.returncode == 0 and not bad,
          f"{service}: check-patches: {len(statuses)} patch(es), every one applicable or another service's "
          f"({', '.join(f'{p} {s}' for p, s in sorted(statuses.items())) or 'none in this chart'})",
          f"exit {result.returncode}, {bad}\n{result.stderr}")


def test_service(service: str, charts: Path, vals: Dict[str, Any], run: Path, keep_api: bool) -> None:
    image = f"{PREFIX}-{service}:{TAG}"
    if podman("image", "exists", image).returncode != 0:
        check(False, f"{service}: image {image} exists (make images SERVICES={service})")
        return
    objects = render(charts / service, {**vals, **chart_secrets(service)})
    sources = Sources.of(objects)
    config = {k: json.loads(v) for obj in objects if obj["kind"] == "ConfigMap"
              and obj["metadata"]["name"] == f"{service}-config" for k, v in obj["data"].items()
              if k.endswith(".json")}
    workloads = pods(objects)
    # /usr/share/python-wheels: Debian's python3-venv (ensurepip's pip and setuptools), not a leftover.
    leftovers = podman("run", "--rm", "--network", "none", "--ulimit", "host", "--entrypoint", '["sh", "-c"]', image,
                       "find / -xdev -path /usr/share/python-wheels -prune -o \\( -name '*.whl'"
                       " -o -path /root/.cache -o -path /tmp/wheels \\) -print;"
                       " for t in gcc cc make; do command -v $t; done; true")
    check(leftovers.returncode == 0 and leftovers.stdout.strip() == "",
          f"{service}: no wheel, pip cache or compiler left in the image", leftovers.stdout + leftovers.stderr)
    check_patches(service, image, sources, run / service, workloads[0][2])
    api_component, path, statuses = API[service]
    for kind, component, pod in sorted(workloads, key=lambda w: (w[0] != "Job", w[1] != api_component)):
        name = f"{NAME}-{service}-{component}"
        if not start(pod, sources, run / service, name, image):
            continue
        if kind == "Job":
            result = podman("wait", name, timeout=600)
            code = result.stdout.strip()
            check(code == "0", f"{name}: the {component} Job's command exits 0", f"{logs(name)[-2900:]}\nexit {code}")
            check_overlay(name, pod)
            stop(name)
            continue
        if component == api_component:
            port = int(pod["containers"][0]["ports"][0]["containerPort"])
            # The chart's patch that tags the API's answers (patches/<service>/*-x-kolla-hotfix-header.patch).
            patches = sources.config_maps.get(f"{service}-patches", {})
            tagged = sorted(p[:-len(".patch")] for p in patches if p.endswith("-x-kolla-hotfix-header.patch"))
            if wait_api(name, port, path, statuses, tagged[0] if tagged else ""):
                user = config[f"{component}.json"]["user"]
                uid = image_uid(image, user)
                procs = [(u, c) for u, c in processes(name) if not c.startswith(("dumb-init", "python3 -"))]
                check(bool(procs) and all(u == uid for u, _ in procs) and not any("kolla-entry" in c for _, c in procs),
                      f"{name}: the service runs as {user} ({uid}), kolla-entry exec'd it",
                      str(processes(name)))
                check_overlay(name, pod)
            continue
        deadline = time.monotonic() + WAIT_COMPONENT
        seen: List[Dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = events(logs(name))
            if any(e.get("event") in {"exec", "dependency_waiting"} for e in seen) or not running(name):
                break
            time.sleep(1)
        names = [e.get("event") for e in seen]
        command = config[f"{component}.json"]["command"].split()[0]
        if "exec" in names:
            (event,) = [e for e in seen if e.get("event") == "exec"]
            user = config[f"{component}.json"]["user"]
            check(event.get("command", [""])[0] == command and event.get("user") == user
                  and event.get("uid") == image_uid(image, user),
                  f"{name}: kolla-entry exec'd {command} as {user}", logs(name)[-2000:])
            check_overlay(name, pod)
        else:
            waiting = [e for e in seen if e.get("event") == "dependency_waiting"]
            check(bool(waiting) and running(name),
                  f"{name}: stops at kolla-entry's dependency wait "
                  f"({waiting[0].get('dependency') if waiting else '?'}, not in this test)", logs(name)[-2000:])
        stop(name)
    # The main API served the other components' dependencies; keystone's stays up for the next services.
    if not keep_api:
        stop(f"{NAME}-{service}-{api_component}")


def main(argv: List[str]) -> int:
    services = ALL if argv in (["all"], []) and os.environ.get("SERVICES", "all") == "all" else \
        (argv or os.environ.get("SERVICES", "").split())
    if services == ["all"]:
        services = ALL
    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    run = WORK / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    # Containers an interrupted run left behind; the sandbox last (the others use its network namespace).
    names = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    for old in sorted(names, key=lambda n: n.endswith("-sandbox")):
        if old.startswith(NAME + "-"):
            podman("rm", "--force", "--time", "0", old)
    charts = build_charts(WORK / "charts")
    # Rule 4 secrets: every key the example region sets (database, messaging and Keystone passwords, the
    # keystone admin's among them), each a fresh random value.
    region = yaml.safe_load((REPO / "charts" / "europe-example-region" / "values.yaml").read_text())
    words = {key: secrets.token_hex(12) for key in region["global"]["secrets"]}
    vals = values(words)
    sandbox = podman("run", "-d", "--name", f"{NAME}-sandbox", "--network", "none", "--ulimit", "host",
                     "--entrypoint", '["sleep", "infinity"]', f"{PREFIX}-base:{TAG}")
    containers.append(f"{NAME}-sandbox")
    try:
        if not check(sandbox.returncode == 0, "sandbox: one network namespace, loopback only", sandbox.stderr):
            return 1
        if start_infra(charts, vals, run):
            order = ["keystone"] + [s for s in services if s != "keystone"]
            for service in order:
                if service == "keystone" or service in services:
                    test_service(service, charts, vals, run, keep_api=service == "keystone")
    finally:
        if not os.environ.get("KEEP"):
            for name in reversed(containers):
                podman("rm", "--force", "--ignore", "--time", "10", name)
    failed = sum(1 for ok, _ in results if not ok)
    print(f"{len(results) - failed} passed, {failed} failed ({time.monotonic() - started:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
