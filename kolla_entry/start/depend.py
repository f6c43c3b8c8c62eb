"""
Waiting for dependencies: TCP endpoints that must accept a connection, and check commands that must
exit 0 (a schema that a db-sync Job creates), before the service starts.

Each dependency is tried in order, with exponential backoff, under one shared deadline; each wait
and each success is logged. This replaces kubernetes-entrypoint's init containers in the seed, with
no Kubernetes API and so no RBAC: a pod asks the thing it needs, not the Job that makes it.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from kolla_entry.errors import DependencyTimeout
from kolla_entry.log import get_logger, redact
from kolla_entry.start.reader import CheckDependency, Dependency

# The logger name is a field of every JSON log line: it stays what it was before the layout move.
log = get_logger("kolla_entry.depend")

FIRST_DELAY = 0.1
MAX_DELAY = 5.0
#: A single connection attempt never waits longer than this (a silent firewall drops SYNs).
CONNECT_TIMEOUT = 2.0
#: A check started near the deadline still gets this long: a manage command needs seconds to import.
CHECK_MIN_SECONDS = 30.0
#: How much of a failed check's output is kept for the log and the error: its last line, this long.
OUTPUT_CHARS = 300


@dataclass(frozen=True)
class Clock:
    """Time seams, so tests can wait for real but briefly."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


Attempt = Callable[[float], Optional[str]]


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
        error = _wait_one(dependency, _connector(dependency), deadline, clock)
        if error is not None:
            missing = ", ".join(str(d) for d in dependencies[index:])
            raise DependencyTimeout(
                f"not reachable after {timeout:g} s: {missing} (last error on {dependency}: {error}); "
                "check the service and its network policy, or raise dependency_timeout",
                entry=dependency.entry,
            )


def wait_for_checks(
    checks: Sequence[CheckDependency],
    timeout: float,
    *,
    env: Mapping[str, str],
    credentials: Optional[Dict[str, Any]] = None,
    min_run: float = CHECK_MIN_SECONDS,
    clock: Clock = Clock(),
) -> None:
    """
    Block until every check command exits 0, or fail when ``timeout`` runs out.

    Each check runs at least once, and every run may take ``min_run`` seconds, even when
    ``timeout`` is nearly used up (by the TCP waits, the patches and the config files before it).

    Args:
        checks: in the order to run them.
        timeout: seconds for all of them together; a running check is killed at the deadline.
        env: the check's environment (the service's).
        credentials: ``subprocess`` keywords that run the check as the service user (``user``,
            ``group``, ``extra_groups``); None keeps the current user.
        min_run: the least time one run of a check gets before it is killed.
        clock: time seams.

    Raises:
        DependencyTimeout: naming the check that never passed, its last status and output line.
    """
    deadline = clock.now() + timeout
    for check in checks:
        error = _wait_one(check, _runner(check, env, credentials or {}, min_run), deadline, clock)
        if error is not None:
            raise DependencyTimeout(
                f"the check `{redact(str(check))}` did not pass within {timeout:g} s ({error}); see the Job or "
                "service that makes it pass (a db-sync Job's logs), or raise dependency_timeout",
                entry=check.entry,
            )


def _connector(dependency: Dependency) -> Attempt:
    return lambda limit: try_connect(dependency, min(CONNECT_TIMEOUT, limit))


def _runner(check: CheckDependency, env: Mapping[str, str], credentials: Dict[str, Any],
            min_run: float) -> Attempt:
    return lambda limit: run_check(check, max(limit, min_run), env, credentials)


def _wait_one(dependency: Union[Dependency, CheckDependency], attempt_once: Attempt, deadline: float,
              clock: Clock) -> Optional[str]:
    """Try until it succeeds (None) or past the deadline (the last error)."""
    delay = FIRST_DELAY
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - clock.now()
        error = attempt_once(max(remaining, 0.05))
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


def run_check(check: CheckDependency, timeout: float, env: Mapping[str, str],
              credentials: Dict[str, Any]) -> Optional[str]:
    """
    Run a check command once, its output captured, its stdin closed.

    Returns:
        None when it exited 0, else its status and last output line as text (secrets masked).
    """
    import subprocess

    try:
        done = subprocess.run(check.argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, check=False, **credentials)
    except subprocess.TimeoutExpired:
        return f"still running after {timeout:.3g} s, killed"
    except OSError as err:
        return f"cannot run {check.argv[0]!r}: {err.strerror}"
    if done.returncode == 0:
        return None
    lines = [line for line in done.stdout.decode("utf-8", "replace").splitlines() if line.strip()]
    last = redact(lines[-1].strip())[:OUTPUT_CHARS] if lines else "no output"
    status = f"exit {done.returncode}" if done.returncode > 0 else f"killed by signal {-done.returncode}"
    return f"{status}: {last}"
