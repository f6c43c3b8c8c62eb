"""
``kolla-entry run`` end to end: the real CLI in a subprocess starts tests/start/fakeservice.py.

Each test lays out a temporary "container": config.json with absolute tmp paths for sources and
dests, a state file, the COPY_ONCE marker and a patches folder, all under ``tmp_path``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from kolla_entry.errors import ConfigError
from kolla_entry.start import runner
from tests import sysusers
from tests.helpers import configmap_dir, make_tree
from tests.start.nonroot import run_as

FAKE = Path(__file__).with_name("fakeservice.py")
EXAMPLE = Path(__file__).parents[2] / "examples" / "small"


@pytest.fixture(scope="module")
def accounts() -> Iterator[sysusers.Accounts]:
    with sysusers.created() as created:
        yield created


class Container:
    """A temporary container root for one test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.record = root / "record.json"
        self.state = root / "run/kolla-entry/state.json"
        self.marker = root / "configured"
        self.secret = f"s3cret-{uuid.uuid4().hex}"
        make_tree(root, {"secrets/db-password": f"{self.secret}\n".encode()})
        (root / "patches").mkdir()

    def write_config(self, data: Dict[str, Any]) -> Path:
        path = self.root / "config_files/config.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(data))
        return path

    def service(self, *args: str, python: str = sys.executable) -> List[str]:
        return [python, str(FAKE), str(self.record), *args]

    def argv(self, *options: str, command: Optional[List[str]] = None) -> List[str]:
        base = [sys.executable, "-m", "kolla_entry", "--log-format", "json", "run",
                "--config", str(self.root / "config_files/config.json"),
                "--patches", f"{self.root}/patches/*.patch", "--state-file", str(self.state),
                "--configured-marker", str(self.marker), *options]
        return base + (["--", *command] if command else [])

    def run(self, *options: str, command: Optional[List[str]] = None, env: Optional[Dict[str, str]] = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*options, command=command), capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, timeout=timeout, check=False)

    def popen(self, *options: str, command: Optional[List[str]] = None,
              env: Optional[Dict[str, str]] = None) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*options, command=command), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})

    def wait_record(self, timeout: float = 15) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.record.exists():
                data: Dict[str, Any] = json.loads(self.record.read_text())
                return data
            time.sleep(0.05)
        raise AssertionError("the fake service never started")

    def template_config(self, **extra: Any) -> Dict[str, Any]:
        """A nova.conf-like template with an env, a file and an oslo placeholder."""
        make_tree(self.root, {"config_files/nova.conf": (
            "[DEFAULT]\nmy_ip = ${env:POD_IP}\n"
            f"[database]\nconnection = mysql://nova:${{file:{self.root}/secrets/db-password}}@db/nova\n"
            "[api]\nurl = ${database.connection}\n").encode()})
        return {"config_files": [{"source": f"{self.root}/config_files/nova.conf",
                                  "dest": f"{self.root}/etc/nova/nova.conf", "owner": "root", "perm": "0600",
                                  "template": True}], **extra}


def _shared_python() -> str:
    """An interpreter any user may run (the venv's lives under /root here, mode 0700)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate) and os.stat(candidate).st_mode & 0o001:
            return candidate
    pytest.skip("no world-executable python3 for the service user")


def _events(stderr: str) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


@pytest.fixture
def box(tmp_path: Path) -> Container:
    return Container(tmp_path)


@pytest.fixture
def shared_box() -> Iterator[Container]:
    """A container root that other users can reach and write (pytest's tmp_path is under a 0700 folder)."""
    root = Path(tempfile.mkdtemp(prefix="kolla-entry-run-", dir="/tmp"))
    os.chmod(root, 0o777)
    yield Container(root)
    shutil.rmtree(root)


def _no_secret(box: Container, *texts: str) -> None:
    state = box.state.read_text() if box.state.exists() else ""
    for text in (*texts, state):
        assert box.secret not in text


class TestStart:
    def test_configs_rendered_then_service_exec_in_same_pid(self, box: Container) -> None:
        """The whole start: template rendered, state recorded, argv untouched, same PID, last event exec."""
        box.write_config(box.template_config())
        proc = box.popen(command=box.service("--flag", "two words", "--", "-x"),
                         env={"POD_IP": "10.9.8.7"})
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        data = box.wait_record()
        assert data["pid"] == proc.pid
        assert data["argv"][1:] == [str(box.record), "--flag", "two words", "--", "-x"]
        assert data["env"]["MY_IP"] == "10.9.8.7"
        rendered = (box.root / "etc/nova/nova.conf").read_text()
        assert f"mysql://nova:{box.secret}@db/nova" in rendered and "my_ip = 10.9.8.7" in rendered
        assert "url = ${database.connection}" in rendered
        events = _events(err)
        steps = [(e["step"], e["outcome"]) for e in events if e["event"] == "run_step"]
        assert steps == [("config", "ok"), ("dependencies", "none"), ("patches", "none"), ("configs", "ok"),
                         ("privileges", "unchanged")]
        assert all("duration_ms" in e for e in events if e["event"] == "run_step")
        assert events[-1]["event"] == "exec" and events[-1]["command"][0] == sys.executable
        assert events[-1]["user"] == "root" and events[-1]["pid"] == proc.pid
        state = json.loads(box.state.read_text())
        assert state["configs"][0]["dest"] == f"{box.root}/etc/nova/nova.conf"
        assert state["configs"][0]["perm"] == "0600" and len(state["configs"][0]["sha256"]) == 64
        # A rendered file's digest would let a reader of the state test guesses of its secret offline.
        template = (box.root / "config_files/nova.conf").read_bytes()
        assert state["configs"][0]["sha256"] == hashlib.sha256(template).hexdigest()
        assert state["configs"][0]["sha256_of"] == "template"
        assert state["command"]["argv"][1:3] == [str(FAKE), str(box.record)]
        _no_secret(box, out, err)

    def test_command_from_config_is_split_like_a_shell(self, box: Container) -> None:
        box.write_config({"command": f"{sys.executable} {FAKE} {box.record} 'a b' c\\ d"})
        done = box.run()
        assert done.returncode == 0, done.stderr
        assert box.wait_record()["argv"][1:] == [str(box.record), "a b", "c d"]

    def test_command_without_double_dash_keeps_its_options(self, box: Container) -> None:
        """`run [OPTIONS] CMD ARGS...`: options after the command belong to the service, ours included."""
        box.write_config({})
        argv = [*box.argv(), *box.service("--config", "theirs.conf", "--user", "x")]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        assert box.wait_record()["argv"][1:] == [str(box.record), "--config", "theirs.conf", "--user", "x"]

    def test_status_shows_configs_and_command(self, box: Container) -> None:
        box.write_config(box.template_config())
        assert box.run(command=box.service(), env={"POD_IP": "10.0.0.1"}).returncode == 0
        done = subprocess.run([sys.executable, "-m", "kolla_entry", "status", "--state-file", str(box.state)],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0
        assert f"{box.root}/etc/nova/nova.conf" in done.stdout and str(box.record) in done.stdout
        _no_secret(box, done.stdout)

    def test_sigterm_to_the_pid_reaches_the_service(self, box: Container) -> None:
        box.write_config({})
        proc = box.popen(command=box.service("--wait"))
        try:
            data = box.wait_record()
            assert data["pid"] == proc.pid
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=10)
        finally:
            proc.kill()
        assert proc.returncode == 0
        assert json.loads(box.record.read_text())["signals"] == [signal.SIGTERM]

    def test_debug_container_holds_instead_of_exec(self, box: Container) -> None:
        """Everything is done, the service is not started, SIGTERM ends the hold with 0."""
        box.write_config(box.template_config())
        proc = box.popen(command=box.service(), env={"DEBUG_CONTAINER": "true", "POD_IP": "10.0.0.2"})
        try:
            assert proc.stderr is not None
            lines = []
            for line in proc.stderr:
                lines.append(line)
                if '"debug_hold"' in line:
                    break
            assert (box.root / "etc/nova/nova.conf").exists()
            time.sleep(0.3)
            assert not box.record.exists()
            proc.send_signal(signal.SIGTERM)
            _, rest = proc.communicate(timeout=10)
        finally:
            proc.kill()
        assert proc.returncode == 0
        assert not box.record.exists()
        assert any(e["event"] == "debug_hold_ended" for e in _events(rest))
        _no_secret(box, "".join(lines), rest)

    def test_exec_failure_is_one_clear_line(self, box: Container) -> None:
        box.write_config({})
        done = box.run(command=["/nonexistent/bin/service", "--x"])
        assert done.returncode == 1
        assert "cannot exec '/nonexistent/bin/service'" in done.stderr

    def test_no_command_anywhere(self, box: Container) -> None:
        box.write_config({})
        done = box.run()
        assert done.returncode == 1 and "no command" in done.stderr


class TestRefusals:
    def test_invalid_config_does_nothing(self, box: Container) -> None:
        """Step 1 fails before any effect: no folder created, no dependency awaited, no exec."""
        box.write_config({"directories": [{"path": f"{box.root}/log/svc", "owner": "root", "perm": "0750"}],
                          "config_files": [{"source": "/x", "dest": "/y", "owner": "root", "perm": 644}],
                          "dependencies": [{"tcp": "127.0.0.1:1"}], "dependency_timeout": 60})
        done = box.run(command=box.service(), timeout=20)
        assert done.returncode == 1
        assert "entry config_files[0].perm" in done.stderr
        assert not (box.root / "log").exists() and not box.record.exists()

    def test_unresolved_placeholder_refuses_to_start(self, box: Container) -> None:
        box.write_config(box.template_config())
        done = box.run(command=box.service())  # no POD_IP
        assert done.returncode == 1
        assert f"{box.root}/config_files/nova.conf" in done.stderr
        assert "line 2" in done.stderr and "${env:POD_IP}" in done.stderr
        assert not box.record.exists() and not (box.root / "etc/nova/nova.conf").exists()
        _no_secret(box, done.stdout, done.stderr)

    def test_unknown_owner_is_a_config_error(self, box: Container) -> None:
        box.write_config({"files": [{"path": f"{box.root}/x", "owner": "no-such-user-zz", "perm": "0600"}]})
        done = box.run(command=box.service())
        assert done.returncode == 1 and "files[0].owner" in done.stderr and "no-such-user-zz" in done.stderr

    def test_bad_strategy(self, box: Container) -> None:
        box.write_config({})
        done = box.run(command=box.service(), env={"KOLLA_CONFIG_STRATEGY": "COPY_SOMETIMES"})
        assert done.returncode == 1 and "KOLLA_CONFIG_STRATEGY" in done.stderr and not box.record.exists()


class TestCopyOnce:
    def test_copy_once_keeps_the_first_copy(self, box: Container) -> None:
        make_tree(box.root, {"config_files/app.conf": b"v1\n"})
        box.write_config({"config_files": [{"source": f"{box.root}/config_files/app.conf",
                                            "dest": f"{box.root}/etc/app.conf", "owner": "root", "perm": "0644"}]})
        once = {"KOLLA_CONFIG_STRATEGY": "COPY_ONCE"}
        assert box.run(command=box.service(), env=once).returncode == 0
        assert box.marker.exists()
        (box.root / "config_files/app.conf").write_bytes(b"v2\n")
        again = box.run(command=box.service(), env=once)
        assert again.returncode == 0
        assert (box.root / "etc/app.conf").read_bytes() == b"v1\n"
        assert any(e.get("step") == "configs" and e["outcome"] == "kept" for e in _events(again.stderr))
        assert box.run(command=box.service()).returncode == 0  # COPY_ALWAYS, the default
        assert (box.root / "etc/app.conf").read_bytes() == b"v2\n"


class TestDependencies:
    def test_reachable_dependency(self, box: Container) -> None:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(4)
            port = server.getsockname()[1]
            box.write_config({"dependencies": [{"tcp": f"127.0.0.1:{port}"}], "dependency_timeout": 2})
            done = box.run(command=box.service())
        assert done.returncode == 0, done.stderr
        assert any(e["event"] == "dependency_ready" for e in _events(done.stderr))
        assert box.wait_record()

    def test_timeout_refuses_to_start(self, box: Container) -> None:
        """Config and env dependencies; the unreachable one is named; configs are not yet written."""
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(4)
            port = server.getsockname()[1]
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                closed = probe.getsockname()[1]
            box.write_config(box.template_config(dependencies=[{"tcp": f"127.0.0.1:{port}"}],
                                                  dependency_timeout=1))
            started = time.monotonic()
            done = box.run(command=box.service(),
                           env={"KOLLA_ENTRY_DEPENDENCIES": f"127.0.0.1:{closed}", "POD_IP": "10.0.0.3"})
        assert time.monotonic() - started < 15
        assert done.returncode == 1
        assert f"127.0.0.1:{closed}" in done.stderr and "not reachable" in done.stderr
        assert not box.record.exists() and not (box.root / "etc").exists()


class TestChecks:
    def test_a_check_runs_after_the_config_files_and_before_the_service(self, box: Container) -> None:
        """The check reads the rendered file (it exists only after step 4); the service starts after."""
        dest = f"{box.root}/etc/nova/nova.conf"
        box.write_config(box.template_config(dependencies=[{"command": f"grep -q 'my_ip = 10.0.0.5' {dest}"}],
                                             dependency_timeout=20))
        done = box.run(command=box.service(), env={"POD_IP": "10.0.0.5"})
        assert done.returncode == 0, done.stderr
        steps = [e["step"] for e in _events(done.stderr) if e["event"] == "run_step"]
        assert steps.index("configs") < steps.index("checks") < steps.index("privileges")
        assert box.wait_record()

    def test_a_check_that_never_passes_refuses_to_start_naming_it(self, box: Container) -> None:
        box.write_config(box.template_config(dependencies=[{"command": "sh -c 'echo schema missing; exit 4'"}],
                                             dependency_timeout=0.5))
        done = box.run(command=box.service(), env={"POD_IP": "10.0.0.5"}, timeout=120)
        assert done.returncode == 1
        last = done.stderr.strip().splitlines()[-1]
        assert "dependencies[0].command" in last and "exit 4: schema missing" in last
        assert not box.record.exists()
        _no_secret(box, done.stdout, done.stderr)

    def test_a_check_runs_as_the_service_user(self, shared_box: Container, accounts: sysusers.Accounts) -> None:
        box = shared_box
        svc = accounts.service
        out = box.root / "check-ids"
        check = f"sh -c '{{ id -u; id -G; echo $HOME; }} > {out}'"
        box.write_config({"user": svc.name, "dependencies": [{"command": check}]})
        done = box.run(command=box.service(python=_shared_python()))
        assert done.returncode == 0, done.stderr
        uid, groups, home = out.read_text().splitlines()
        assert int(uid) == svc.uid and home == svc.home
        assert sorted(int(g) for g in groups.split()) == sorted({svc.gid, accounts.extra_gid})
        assert box.wait_record()["uid"] == svc.uid


class TestPrivileges:
    def test_drop_to_the_config_user(self, shared_box: Container, accounts: sysusers.Accounts) -> None:
        """Steps 1-4 as root (a 0600 file owned by the service), then groups, gid, uid, HOME/USER/LOGNAME."""
        box = shared_box
        svc = accounts.service
        data = box.template_config(user=svc.name)
        data["config_files"][0]["owner"] = svc.name
        box.write_config(data)
        dest = f"{box.root}/etc/nova/nova.conf"
        done = box.run(command=box.service("--read", dest, python=_shared_python()), env={"POD_IP": "10.0.0.4"})
        assert done.returncode == 0, done.stderr
        rec = box.wait_record()
        assert (rec["uid"], rec["euid"], rec["gid"]) == (svc.uid, svc.uid, svc.gid)
        assert rec["groups"] == sorted({svc.gid, accounts.extra_gid})
        assert (rec["env"]["USER"], rec["env"]["LOGNAME"], rec["env"]["HOME"]) == (svc.name, svc.name, svc.home)
        assert box.secret in rec["read"][dest]
        assert os.stat(dest).st_uid == svc.uid
        assert _events(done.stderr)[-1]["user"] == svc.name
        _no_secret(box, done.stdout, done.stderr)

    def test_user_option_overrides_the_config(self, shared_box: Container, accounts: sysusers.Accounts) -> None:
        box = shared_box
        box.write_config({"user": accounts.service.name})
        done = box.run("--user", accounts.other.name, command=box.service(python=_shared_python()))
        assert done.returncode == 0, done.stderr
        assert box.wait_record()["uid"] == accounts.other.uid

    def test_not_root_cannot_switch_user(self, shared_box: Container, accounts: sysusers.Accounts) -> None:
        """Started as a non-root uid and asked for another user: a clear error, nothing done."""
        tmp_path = shared_box.root
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"directories": [{"path": f"{tmp_path}/d", "owner": "root", "perm": "0755"}]}))
        result = run_as(accounts.other.uid, accounts.other.gid, {
            "command": ["/bin/true"], "config": str(config), "user": accounts.service.name,
            "patterns": [f"{tmp_path}/none/*.patch"], "state_file": f"{tmp_path}/state.json"})
        assert result["error"] == "PrivilegeError"
        assert f"uid {accounts.other.uid}" in result["message"] and accounts.service.name in result["message"]
        assert not (tmp_path / "d").exists()


class TestSudo:
    def test_path_variables_are_ignored_under_sudo(self, box: Container) -> None:
        """CVE-2022-38060: with SUDO_UID set, KOLLA_ENTRY_PATCHES/TARGET/STATE_FILE never choose a path."""
        if glob.glob("/*-patches/*.patch"):
            pytest.skip("this machine has real /*-patches folders")
        box.write_config({})
        evil_state = box.root / "evil/state.json"
        configmap_dir(box.root, "evil-patches", {"0001.patch": b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"})
        argv = [a for a in box.argv(command=box.service()) if a not in ("--patches", f"{box.root}/patches/*.patch")]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, env={
            **os.environ, "SUDO_UID": "1000", "KOLLA_ENTRY_PATCHES": f"{box.root}/evil-patches/*.patch",
            "KOLLA_ENTRY_TARGET": str(box.root), "KOLLA_ENTRY_STATE_FILE": str(evil_state)})
        assert done.returncode == 0, done.stderr
        warning = next(e for e in _events(done.stderr) if e["event"] == "sudo_environment_ignored")
        assert set(warning["variables"]) == {"KOLLA_ENTRY_PATCHES", "KOLLA_ENTRY_TARGET", "KOLLA_ENTRY_STATE_FILE"}
        assert not evil_state.exists()
        assert box.wait_record()


GOOD_PATCH = b"""--- a/pkg/mod.py
+++ b/pkg/mod.py
@@ -1,3 +1,3 @@
 a = 1
-b = 2
+b = 3
 c = 4
"""
CONFLICTING_PATCH = b"""--- a/pkg/other.py
+++ b/pkg/other.py
@@ -1,2 +1,2 @@
 x = 'not what is there'
-y = 1
+y = 2
"""


def _site(root: Path) -> Path:
    return make_tree(root / "site-packages", {"pkg/__init__.py": b"", "pkg/mod.py": b"a = 1\nb = 2\nc = 4\n",
                                              "pkg/other.py": b"x = 0\ny = 1\n"})


def _killed_commit(site: Path, files: Dict[str, bytes], n: int) -> bool:
    """Commit ``files`` into ``site`` in a child killed at seam operation ``n``; True if it was killed."""
    from kolla_entry.fs.seam import FileSystem
    from kolla_entry.patching.transaction import FileChange, commit

    class Die(FileSystem):
        seen = 0

        def _count(self, operation: str, path: str) -> None:
            Die.seen += 1
            if Die.seen == n:
                os._exit(9)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns to pytest
        try:
            commit(site, [FileChange(rel, data) for rel, data in files.items()], fs=Die(),
                   journal=site / ".kolla-entry.journal")
        finally:
            os._exit(0)
    return os.waitpid(pid, 0)[1] == 9 << 8


class TestPatches:
    def test_patch_applied_then_service_started(self, box: Container) -> None:
        site = _site(box.root)
        make_tree(box.root, {"patches/0001-fix.patch": GOOD_PATCH})
        box.write_config(box.template_config())
        done = box.run("--target", str(site), command=box.service(), env={"POD_IP": "10.0.0.5"})
        assert done.returncode == 0, done.stderr
        assert (site / "pkg/mod.py").read_bytes() == b"a = 1\nb = 3\nc = 4\n"
        step = next(e for e in _events(done.stderr) if e.get("step") == "patches")
        assert step["outcome"] == "ok" and step["applied"] == 1
        state = json.loads(box.state.read_text())
        assert state["patches"]["patches"][0]["status"] == "applied" and state["configs"] and state["command"]
        assert box.wait_record()
        again = box.run("--target", str(site), command=box.service(), env={"POD_IP": "10.0.0.5"})
        assert again.returncode == 0
        assert next(e for e in _events(again.stderr) if e.get("step") == "patches")["already-applied"] == 1

    def test_conflicting_patch_refuses_to_start(self, box: Container) -> None:
        """Nothing is exec'd, the tree is unchanged (also the good patch), configs are not written."""
        site = _site(box.root)
        make_tree(box.root, {"patches/0001-fix.patch": GOOD_PATCH, "patches/0002-bad.patch": CONFLICTING_PATCH})
        box.write_config(box.template_config())
        done = box.run("--target", str(site), command=box.service(), env={"POD_IP": "10.0.0.6"})
        assert done.returncode == 1
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("kolla-entry:") and "refusing to start" in last
        assert "0002-bad.patch" in last and "pkg/other.py" in last and "hunk #1" in last
        assert (site / "pkg/mod.py").read_bytes() == b"a = 1\nb = 2\nc = 4\n"
        assert not box.record.exists() and not (box.root / "etc").exists()

    def test_a_commit_killed_part_way_is_finished_even_with_no_patch_left(self, box: Container) -> None:
        """The patch was removed from the ConfigMap after the crash: the service never starts half-patched."""
        old = {f"pkg/{name}.py": b"old = 1\n" for name in "abc"}
        new = {rel: b"new = 1\n" for rel in old}
        site = make_tree(box.root / "site", dict(old))
        for n in range(1, 200):
            if _killed_commit(site, new, n) and len({(site / rel).read_bytes() for rel in old}) == 2:
                break  # a mixed tree and its journal, as a kill -9 between two renames leaves them
            shutil.rmtree(site)
            make_tree(site, dict(old))
        else:
            pytest.fail("no crash point left a mixed tree")
        box.write_config({})
        done = box.run("--target", str(site), command=box.service())
        assert done.returncode == 0, done.stderr
        contents = {(site / rel).read_bytes() for rel in old}
        assert len(contents) == 1 and not (site / ".kolla-entry.journal").exists()
        assert box.wait_record()

    def test_on_conflict_skip_starts_without_the_bad_patch(self, box: Container) -> None:
        site = _site(box.root)
        make_tree(box.root, {"patches/0001-fix.patch": GOOD_PATCH, "patches/0002-bad.patch": CONFLICTING_PATCH})
        box.write_config({})
        done = box.run("--target", str(site), command=box.service(), env={"KOLLA_ENTRY_ON_CONFLICT": "skip"})
        assert done.returncode == 0, done.stderr
        assert (site / "pkg/mod.py").read_bytes() == b"a = 1\nb = 3\nc = 4\n"
        assert box.wait_record()

    def test_unwritable_target_with_pending_patch(self, shared_box: Container,
                                                  accounts: sysusers.Accounts) -> None:
        """A non-root start that would need to patch names the uid and the target; nothing is exec'd."""
        site = _site(shared_box.root)
        make_tree(shared_box.root, {"patches/0001-fix.patch": GOOD_PATCH})
        config = shared_box.write_config({})
        args = {"command": ["/bin/true"], "config": str(config), "patterns": [f"{shared_box.root}/patches/*.patch"],
                "target": str(site), "state_file": str(shared_box.state)}
        os.makedirs(shared_box.state.parent, mode=0o777)
        os.chmod(shared_box.state.parent, 0o777)
        result = run_as(accounts.other.uid, accounts.other.gid, args)
        assert result["error"] == "PrivilegeError"
        assert f"uid {accounts.other.uid}" in result["message"] and str(site) in result["message"]
        assert (site / "pkg/mod.py").read_bytes() == b"a = 1\nb = 2\nc = 4\n"
        # Once root has applied it, the same non-root start finds nothing to write and execs.
        assert shared_box.run("--target", str(site), command=["/bin/true"]).returncode == 0
        final = run_as(accounts.other.uid, accounts.other.gid, args)
        assert final.get("returncode") == 0, final


class TestInProcess:
    """The decisions of step 1 that a subprocess cannot reach without touching the real machine."""

    def test_no_default_config_with_a_command_line_command(self, tmp_path: Path) -> None:
        """A one-shot job may run without any config file."""
        config = runner._read_config(runner.RunRequest(command=("true",), config_dir=tmp_path))
        assert config.command is None and config.config_files == ()

    def test_no_default_config_and_no_command_is_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as info:
            runner._read_config(runner.RunRequest(config_dir=tmp_path))
        assert str(tmp_path / "config.json") in str(info.value)

    def test_a_command_that_cannot_be_split_names_the_config_file(self, tmp_path: Path) -> None:
        (tmp_path / "config.json").write_text('{"command": "app \'unbalanced"}')
        with pytest.raises(ConfigError) as info:
            runner._prepare(runner.RunRequest(config_dir=tmp_path))
        assert info.value.entry == "command" and info.value.file == str(tmp_path / "config.json")

    def test_default_config_is_yaml_first(self, tmp_path: Path) -> None:
        (tmp_path / "config.json").write_text('{"command": "from-json"}')
        (tmp_path / "config.yaml").write_text("command: from-yaml\n")
        assert runner._read_config(runner.RunRequest(config_dir=tmp_path)).command == "from-yaml"

    def test_path_variables_only_without_sudo(self) -> None:
        environ = {"KOLLA_ENTRY_TARGET": "/x", "KOLLA_ENTRY_PATCHES": "/p/*", "POD_IP": "1.2.3.4"}
        assert runner._path_environment(environ) == environ
        assert runner._path_environment({**environ, "SUDO_UID": "1000"}) == {"POD_IP": "1.2.3.4",
                                                                              "SUDO_UID": "1000"}
