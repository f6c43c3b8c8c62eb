"""
``kolla-entry run``: the container entrypoint, in the order issue #3 fixes.

1. read and validate the service config (nothing is done when it is invalid);
2. wait for dependencies; 3. apply the hot-fix patches (the engine, as a library call);
4. put the config files in place, then run the check commands (``{"command": ...}`` dependencies,
which read those files) as the service user until they pass; 5. drop privileges; 6. ``exec`` the service (same PID).

Each step logs one ``run_step`` event with its outcome and duration; the last event before the
exec names the command and the user. The environment is read only from ``RunRequest.environ``;
under sudo (``SUDO_UID`` set) no path is ever taken from it (Kolla's CVE-2022-38060).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Dict, Iterator, Mapping, NamedTuple, Optional, Tuple

from kolla_entry.constants import (
    DEFAULT_CONFIG_DIR,
    DEFAULT_PATCH_GLOB,
    DEFAULT_STATE_FILE,
    DEFAULT_STRIP,
    ENV_ON_CONFLICT,
    ENV_OVERLAY,
    ENV_PATCHES,
    ENV_STATE_FILE,
    ENV_TARGET,
    JOURNAL_NAME,
)
from kolla_entry.errors import ConfigError, KollaEntryError, PatchConflict, PrivilegeError
from kolla_entry.fs import seam
from kolla_entry.log import get_logger
from kolla_entry.start.execute import ServiceUser
from kolla_entry.start.reader import (
    Owner,
    ServiceConfig,
    default_config_path,
    dependencies_from_env,
    load_config,
)

if TYPE_CHECKING:
    from _typeshed import StrPath

# The logger name is a field of every JSON log line: it stays what it was before the layout move.
log = get_logger("kolla_entry.runner")

#: Kolla's COPY_ONCE marker: in the container's writable layer, so a restart keeps it.
DEFAULT_CONFIGURED_MARKER = "/configured"
ENV_STRATEGY = "KOLLA_CONFIG_STRATEGY"
ENV_DEPENDENCIES = "KOLLA_ENTRY_DEPENDENCIES"
COPY_ALWAYS = "COPY_ALWAYS"
COPY_ONCE = "COPY_ONCE"
# Under sudo these would let the caller choose what root reads or writes (CVE-2022-38060).
_PATH_VARIABLES = (ENV_PATCHES, ENV_TARGET, ENV_STATE_FILE, ENV_OVERLAY)


class RunRequest(NamedTuple):
    """
    What ``kolla-entry run`` was asked; None/empty means "not given" (env or default decides).

    Args:
        command: the service argv after ``--``; overrides the config's ``command``.
        config: ``--config``; default ``config.yaml`` or ``config.json`` in ``config_dir``.
        user: ``--user``; overrides the config's ``user``.
        patterns: ``--patches`` globs; else ``KOLLA_ENTRY_PATCHES``, else the default glob.
        target: ``--target``; else ``KOLLA_ENTRY_TARGET``, else the Kolla venv's site-packages.
        strip: ``--strip``.
        fuzz: ``--fuzz``.
        on_conflict: ``--on-conflict``; else ``KOLLA_ENTRY_ON_CONFLICT``, else ``fail``.
        state_file: ``--state-file``; else ``KOLLA_ENTRY_STATE_FILE``, else the default.
        overlay: ``--overlay``; else ``KOLLA_ENTRY_OVERLAY``; else the config's ``overlay``; else the default
            overlay folder when the target is read-only and that folder exists; else patch in place (issue #16).
        config_dir: where the default config is looked for.
        configured_marker: the COPY_ONCE marker file.
        environ: the process environment (the service inherits it).
        fs: the filesystem seam.
    """

    command: Tuple[str, ...] = ()
    config: Optional[StrPath] = None
    user: Optional[str] = None
    patterns: Tuple[str, ...] = ()
    target: Optional[str] = None
    strip: int = DEFAULT_STRIP
    fuzz: int = 0
    on_conflict: Optional[str] = None
    state_file: Optional[StrPath] = None
    overlay: Optional[str] = None
    config_dir: StrPath = DEFAULT_CONFIG_DIR
    configured_marker: StrPath = DEFAULT_CONFIGURED_MARKER
    environ: Mapping[str, str] = MappingProxyType({})
    fs: seam.FileSystem = seam.REAL


class _Plan(NamedTuple):
    """Everything decided in step 1, before any effect."""

    config: ServiceConfig
    argv: Tuple[str, ...]
    user: Optional[ServiceUser]
    owner_ids: Dict[Owner, Tuple[int, int]]
    strategy: str
    on_conflict: str
    state_file: StrPath
    path_environ: Mapping[str, str]


def run(request: RunRequest) -> int:
    """
    Run the entrypoint: config, dependencies, patches, config files, check commands, privileges, exec.

    Args:
        request: the options and environment.

    Returns:
        Only after a ``DEBUG_CONTAINER`` hold ended by a signal: 0. Otherwise the process is
        replaced by the service and this never returns.

    Raises:
        ConfigError: invalid config, missing source, unresolved placeholder (TemplateError).
        DependencyTimeout: a dependency was not reachable, or a check did not pass, in time.
        PatchConflict: a patch conflicts, is invalid or refused (with ``fail``); nothing is exec'd.
        PrivilegeError: the user cannot be switched to, or the patch target is not writable.
        ExecFailed: the command cannot be exec'd.
        EnvironmentProblem: no target, unreadable patches folder.
    """
    with _step("config") as out:
        plan = _prepare(request)
        out.update(path=plan.config.path, command=plan.argv[0], strategy=plan.strategy,
                   user=plan.user.name if plan.user else None)
    waits_started = time.monotonic()
    _wait_for_dependencies(plan)
    overlay = _apply_patches(request, plan)
    _put_configs(request, plan)
    _wait_for_checks(plan, request.environ, overlay,
                     plan.config.dependency_timeout - (time.monotonic() - waits_started))
    return _start_service(plan, request.environ, overlay)


def _prepare(request: RunRequest) -> _Plan:
    """Step 1: read and check everything; raise before any effect."""
    from kolla_entry.start.execute import check_can_become, resolve_user, split_command
    from kolla_entry.start.install import resolve_owners

    environ = request.environ
    config = _read_config(request)
    if request.command:
        argv = tuple(request.command)
    elif config.command is not None:
        try:
            argv = split_command(config.command)
        except ConfigError as err:
            raise ConfigError(err.message, entry=err.entry, file=config.path) from err  # name the file too
    else:
        raise ConfigError("no command: set \"command\" in the config or pass one after --",
                          entry="command", file=config.path)
    user_name = request.user or config.user
    user = resolve_user(user_name) if user_name else None
    if user is not None:
        check_can_become(user, os.geteuid())
    dependencies = config.dependencies + dependencies_from_env(environ.get(ENV_DEPENDENCIES, ""))
    path_environ = _path_environment(environ)
    return _Plan(
        config=config._replace(dependencies=dependencies),
        argv=argv,
        user=user,
        owner_ids=dict(resolve_owners(config)),
        strategy=_strategy(environ),
        on_conflict=_on_conflict(request.on_conflict, environ),
        state_file=request.state_file or path_environ.get(ENV_STATE_FILE) or DEFAULT_STATE_FILE,
        path_environ=path_environ,
    )


def _read_config(request: RunRequest) -> ServiceConfig:
    if request.config is not None:
        return load_config(request.config)
    path = default_config_path(request.config_dir)
    if not os.path.exists(path) and request.command:
        # A one-shot job (`kolla-entry run -- keystone-manage db_sync`) may have no config at all.
        log.info("config_absent", path=path)
        return ServiceConfig(path=path)
    return load_config(path)


def _path_environment(environ: Mapping[str, str]) -> Mapping[str, str]:
    """The environment paths may come from: without the path variables under sudo."""
    if not environ.get("SUDO_UID"):
        return environ
    ignored = [name for name in _PATH_VARIABLES if name in environ]
    if ignored:
        log.warning("sudo_environment_ignored", variables=ignored,
                    reason="started through sudo: paths are never taken from the environment")
    return {key: value for key, value in environ.items() if key not in _PATH_VARIABLES}


def _strategy(environ: Mapping[str, str]) -> str:
    value = environ.get(ENV_STRATEGY) or COPY_ALWAYS
    if value not in (COPY_ALWAYS, COPY_ONCE):
        raise ConfigError(f"expected {COPY_ALWAYS} or {COPY_ONCE}, got {value!r}", entry=ENV_STRATEGY)
    return value


def _on_conflict(option: Optional[str], environ: Mapping[str, str]) -> str:
    value = option or environ.get(ENV_ON_CONFLICT) or "fail"
    if value not in ("fail", "skip"):
        raise ConfigError(f"expected fail or skip, got {value!r}", entry=ENV_ON_CONFLICT)
    return value


def _wait_for_dependencies(plan: _Plan) -> None:
    """Step 2."""
    dependencies = plan.config.dependencies
    with _step("dependencies") as out:
        out.update(count=len(dependencies))
        if not dependencies:
            out["outcome"] = "none"
            return
        from kolla_entry.start.depend import wait_for

        wait_for(dependencies, plan.config.dependency_timeout)


def _wait_for_checks(plan: _Plan, environ: Mapping[str, str], overlay: Optional[str],
                     remaining: float) -> None:
    """
    Step 4b: check commands, after the config files they read, as the service user, in the
    service's environment; the rest of ``dependency_timeout`` is theirs.
    """
    checks = plan.config.checks
    if not checks:
        return  # no event: most services have no check, and step 2 already logged the TCP waits
    from kolla_entry.start.depend import wait_for_checks
    from kolla_entry.start.execute import child_credentials

    with _step("checks") as out:
        out.update(count=len(checks))
        env = _service_environment(plan, environ, overlay)
        wait_for_checks(checks, remaining, env=env, credentials=child_credentials(plan.user))


def _apply_patches(request: RunRequest, plan: _Plan) -> Optional[str]:
    """
    Step 3: the engine, as a library call; a failed series refuses the start.

    Returns:
        The overlay folder the service must be given, in overlay mode (issue #16).
    """
    from kolla_entry.patching.discover import discover, patterns_from, resolve_target

    with _step("patches") as out:
        patterns = patterns_from(request.patterns, plan.path_environ, DEFAULT_PATCH_GLOB)
        sources = discover(patterns)
        out.update(patches=len(sources))
        overlay = _overlay(request, plan)
        if overlay is not None:
            out.update(overlay=overlay)
        if not sources and not _journal_pending(request, plan) and not _overlay_current(overlay):
            # No patch at all: the engine is never imported (start-up cost).
            out["outcome"] = "none"
            return overlay
        from pathlib import Path

        from kolla_entry.patching.engine import PatchRequest, apply_patches, check_patches

        patch_request = PatchRequest(
            target=Path(resolve_target(request.target, plan.path_environ)), patterns=patterns,
            strip=request.strip, fuzz=request.fuzz, on_conflict=plan.on_conflict, state_file=Path(plan.state_file),
        )
        if overlay is not None:
            from kolla_entry.overlay.apply import OverlayRequest, apply_overlay

            report = apply_overlay(OverlayRequest(patch_request, Path(overlay), fs=request.fs))
        else:
            if not os.access(patch_request.target, os.W_OK):
                _refuse_unwritable(check_patches(patch_request), patch_request.target, plan.on_conflict)
            report = apply_patches(patch_request)
        out.update(target=str(patch_request.target), **report.counts())
        if report.error or (report.failed and plan.on_conflict == "fail"):
            raise _series_error(report)
    return overlay


def _overlay(request: RunRequest, plan: _Plan) -> Optional[str]:
    """
    Overlay mode when asked for (``--overlay``, ``KOLLA_ENTRY_OVERLAY``, the config's ``overlay``, in that
    order), or when the target is read-only and the default overlay folder is mounted.
    """
    from kolla_entry.overlay.select import choose_overlay
    from kolla_entry.patching.discover import resolve_target

    explicit = request.overlay or plan.path_environ.get(ENV_OVERLAY) or plan.config.overlay
    if explicit:
        return choose_overlay(explicit, {}, None)
    try:
        target = resolve_target(request.target, plan.path_environ)
    except KollaEntryError:
        return None  # no target: the engine reports it when there is a patch
    return choose_overlay(None, plan.path_environ, target)


def _overlay_current(overlay: Optional[str]) -> bool:
    """Whether an overlay generation is current: with no patch left it must be cleared, never kept live."""
    return overlay is not None and os.path.lexists(os.path.join(overlay, "current"))


def _journal_pending(request: RunRequest, plan: _Plan) -> bool:
    """
    Whether a commit killed part-way left its journal in the target. The engine then finishes it
    even with no patch left (removed from the ConfigMap since), so the service never starts on a
    half-patched tree.
    """
    from kolla_entry.patching.discover import resolve_target

    try:
        target = resolve_target(request.target, plan.path_environ)
    except KollaEntryError:
        return False  # no target: nothing was ever patched here
    return os.path.lexists(os.path.join(target, JOURNAL_NAME))


def _refuse_unwritable(report: Any, target: StrPath, on_conflict: str) -> None:
    """A read-only target is fine only when no patch needs writing (all applied or skipped)."""
    if report.failed and on_conflict == "fail":
        raise _series_error(report)
    pending = [p.patch for p in report.patches if p.status == "applicable"]
    if pending:
        raise PrivilegeError(
            f"uid {os.geteuid()} cannot write the patch target, and {len(pending)} patch(es) need writing "
            f"(first: {pending[0]}); run the entrypoint as root (image USER root, then \"user\" to drop)",
            file=str(target),
        )


def _series_error(report: Any) -> KollaEntryError:
    # failure_lines() already name patch, file and hunk: the error adds no second "patch ..." prefix.
    message = "refusing to start: " + "; ".join(report.failure_lines())
    if report.error:
        message += f" (running as uid {os.geteuid()})"
    return PatchConflict(message)


def _put_configs(request: RunRequest, plan: _Plan) -> None:
    """Step 4, honouring COPY_ONCE."""
    from kolla_entry.start.install import apply_configs

    with _step("configs") as out:
        out.update(strategy=plan.strategy)
        if plan.strategy == COPY_ONCE and os.path.exists(request.configured_marker):
            out.update(outcome="kept", marker=os.fspath(request.configured_marker))
            return
        written = apply_configs(plan.config, plan.owner_ids, environ=request.environ, fs=request.fs)
        out.update(files=len(written))
        _record(plan.state_file, "configs", [item.to_dict() for item in written])
        if plan.strategy == COPY_ONCE:
            _mark_configured(request.configured_marker, request.fs)


def _mark_configured(marker: StrPath, fs: seam.FileSystem) -> None:
    # Config files are written without fsync (they are redone at every COPY_ALWAYS start); a
    # COPY_ONCE container keeps them for good, so they must reach the disk before the marker does.
    os.sync()
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        os.close(fs.open(str(marker), flags, 0o644))
    except OSError as err:
        raise ConfigError(f"cannot create the COPY_ONCE marker: {err.strerror}", file=str(marker),
                          entry=ENV_STRATEGY) from err


def _service_environment(plan: _Plan, environ: Mapping[str, str], overlay: Optional[str]) -> Dict[str, str]:
    """The environment of the service and of its check commands (which import the service's code too)."""
    from kolla_entry.start.execute import choose_my_ip, service_environment

    env = service_environment(environ, plan.user, choose_my_ip(environ))
    # The service's import hook serves exactly the overlay this start chose, or none (under sudo the
    # caller's KOLLA_ENTRY_OVERLAY was ignored here, so it must not reach the service either).
    if overlay is not None:
        env[ENV_OVERLAY] = overlay
    else:
        env.pop(ENV_OVERLAY, None)
    return env


def _start_service(plan: _Plan, environ: Mapping[str, str], overlay: Optional[str]) -> int:
    """Steps 5 and 6: privileges, then exec (or the DEBUG_CONTAINER hold)."""
    from kolla_entry.start.execute import debug_hold, drop_privileges, exec_service, is_debug_hold

    env = _service_environment(plan, environ, overlay)
    user = plan.user
    uid, gid = (user.uid, user.gid) if user else (os.geteuid(), os.getegid())
    _record(plan.state_file, "command", {"argv": list(plan.argv), "user": user.name if user else None,
                                         "uid": uid, "gid": gid})
    with _step("privileges") as out:
        if user is None:
            out.update(outcome="unchanged", uid=uid)
        else:
            drop_privileges(user)
            out.update(user=user.name, uid=user.uid, gid=user.gid, groups=list(user.groups))
    if is_debug_hold(environ):
        log.warning("debug_hold", command=list(plan.argv), user=user.name if user else None, pid=os.getpid(),
                    reason="DEBUG_CONTAINER is set: not starting the service; send SIGTERM to end")
        number = debug_hold()
        log.info("debug_hold_ended", signal=number)
        return 0
    log.info("exec", command=list(plan.argv), user=user.name if user else _current_user(), uid=os.getuid(),
             gid=os.getgid(), pid=os.getpid(), my_ip=env.get("MY_IP"))
    exec_service(plan.argv, env)


def _current_user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _record(state_file: StrPath, section: str, data: Any) -> None:
    """Record a state section; a start never fails because the state file cannot be written."""
    from kolla_entry.patching import state
    try:
        state.record(state_file, section, data)
    except (OSError, KollaEntryError) as err:
        log.warning("state_not_recorded", state_file=str(state_file), section=section, error=str(err))


@contextmanager
def _step(name: str) -> Iterator[Dict[str, Any]]:
    """Log one ``run_step`` event with outcome and duration; callers add fields to the dict."""
    started = time.monotonic()
    fields: Dict[str, Any] = {}
    try:
        yield fields
    except BaseException as err:
        log.error("run_step", step=name, outcome="failed", error_type=type(err).__name__,
                  duration_ms=_ms(started))
        raise
    outcome = fields.pop("outcome", "ok")
    log.info("run_step", step=name, outcome=outcome, duration_ms=_ms(started), **fields)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
