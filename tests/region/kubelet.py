"""
The kubelet's part of running a rendered pod with podman, shared by the chart test (images/test/chart_test.py,
one chart in one loopback namespace) and the region test (tests/region/run.py, every chart, one network
namespace per pod):

```
rendered objects ──> Sources (ConfigMap and Secret data by name)
pod spec + container ──> podman_args: env (fieldRefs from the caller), securityContext, volumes
                             ConfigMap/Secret: kubelet_layout (..<stamp>/, ..data, one link per key, modes)
                             emptyDir, hostPath, claims: folders of the run (scratch_folder)
                     ──> `podman run -d [network options] ARGS IMAGE [args]`
```

What the callers choose: the network options (a shared sandbox namespace, or a pod's own address and the
Services' names), the values of the fieldRefs, the image of each chart.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
Obj = Dict[str, Any]


def podman(*args: str, timeout: float = 600, check_rc: bool = False) -> subprocess.CompletedProcess[str]:
    """One podman call with the settings this VM needs (images/test/containers.conf); stdout and stderr kept."""
    env = dict(os.environ, CONTAINERS_CONF=str(REPO / "images" / "test" / "containers.conf"))
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check_rc and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])}: {result.stderr.strip()}")
    return result


@dataclass
class Sources:
    """The data of every rendered ConfigMap and Secret, by name (Secrets decoded)."""

    config_maps: Dict[str, Dict[str, bytes]] = field(default_factory=dict)
    secrets: Dict[str, Dict[str, bytes]] = field(default_factory=dict)

    @classmethod
    def of(cls, objects: List[Obj]) -> Sources:
        found = cls()
        for obj in objects:
            name = obj["metadata"]["name"]
            if obj["kind"] == "ConfigMap":
                found.config_maps[name] = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            elif obj["kind"] == "Secret":
                found.secrets[name] = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        return found


def kubelet_layout(folder: Path, data: Dict[str, bytes], mode: int, group: Optional[int] = None,
                   items: Optional[List[Obj]] = None) -> Path:
    """
    A ConfigMap/Secret volume as the kubelet writes it: ..<timestamp>/<path> files, ..data, one symlink per
    top-level name. With ``items``, only those keys, each at its ``path`` (which may hold folders).
    """
    shutil.rmtree(folder, ignore_errors=True)
    stamp = folder / time.strftime("..%Y_%m_%d_%H_%M_%S.000000000")
    stamp.mkdir(parents=True)
    files = {item["path"]: data[item["key"]] for item in items} if items else data
    for path, content in files.items():
        (stamp / path).parent.mkdir(parents=True, exist_ok=True)
        (stamp / path).write_bytes(content)
        if group is not None:  # the kubelet's fsGroup rule: the group owns it and may read it (mode | 0440)
            os.chown(stamp / path, 0, group)
            mode |= 0o440
        os.chmod(stamp / path, mode)
    os.symlink(stamp.name, folder / "..data")
    for top in sorted({path.split("/", 1)[0] for path in files}):
        os.symlink(f"..data/{top}", folder / top)
    folder.chmod(0o755)
    return folder


@dataclass(frozen=True)
class PodPlace:
    """Where a pod's own folders live: emptyDirs and projected volumes per pod, hostPaths per node, claims
    per claim name (a StatefulSet's `<template>-<pod>`), all under ``run``."""

    run: Path
    pod: str
    node: str

    def scratch(self, volume_name: str, volume: Obj) -> Path:
        if "hostPath" in volume:
            return self.run / "nodes" / self.node / str(volume["hostPath"]["path"]).lstrip("/")
        if "persistentVolumeClaim" in volume:
            return self.run / "claims" / str(volume["persistentVolumeClaim"]["claimName"])
        if "emptyDir" in volume:
            return self.run / "pods" / self.pod / "empty" / volume_name
        # A volumeClaimTemplate's claim (the pod names no volume for it): the claim `<template>-<pod>`.
        return self.run / "claims" / f"{volume_name}-{self.pod}"


def field_value(var: Obj, fields: Dict[str, str], sources: Sources) -> str:
    """The value of one `env` entry: a literal, a fieldRef (from ``fields``) or a secretKeyRef."""
    if "value" in var:
        return str(var["value"])
    source = var.get("valueFrom", {})
    if "fieldRef" in source:
        path = source["fieldRef"]["fieldPath"]
        if path not in fields:
            raise KeyError(f"env {var['name']}: fieldRef {path} is not one the runner fills ({sorted(fields)})")
        return fields[path]
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        return sources.secrets[ref["name"]][ref["key"]].decode()
    raise KeyError(f"env {var['name']}: valueFrom {sorted(source)} is not supported by the runner")


def security_args(pod: Obj, container: Obj) -> List[str]:
    """The pod's securityContext, overridden field by field by the container's (as the kubelet merges them)."""
    args: List[str] = []
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    if security.get("privileged"):
        args.append("--privileged")
    if "runAsUser" in security:
        group = f":{security['runAsGroup']}" if "runAsGroup" in security else ""
        args += ["--user", f"{security['runAsUser']}{group}"]
    if security.get("readOnlyRootFilesystem"):
        # No podman tmpfs on /run, /tmp, /var/tmp: a pod gets only its own volumes.
        args += ["--read-only", "--read-only-tmpfs=false"]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for cap in security.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    for cap in security.get("capabilities", {}).get("add", []):
        args += ["--cap-add", cap]
    fs_group = pod.get("securityContext", {}).get("fsGroup")
    if fs_group is not None:
        args += ["--group-add", str(fs_group)]
    return args


def volume_args(pod: Obj, container: Obj, sources: Sources, place: PodPlace) -> List[str]:
    """`--volume` options for the container's volumeMounts, each source laid out as the kubelet would."""
    args: List[str] = []
    fs_group = pod.get("securityContext", {}).get("fsGroup")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        ro = ":ro" if mount.get("readOnly") else ""
        folder = place.run / "pods" / place.pod / "projected" / mount["name"]
        if "configMap" in volume:
            source = kubelet_layout(folder, sources.config_maps[volume["configMap"]["name"]],
                                    volume["configMap"].get("defaultMode", 0o644), fs_group,
                                    volume["configMap"].get("items"))
        elif "secret" in volume:
            source = kubelet_layout(folder, sources.secrets[volume["secret"]["secretName"]],
                                    volume["secret"].get("defaultMode", 0o644), fs_group,
                                    volume["secret"].get("items"))
        else:
            source = place.scratch(mount["name"], volume)
            if not source.exists():
                source.mkdir(parents=True)
                if fs_group is not None:  # the kubelet's fsGroup rule for writable volumes
                    os.chown(source, 0, fs_group)
                    source.chmod(0o2775)
        args += ["--volume", f"{source}:{mount['mountPath']}{ro}"]
    return args


def podman_args(pod: Obj, container: Obj, sources: Sources, place: PodPlace, fields: Dict[str, str]) -> List[str]:
    """`podman run` options for one rendered container (env, securityContext, volumes, its command as the
    entrypoint); the caller adds name and network, then the image and the container's args."""
    args = ["--ulimit", "host"]
    for var in container.get("env", []):
        args += ["--env", f"{var['name']}={field_value(var, fields, sources)}"]
    args += security_args(pod, container)
    args += volume_args(pod, container, sources, place)
    if container.get("command"):
        args += ["--entrypoint", json.dumps(container["command"])]
    return args


def logs(name: str) -> str:
    """Everything a container wrote (stdout and stderr)."""
    result = podman("logs", name)
    return str(result.stdout) + str(result.stderr)


def events(text: str) -> List[Obj]:
    """kolla-entry's JSON log events in a container's output."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    return found


def running(name: str) -> bool:
    return str(podman("inspect", "--format", "{{.State.Running}}", name).stdout).strip() == "true"
