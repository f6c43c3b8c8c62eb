"""
Waiting for dependencies: TCP endpoints that must accept a connection before the service starts.

Each endpoint is tried in order, with exponential backoff, under one shared deadline; each wait
and each success is logged. This replaces kubernetes-entrypoint's init containers in the seed.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from kolla_entry.errors import DependencyTimeout
from kolla_entry.log import get_logger
from kolla_entry.start.reader import Dependency

# The logger name is a field of every JSON log line: it stays what it was before the layout move.
log = get_logger("kolla_entry.depend")

FIRST_DELAY = 0.1
MAX_DELAY = 5.0
#: A single connection attempt never waits longer than this (a silent firewall drops SYNs).
CONNECT_TIMEOUT = 2.0


@dataclass(frozen=True)
class Clock:
    """Time seams, so tests can wait for real but briefly."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def wait_for(dependencies: Sequence[Dependency], timeout: float, *, clock: Clock = Clock()) -> None:
    """
    Block until every dependency accepts a TCP connection, or fail when ``timeout`` runs out.

    Args:
        dependencies: in the order to wait for them.
        timeout: seconds for all of them together.
        clock: time seams.

    Raises:
        DependencyTimeout: naming every endpoint not reached and the last error seen.
    """
    deadline = clock.now() + timeout
    for index, dependency in enumerate(dependencies):
        error = _wait_one(dependency, deadline, clock)
        if error is not None:
            missing = ", ".join(str(d) for d in dependencies[index:])
            raise DependencyTimeout(
                f"not reachable after {timeout:g} s: {missing} (last error on {dependency}: {error}); "
                "check the service and its network policy, or raise dependency_timeout",
                entry=dependency.entry,
            )


def _wait_one(dependency: Dependency, deadline: float, clock: Clock) -> Optional[str]:
    """Try until connected (None) or past the deadline (the last error)."""
    delay = FIRST_DELAY
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - clock.now()
        error = try_connect(dependency, min(CONNECT_TIMEOUT, max(remaining, 0.05)))
        if error is None:
            log.info("dependency_ready", dependency=str(dependency), attempts=attempt)
            return None
        remaining = deadline - clock.now()
        if remaining <= 0:
            log.error("dependency_timeout", dependency=str(dependency), attempts=attempt, error=error)
            return error
        pause = min(delay, remaining)
        log.info("dependency_waiting", dependency=str(dependency), attempt=attempt, error=error,
                 retry_in=round(pause, 2))
        clock.sleep(pause)
        delay = min(delay * 2, MAX_DELAY)


def try_connect(dependency: Dependency, timeout: float) -> Optional[str]:
    """
    Open and close one TCP connection.

    Returns:
        None when it connected, else the error as text.
    """
    try:
        with socket.create_connection((dependency.host, dependency.port), timeout=timeout):
            return None
    except socket.timeout:
        return "timed out"
    except OSError as err:
        return err.strerror or str(err)
