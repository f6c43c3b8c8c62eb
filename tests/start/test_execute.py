"""kolla_entry.start.execute: service user, environment, MY_IP, command splitting, privilege drop, exec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from kolla_entry.errors import ConfigError, ExecFailed, PrivilegeError
from kolla_entry.start.execute import (
    ServiceUser,
    check_can_become,
    choose_my_ip,
    default_gateway,
    exec_service,
    is_debug_hold,
    resolve_user,
    service_environment,
    split_command,
)
from tests import sysusers

# /proc/net/route of a pod: eth0 default via 10.244.1.1, plus the pod network route.
ROUTES = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t0001F40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    "eth0\t00000000\t0101F40A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
)


@pytest.fixture(scope="module")
def accounts() -> Iterator[sysusers.Accounts]:
    with sysusers.created() as created:
        yield created


class TestUser:
    def test_resolve_by_name_with_supplementary_groups(self, accounts: sysusers.Accounts) -> None:
        user = resolve_user(accounts.service.name)
        assert (user.uid, user.gid, user.home) == (accounts.service.uid, accounts.service.gid,
                                                   accounts.service.home)
        assert accounts.extra_gid in user.groups and user.gid in user.groups

    def test_resolve_by_uid(self, accounts: sysusers.Accounts) -> None:
        assert resolve_user(str(accounts.other.uid)).name == accounts.other.name
        assert resolve_user("61234") == ServiceUser("61234", 61234, 61234, "/", (61234,))

    def test_unknown_user(self) -> None:
        with pytest.raises(PrivilegeError) as info:
            resolve_user("no-such-user-zz")
        assert info.value.entry == "user"

    def test_not_root_cannot_become_someone_else(self) -> None:
        user = ServiceUser("nova", 42436, 42436, "/var/lib/nova", (42436,))
        check_can_become(user, 0)
        check_can_become(user, 42436)
        with pytest.raises(PrivilegeError) as info:
            check_can_become(user, 1000)
        assert "uid 1000" in str(info.value) and "nova" in str(info.value)


class TestEnvironment:
    def test_user_variables_and_my_ip(self) -> None:
        user = ServiceUser("nova", 42436, 42436, "/var/lib/nova", (42436,))
        env = service_environment({"PATH": "/bin", "USER": "root", "HOME": "/root"}, user, "10.0.0.5")
        assert env == {"PATH": "/bin", "USER": "nova", "LOGNAME": "nova", "HOME": "/var/lib/nova",
                       "MY_IP": "10.0.0.5"}

    def test_without_user_the_environment_is_kept(self) -> None:
        assert service_environment({"HOME": "/root"}, None, None) == {"HOME": "/root"}

    def test_my_ip_prefers_explicit_then_pod_ip(self, tmp_path: Path) -> None:
        routes = tmp_path / "route"
        routes.write_text(ROUTES)
        assert choose_my_ip({"MY_IP": "1.1.1.1", "POD_IP": "2.2.2.2"}, str(routes)) == "1.1.1.1"
        assert choose_my_ip({"POD_IP": "2.2.2.2"}, str(routes)) == "2.2.2.2"

    def test_my_ip_from_the_default_route(self, tmp_path: Path) -> None:
        """Without POD_IP: the address this host uses on its default route (no `ip` binary)."""
        with open("/proc/net/route", encoding="ascii") as handle:
            has_default = default_gateway(handle.read()) is not None
        found = choose_my_ip({})
        if has_default:
            assert found and found != "0.0.0.0"
        else:
            assert found is None

    def test_no_default_route_means_no_my_ip(self, tmp_path: Path) -> None:
        routes = tmp_path / "route"
        routes.write_text(ROUTES.splitlines()[0] + "\n" + ROUTES.splitlines()[1] + "\n")
        assert choose_my_ip({}, str(routes)) is None

    def test_default_gateway_parsing(self) -> None:
        assert default_gateway(ROUTES) == "10.244.1.1"
        assert default_gateway(ROUTES.replace("0101F40A", "00000000")) == ""
        assert default_gateway(ROUTES.replace("\t0003\t", "\t0002\t")) is None  # not up

    @pytest.mark.parametrize(("value", "hold"), [("true", True), ("TRUE", True), ("1", True), ("yes", True),
                                                  ("false", False), ("", False), ("0", False)])
    def test_debug_container_values(self, value: str, hold: bool) -> None:
        assert is_debug_hold({"DEBUG_CONTAINER": value}) is hold


class TestCommand:
    @pytest.mark.parametrize(("command", "argv"), [
        ("uwsgi /etc/nova/nova-api-uwsgi.ini", ("uwsgi", "/etc/nova/nova-api-uwsgi.ini")),
        ("sh -c 'echo a b'", ("sh", "-c", "echo a b")),
        ('app --name "two words" x\\ y', ("app", "--name", "two words", "x y")),
        ("ls /etc/*.conf $HOME", ("ls", "/etc/*.conf", "$HOME")),
    ])
    def test_shell_like_split_without_expansion(self, command: str, argv: tuple) -> None:
        """Quotes are honoured like a shell; globs and variables are not expanded."""
        assert split_command(command) == argv

    @pytest.mark.parametrize("command", ["app 'unbalanced", "   "])
    def test_bad_commands(self, command: str) -> None:
        with pytest.raises(ConfigError) as info:
            split_command(command)
        assert info.value.entry == "command"

    def test_exec_failure_names_the_command(self) -> None:
        with pytest.raises(ExecFailed) as info:
            exec_service(["/nonexistent/kolla-service"], {"PATH": "/nonexistent"})
        assert "/nonexistent/kolla-service" in str(info.value) and "No such file" in str(info.value)

    @pytest.mark.parametrize("argv", [[""], ["app\x00x"]], ids=["empty", "nul"])
    def test_exec_of_an_empty_or_nul_name_is_a_clean_error(self, argv: list) -> None:
        """`command: "''"` or `run -- ''` is an ExecFailed (exit 1), not a ValueError traceback."""
        with pytest.raises(ExecFailed) as info:
            exec_service(argv, {"PATH": "/nonexistent"})
        assert info.value.entry == "command"


def test_drop_privileges_sets_groups_gid_uid(tmp_path: Path, accounts: sysusers.Accounts) -> None:
    """In a child interpreter (the drop cannot be undone): groups, gid and uid all change."""
    script = (
        "import json, os, sys\n"
        "from kolla_entry.start.execute import drop_privileges, resolve_user\n"
        "drop_privileges(resolve_user(sys.argv[1]))\n"
        "print(json.dumps([os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups())]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, accounts.service.name], capture_output=True, text=True,
                          check=True)
    uid, euid, gid, egid, groups = json.loads(done.stdout)
    assert (uid, euid, gid, egid) == (accounts.service.uid,) * 2 + (accounts.service.gid,) * 2
    assert groups == sorted({accounts.service.gid, accounts.extra_gid})
    assert 0 not in groups


def test_already_the_service_uid_without_root_keeps_the_runtime_gid(accounts: sysusers.Accounts) -> None:
    """A pod started as the service uid with another gid (runAsUser, no runAsGroup) is not refused."""
    service = accounts.service
    script = (
        "import json, os, sys\n"
        "from kolla_entry.start.execute import drop_privileges, resolve_user\n"
        "from kolla_entry import log\n"
        "log.configure('json')  # no structlog import once the stdlib may be unreadable to this uid\n"
        "user = resolve_user(sys.argv[1])\n"
        "os.setgroups([]); os.setgid(user.gid + 1); os.setuid(user.uid)\n"
        "drop_privileges(user)\n"
        "print(json.dumps([os.geteuid(), os.getegid()]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, service.name], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [service.uid, service.gid + 1]
    assert "privileges_kept" in done.stderr


def test_exec_keeps_the_pid(tmp_path: Path) -> None:
    """exec_service replaces the process: the service sees the same PID and the given environment."""
    record = tmp_path / "rec.json"
    fake = Path(__file__).with_name("fakeservice.py")
    script = (
        "import os, sys\n"
        "from kolla_entry.start.execute import exec_service\n"
        "print(os.getpid(), flush=True)\n"
        "exec_service([sys.executable, sys.argv[1], sys.argv[2], 'x y'], {'ONLY': 'this'})\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(fake), str(record)], capture_output=True, text=True,
                          check=True, env={**os.environ, "NOT_PASSED": "1"})
    data = json.loads(record.read_text())
    assert data["pid"] == int(done.stdout.strip())
    assert data["argv"][1:] == [str(record), "x y"]
    assert "NOT_PASSED" not in data["env"] and data["env"]["ONLY"] == "this"
