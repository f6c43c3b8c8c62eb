"""
The last steps of ``run``: the service user, its environment, privilege drop and the ``exec``.

This is the only module that calls ``setuid``/``setgid``/``setgroups`` and ``os.exec*`` (STYLE.md 3).
The service replaces kolla-entry in the same PID, so the runtime's signals (dumb-init
``--single-child``) reach it directly; nothing here forks.
"""

from __future__ import annotations

import os
import pwd
import shlex
import signal
import sys
from typing import Any, Dict, Mapping, NamedTuple, NoReturn, Optional, Sequence, Tuple

from kolla_entry.errors import ConfigError, ExecFailed, PrivilegeError
from kolla_entry.log import get_logger

# The logger name is a field of every JSON log line: it stays what it was before the layout move.
log = get_logger("kolla_entry.execute")

#: Where Linux lists the IPv4 routes; read for the default route when POD_IP is not set.
ROUTE_TABLE = "/proc/net/route"
# Any address outside local networks: a UDP "connect" to it only asks the kernel for a route.
_PROBE_ADDRESS = "192.0.2.1"
_TRUE = {"1", "true", "yes", "on"}
# Python ignores these at start-up and ignored signals survive exec: give the service the defaults.
_RESTORED_SIGNALS = ("SIGPIPE", "SIGXFSZ")


class ServiceUser(NamedTuple):
    """The account the service runs as."""

    name: str
    uid: int
    gid: int
    home: str
    groups: Tuple[int, ...]


def resolve_user(name: str) -> ServiceUser:
    """
    Look up the service user by name, or by numeric uid (an unknown uid runs with gid = uid).

    Raises:
        PrivilegeError: no such user name.
    """
    if name.isdigit():
        try:
            account = pwd.getpwuid(int(name))
        except KeyError:
            return ServiceUser(name, int(name), int(name), "/", (int(name),))
    else:
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            raise PrivilegeError(f"unknown service user {name!r}; create it in the image or fix \"user\"",
                                 entry="user") from None
    groups = tuple(os.getgrouplist(account.pw_name, account.pw_gid))
    return ServiceUser(account.pw_name, account.pw_uid, account.pw_gid, account.pw_dir, groups)


def check_can_become(user: ServiceUser, euid: int) -> None:
    """
    Fail early when the current uid cannot switch to ``user``.

    Raises:
        PrivilegeError: not root and ``user`` is someone else.
    """
    if euid != 0 and euid != user.uid:
        raise PrivilegeError(
            f"running as uid {euid}, which cannot switch to user {user.name} (uid {user.uid}); "
            "start the container as root (image USER root) or drop \"user\"/--user",
            entry="user",
        )


def drop_privileges(user: ServiceUser) -> None:
    """
    Become ``user``: supplementary groups, then gid, then uid (the order that still has the right).

    Raises:
        PrivilegeError: the kernel refused a step.
    """
    euid = os.geteuid()
    if euid == user.uid and os.getegid() == user.gid:
        return
    if euid == user.uid and euid != 0:
        # Already the service uid (a pod with runAsUser): without root, groups and gid cannot change,
        # and check_can_become let this start through, so run with what the runtime gave us.
        log.warning("privileges_kept", user=user.name, uid=euid, gid=os.getegid(), wanted_gid=user.gid,
                    reason="not root: the runtime's gid and groups are kept")
        return
    try:
        os.setgroups(list(user.groups))
        os.setgid(user.gid)
        os.setuid(user.uid)
    except OSError as err:
        raise PrivilegeError(f"cannot switch to user {user.name} (uid {user.uid}): {err.strerror}",
                             entry="user") from err


def child_credentials(user: Optional[ServiceUser]) -> Dict[str, Any]:
    """
    ``subprocess`` keywords that run a child (a dependency check) as ``user``, as the service will run.

    Empty when there is no user or we are not root: the child then runs as we do, which
    :func:`check_can_become` has already found to be the service uid.
    """
    if user is None or os.geteuid() != 0:
        return {}
    return {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)}


def service_environment(
    environ: Mapping[str, str], user: Optional[ServiceUser], my_ip: Optional[str]
) -> Dict[str, str]:
    """
    The service's environment: ours, plus ``HOME``/``USER``/``LOGNAME`` of the service user and ``MY_IP``.

    Args:
        environ: kolla-entry's environment.
        user: the service user, if one was asked for.
        my_ip: the address to export as ``MY_IP`` (None: leave it as it is).
    """
    env = dict(environ)
    if user is not None:
        env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
    if my_ip:
        env["MY_IP"] = my_ip
    return env


def choose_my_ip(environ: Mapping[str, str], route_table: str = ROUTE_TABLE) -> Optional[str]:
    """
    ``MY_IP`` for the service: an explicit ``MY_IP`` stays, else ``POD_IP`` (Downward API), else the
    address of the default route; None when there is none.
    """
    for name in ("MY_IP", "POD_IP"):
        if environ.get(name):
            return environ[name]
    try:
        with open(route_table, encoding="ascii") as handle:
            gateway = default_gateway(handle.read())
    except OSError:
        return None
    return None if gateway is None else source_address(gateway or _PROBE_ADDRESS)


def default_gateway(route_table: str) -> Optional[str]:
    """
    Parse ``/proc/net/route`` text: the default route's gateway (``""`` for a link route), or None.
    """
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[1] != "00000000" or fields[7] != "00000000":
            continue
        if not int(fields[3], 16) & 0x1:  # RTF_UP
            continue
        raw = int(fields[2], 16)
        if raw == 0:
            return ""
        import socket  # only when POD_IP is not given (start-up budget, issue #7)

        # The kernel prints the address in host (little-endian on x86/arm) byte order.
        return socket.inet_ntoa(raw.to_bytes(4, sys.byteorder))
    return None


def source_address(destination: str) -> Optional[str]:
    """The local address the kernel would use to reach ``destination`` (no packet is sent)."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((destination, 9))
            address: str = probe.getsockname()[0]
            return address
    except OSError:
        return None


def split_command(command: str) -> Tuple[str, ...]:
    """
    Split a config ``command`` the way a POSIX shell splits words: quotes and backslashes are
    honoured; no variables, globs, pipes or redirections (use a script for those).

    Raises:
        ConfigError: unbalanced quotes or an empty command.
    """
    try:
        argv = tuple(shlex.split(command))
    except ValueError as err:
        raise ConfigError(f"cannot split the command: {err}", entry="command") from err
    if not argv:
        raise ConfigError("the command is empty", entry="command")
    return argv


def is_debug_hold(environ: Mapping[str, str]) -> bool:
    """True when ``DEBUG_CONTAINER`` asks to hold instead of exec'ing (``true``, ``1``, ``yes``, ``on``)."""
    return environ.get("DEBUG_CONTAINER", "").strip().lower() in _TRUE


def debug_hold() -> int:
    """
    Sleep until SIGTERM, SIGINT or SIGHUP arrives, so an operator can ``kubectl exec`` in.

    Returns:
        The signal number that ended the hold.
    """
    wanted = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    return int(signal.sigwait(wanted))


def exec_service(argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """
    Replace this process by the service (same PID), searching ``PATH`` of ``env``.

    Raises:
        ExecFailed: the command cannot be exec'd (not found, not executable).
    """
    for name in _RESTORED_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:
            signal.signal(number, signal.SIG_DFL)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], list(argv), dict(env))
    except OSError as err:
        raise ExecFailed(f"cannot exec {argv[0]!r}: {err.strerror}; check the command and PATH",
                         entry="command") from err
    except ValueError as err:
        # An empty program name (`command: "''"`, `run -- ''`) or a NUL byte: execve refuses it.
        raise ExecFailed(f"cannot exec {argv[0]!r}: {err}; check the command", entry="command") from err
