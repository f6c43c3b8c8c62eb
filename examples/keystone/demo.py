"""
`make demo`: a real Keystone started through kolla-entry, with hot-fixes, a rendered config and a Secret.

Standard library only; run it with the project venv's python (``.venv/bin/python``), whose
``kolla-entry`` is the entrypoint under test, kept apart from the service venv it patches.

Steps: build (or reuse) the Keystone service venv inside a container-like root under
``work/demo/root``, lay out the patches (kubelet ConfigMap layout), Kolla's config.json and a Secret,
run the bootstrap steps as one-shot ``kolla-entry run -- keystone-manage ...``, start Keystone with
``kolla-entry run`` on 127.0.0.1, issue a token, show the hot-fixes, then stay in the foreground until
Ctrl-C. A second run reuses everything and shows the patches as already applied.

Environment: ``KOLLA_DEMO_EXIT=1`` stops after the checks (tests, CI); ``KOLLA_DEMO_PORT`` (default
5000; a free port is taken when it is busy); ``KOLLA_DEMO_PYTHON`` the interpreter for the service
venv (default: this one; keystone 30 needs Python >= 3.11); ``KOLLA_DEMO_WORK`` the work folder
(default ``work/demo`` in the project).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import podlayout as pod

TRUNCATION_WARNING = "Truncating password to algorithm specific maximum length"


def say(text: str = "") -> None:
    """Print one line of the demo's story."""
    print(text, flush=True)


def port_from_environment() -> int:
    """Return KOLLA_DEMO_PORT (default 5000), or a free port when that one is taken."""
    wanted = int(os.environ.get("KOLLA_DEMO_PORT", "5000"))
    try:
        pod.http("GET", f"http://127.0.0.1:{wanted}/")
    except OSError:
        return wanted
    port = pod.free_port()
    say(f"  port {wanted} is in use; using {port} instead")
    return port


def admin_password(work: Path) -> str:
    """Return the demo's admin password: generated on the first run, then kept (the DB holds its hash)."""
    path = work / "admin-password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(18))
    return path.read_text().strip()


def kolla_entry(args: List[str], env: Dict[str, str], log: Path) -> subprocess.CompletedProcess[str]:
    """Run kolla-entry to completion, its stderr (the event log) kept in ``log``; return the result."""
    with log.open("w") as err:
        return subprocess.run(
            [*pod.kolla_entry_command(), *args], env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )


def show_log_tail(log: Path, lines: int = 15) -> None:
    """Print the end of a log file, indented."""
    for line in log.read_text(errors="replace").splitlines()[-lines:]:
        say(f"    | {line}")


def show_check(root: Path, env: Dict[str, str], logs: Path) -> None:
    """Run `kolla-entry check-patches --json` and print one line per patch."""
    result = kolla_entry(["check-patches", "--json"], env, logs / "check-patches.log")
    if result.returncode not in (0, 1) or not result.stdout.strip():
        say(f"  check-patches failed (status {result.returncode}):")
        show_log_tail(logs / "check-patches.log")
        raise SystemExit(1)
    report = json.loads(result.stdout)
    for entry in report["patches"]:
        reason = f"  ({entry['reason']})" if entry.get("reason") else ""
        say(f"  {Path(entry['patch']).name:48} {entry['status']}{reason}")


def bootstrap(root: Path, config: Path, env: Dict[str, str], logs: Path) -> None:
    """Run keystone-manage's preparation steps, each through a one-shot `kolla-entry run --`."""
    for index, (name, argv) in enumerate(pod.bootstrap_commands(root), start=1):
        log = logs / f"{index}-{name}.log"
        start = time.monotonic()
        with log.open("w") as out:
            status = subprocess.run(
                [*pod.kolla_entry_command(), "run", "--config", str(config), "--", *argv],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            ).returncode
        say(f"  kolla-entry run -- keystone-manage {name:18} status {status} ({time.monotonic() - start:.1f} s)")
        if status != 0:
            show_log_tail(log)
            raise SystemExit(1)


def start_keystone(config: Path, env: Dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `kolla-entry run` with config.json's command; its output goes to ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [*pod.kolla_entry_command(), "run", "--config", str(config)],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )


def show_service(base: str, password: str, log: Path) -> None:
    """Issue a token, show the hot-fixes and what the rendered config says; exit 1 if a check fails."""
    status, headers, _ = pod.http("POST", f"{base}/v3/auth/tokens", pod.password_auth(password))
    token = headers.get("X-Subject-Token", "")
    say(f"  POST /v3/auth/tokens -> {status}, token of {len(token)} characters")
    hotfix = headers.get("X-Kolla-Hotfix")
    say(f"  X-Kolla-Hotfix: {hotfix}   <- hot-fix 0001, on every response")
    status_v3, _, body_v3 = pod.http("GET", f"{base}/v3")
    links = json.loads(body_v3)["version"]["links"]
    say(f"  GET /v3 -> {status_v3}, self link {links[0]['href']} (public_endpoint from ${{env:...}})")
    warnings = log.read_text(errors="replace").count(TRUNCATION_WARNING)
    say(f"  bcrypt truncation warnings in the keystone log: {warnings}   <- hot-fix 0002 (was 1 per login)")
    if status != 201 or not token or not hotfix or warnings:
        say("  FAILED: expected a token, the X-Kolla-Hotfix header and no truncation warning")
        raise SystemExit(1)


def show_manual_steps(root: Path, base: str) -> None:
    """Print curl lines to try by hand."""
    openrc = root / "etc/keystone/admin-openrc.sh"
    say("Try it by hand (another shell):")
    say(f"  . {openrc}")
    say(f"  curl -si {base}/v3 | grep -i x-kolla-hotfix")
    say(
        f"  curl -si -H 'Content-Type: application/json' {base}/v3/auth/tokens -d "
        "'{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"admin\","
        "\"domain\":{\"id\":\"default\"},\"password\":\"'\"$OS_PASSWORD\"'\"}}}}}'"
    )
    say(f"  KOLLA_ENTRY_STATE_FILE={root}/run/kolla-entry/state.json {' '.join(pod.kolla_entry_command())} status")


def stop(process: subprocess.Popen[bytes]) -> Optional[int]:
    """SIGTERM the service (kolla-entry exec'd it: same PID) and wait for it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends the demo like Ctrl-C does: Keystone is stopped on the way out."""
    raise KeyboardInterrupt


def main() -> int:
    """Run the demo; return the exit status."""
    # Also when started in the background, where a non-interactive shell ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    work = Path(os.environ.get("KOLLA_DEMO_WORK", pod.PROJECT_DIR / "work" / "demo")).resolve()
    root, logs = work / "root", work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    python = os.environ.get("KOLLA_DEMO_PYTHON", sys.executable)

    say(f"1. Service venv (the Kolla venv) in {root / pod.VENV_REL}")
    if subprocess.run([python, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"]).returncode:
        say(f"  {python} is older than Python 3.11, which keystone 30 needs: set KOLLA_DEMO_PYTHON")
        return 2
    start = time.monotonic()
    try:
        built = pod.ensure_service_venv(root / pod.VENV_REL, python)
    except RuntimeError as err:
        say(f"  FAILED: {err}")
        return 1
    say(f"  {'built' if built else 'reused'} ({time.monotonic() - start:.1f} s): keystone pinned by "
        f"{pod.CONSTRAINTS.relative_to(pod.PROJECT_DIR)}")

    say(f"2. Container-like root {root}: patches (ConfigMap layout), config.json, Secret")
    config = pod.lay_out_root(root, pod.example_patches(), pod.secrets_for(root, admin_password(work)))
    port = port_from_environment()
    env = pod.pod_environment(root, port)
    base = f"http://127.0.0.1:{port}"

    say("3. kolla-entry check-patches (dry run)")
    show_check(root, env, logs)
    say("4. Bootstrap, one-shot runs (the first one applies the patches, or finds them applied)")
    bootstrap(root, config, env, logs)

    say(f"5. kolla-entry run: Keystone on {base}")
    keystone_log = logs / "keystone.log"
    process = start_keystone(config, env, keystone_log)
    try:
        try:
            waited = pod.wait_for_http(f"{base}/v3", process)
        except RuntimeError as err:
            say(f"  FAILED: {err}")
            show_log_tail(keystone_log)
            return 1
        say(f"  answering after {waited:.1f} s (pid {process.pid}: kolla-entry exec'd the service)")
        show_service(base, pod.read_openrc(root / "etc/keystone/admin-openrc.sh")["OS_PASSWORD"], keystone_log)
        say("6. kolla-entry status")
        status = kolla_entry(["status"], env, logs / "status.log")
        for line in status.stdout.splitlines():
            say(f"  {line}")
        show_manual_steps(root, base)
        if os.environ.get("KOLLA_DEMO_EXIT") == "1":
            return 0
        say(f"Keystone runs until Ctrl-C (log: {keystone_log}).")
        process.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        say(f"Keystone stopped (status {stop(process)}).")


if __name__ == "__main__":
    sys.exit(main())
