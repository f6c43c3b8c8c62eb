"""kolla_entry.start.depend: waiting for real TCP listeners on 127.0.0.1 and real check commands, bounded."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator, Tuple

import pytest
from structlog.testing import capture_logs

from kolla_entry.errors import DependencyTimeout
from kolla_entry.log import forget_secrets, register_secret
from kolla_entry.start.depend import try_connect, wait_for, wait_for_checks
from kolla_entry.start.reader import CheckDependency, Dependency


@pytest.fixture
def listener() -> Iterator[Tuple[socket.socket, int]]:
    """A real listening socket on 127.0.0.1."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server, server.getsockname()[1]
    server.close()


def _closed_port() -> int:
    """A port nothing listens on (bound then closed; nothing else on this host takes it that fast)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _dep(port: int) -> Dependency:
    return Dependency("127.0.0.1", port, "dependencies[0].tcp")


def test_reachable_dependency_returns_at_once(listener: Tuple[socket.socket, int]) -> None:
    with capture_logs() as events:
        started = time.monotonic()
        wait_for([_dep(listener[1])], timeout=2)
    assert time.monotonic() - started < 1
    assert [e["event"] for e in events] == ["dependency_ready"]
    assert events[0]["dependency"] == f"127.0.0.1:{listener[1]}"


def test_waits_until_the_listener_appears() -> None:
    """Each failed try is logged as a wait; the success comes once the port opens."""
    port = _closed_port()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def open_later() -> None:
        time.sleep(0.5)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(1)

    opener = threading.Thread(target=open_later)
    opener.start()
    try:
        with capture_logs() as events:
            wait_for([_dep(port)], timeout=5)
    finally:
        opener.join()
        server.close()
    names = [e["event"] for e in events]
    assert names[-1] == "dependency_ready" and "dependency_waiting" in names
    assert events[-1]["attempts"] >= 2


def test_timeout_names_what_was_not_reachable(listener: Tuple[socket.socket, int]) -> None:
    """The first dependency is fine, the second never answers: the error names the second only."""
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(DependencyTimeout) as info:
        wait_for([_dep(listener[1]), Dependency("127.0.0.1", port, "KOLLA_ENTRY_DEPENDENCIES")], timeout=1)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and f"127.0.0.1:{listener[1]}" not in message
    assert info.value.entry == "KOLLA_ENTRY_DEPENDENCIES"
    assert "refused" in message.lower()


def test_try_connect_reports_the_error() -> None:
    assert try_connect(_dep(_closed_port()), 1) is not None


def test_ipv6_dependency_is_printed_with_brackets() -> None:
    assert str(Dependency("::1", 5672, "x")) == "[::1]:5672"


def _check(script: str, entry: str = "dependencies[1].command") -> CheckDependency:
    return CheckDependency(("sh", "-c", script), entry)


class TestChecks:
    """Check commands (``{"command": ...}``): real processes, run until they exit 0."""

    def test_a_passing_check_returns_after_one_run(self, tmp_path: Path) -> None:
        with capture_logs() as events:
            wait_for_checks([_check(f"touch {tmp_path}/ran")], timeout=10, env=dict(os.environ))
        assert (tmp_path / "ran").exists()
        assert [(e["event"], e["attempts"]) for e in events] == [("dependency_ready", 1)]
        assert events[0]["dependency"] == f"sh -c 'touch {tmp_path}/ran'"

    def test_runs_again_until_it_exits_0_logging_each_failure(self, tmp_path: Path) -> None:
        """The check passes on its third run (a schema a db-sync Job finishes meanwhile)."""
        counter = tmp_path / "runs"
        script = (f"n=$(($(cat {counter} 2>/dev/null || echo 0) + 1)); echo $n > {counter}; "
                  "[ $n -ge 3 ] || { echo starting >&2; echo \"schema at version $n\" >&2; exit 2; }")
        with capture_logs() as events:
            wait_for_checks([_check(script)], timeout=60, env=dict(os.environ))
        assert counter.read_text() == "3\n"
        waits = [e for e in events if e["event"] == "dependency_waiting"]
        assert [w["error"] for w in waits] == ["exit 2: schema at version 1", "exit 2: schema at version 2"]
        assert events[-1]["event"] == "dependency_ready" and events[-1]["attempts"] == 3

    def test_timeout_names_the_check_its_status_and_last_line(self) -> None:
        with capture_logs() as events, pytest.raises(DependencyTimeout) as info:
            wait_for_checks([_check("true"), _check("echo no schema yet; exit 3", "dependencies[2].command")],
                            timeout=0.3, env=dict(os.environ), min_run=5)
        message = str(info.value)
        assert info.value.entry == "dependencies[2].command"
        assert "`sh -c 'echo no schema yet; exit 3'`" in message and "exit 3: no schema yet" in message
        assert "dependency_timeout" in message
        assert events[-1]["event"] == "dependency_timeout"

    def test_a_hanging_check_is_killed(self) -> None:
        with pytest.raises(DependencyTimeout) as info:
            wait_for_checks([_check("sleep 600")], timeout=0.1, env=dict(os.environ), min_run=0.5)
        assert "still running after 0.5 s, killed" in str(info.value)

    def test_a_missing_program_is_named(self) -> None:
        missing = CheckDependency(("no-such-program-kolla-entry",), "dependencies[0].command")
        with pytest.raises(DependencyTimeout) as info:
            wait_for_checks([missing], timeout=0.1, env=dict(os.environ), min_run=1)
        assert "cannot run 'no-such-program-kolla-entry'" in str(info.value)

    def test_secrets_in_the_output_are_masked(self, tmp_path: Path) -> None:
        """A rendered password a check prints (a DB URL in an error) never reaches the log or the error."""
        secret = f"pw-{uuid.uuid4().hex}"
        (tmp_path / "nova.conf").write_text(f"mysql://nova:{secret}@db\n")
        register_secret(secret)
        try:
            with capture_logs() as events, pytest.raises(DependencyTimeout) as info:
                wait_for_checks([_check(f"echo cannot connect to $(cat {tmp_path}/nova.conf); exit 1")],
                                timeout=0.1, env=dict(os.environ), min_run=5)
        finally:
            forget_secrets()
        assert secret not in str(info.value) and "mysql://nova:***@db" in str(info.value)
        assert all(secret not in str(e) for e in events)

    def test_the_check_gets_the_environment_given(self, tmp_path: Path) -> None:
        out = tmp_path / "env"
        wait_for_checks([_check(f"echo $SCHEMA_URL > {out}")], timeout=5, env={"PATH": os.environ["PATH"],
                                                                                 "SCHEMA_URL": "db/nova"})
        assert out.read_text() == "db/nova\n"
