"""kolla_entry.start.depend: waiting for real TCP listeners on 127.0.0.1, with bounded timeouts."""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator, Tuple

import pytest
from structlog.testing import capture_logs

from kolla_entry.errors import DependencyTimeout
from kolla_entry.start.depend import try_connect, wait_for
from kolla_entry.start.reader import Dependency


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
