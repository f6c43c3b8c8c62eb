"""
Start-up benchmark, run by ``bench/run.py`` inside a private mount namespace (``unshare -m``).

Kolla's ``kolla_set_configs`` reads the fixed path ``/var/lib/kolla/config_files/config.json`` and
writes ``/run_command`` and ``/etc/kolla/defaults``. So that neither tool touches this machine, the
probe mounts an overlay of ``/`` (writes go to a scratch folder), chroots into it, puts the start-up
config at Kolla's path and times both tools there, the same way, round-robin. Each run starts as a
fresh container would: the previous run's outputs are removed first (untimed). Prints the samples
as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import Case, measure

KOLLA_CONFIG_DIR = Path("/var/lib/kolla/config_files")
# What a run leaves behind; removed before the next run so each one is a first container start.
OUTPUTS = ("/etc/bench-service", "/run_command", "/etc/kolla", "/run/kolla-entry", "/configured")


def enter_overlay_root(scratch: Path) -> None:
    """Mount an overlay of / whose writes land in ``scratch``, and chroot into it."""
    upper, work, root = scratch / "upper", scratch / "work", scratch / "root"
    for folder in (upper, work, root):
        folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir=/,upperdir={upper},workdir={work}", str(root)], check=True)
    for special in ("/proc", "/dev"):
        subprocess.run(["mount", "--rbind", special, f"{root}{special}"], check=True)
    os.chroot(root)
    os.chdir("/")


def reset_outputs() -> None:
    """Remove what the previous run wrote (untimed)."""
    for name in OUTPUTS:
        path = Path(name)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def cases(args: argparse.Namespace) -> List[Case]:
    """The three start-up commands: Kolla's set_configs, kolla-entry run, and the bare interpreter."""
    # A pod's environment as the charts set it: POD_IP comes from the Downward API (a documentation
    # address here; nothing connects to it).
    env: Dict[str, str] = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                           "KOLLA_CONFIG_STRATEGY": "COPY_ALWAYS", "POD_IP": "192.0.2.10"}
    entry = [args.kolla_entry, "run", "--config", str(KOLLA_CONFIG_DIR / "config.json"),
             "--patches", "/bench-no-patches/*.patch", "--target", args.target, "--", "/bin/true"]
    return [
        Case("kolla_set_configs", [args.python, args.set_configs], env=env, prepare=reset_outputs),
        Case("kolla-entry run", entry, env=env, prepare=reset_outputs),
        Case("python -c pass", [args.python, "-c", "pass"], env=env),
    ]


def main() -> int:
    """Set up the private root, time the start-up cases, print JSON samples."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--config-dir", type=Path, required=True)
    parser.add_argument("--set-configs", required=True)
    parser.add_argument("--kolla-entry", required=True)
    parser.add_argument("--python", required=True)
    parser.add_argument("--target", required=True)
    args = parser.parse_args()
    enter_overlay_root(args.scratch)
    shutil.copytree(args.config_dir, KOLLA_CONFIG_DIR)
    results = measure(cases(args), args.runs, progress=lambda note: print(f"  start-up {note}", file=sys.stderr))
    print(json.dumps({name: {"seconds": s.seconds, "rss_kib": s.rss_kib, "cpu_seconds": s.cpu_seconds,
                             "launcher_rss_kib": s.launcher_rss_kib}
                      for name, s in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
