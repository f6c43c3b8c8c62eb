"""
The ``kolla-entry`` command: options in, one library call, exit code out.

Exit codes: 0 all fine; 1 a patch or config failure (conflict, invalid, refused, unresolved
placeholder, dependency timeout); 2 bad invocation or environment (no target, unreadable folder);
3 an unexpected error (a bug: the traceback is printed); 130 interrupted.

Every command is declared with click in ``kolla_entry.cli.commands``. The one command every pod runs at
every start, ``kolla-entry run`` with plain options, is read here without importing click, which
costs about a quarter of a pod start (issue #7); anything else (``--help``, an unknown option,
a value click must check) takes the click path, so behaviour and messages stay click's.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from kolla_entry import log as logging_setup
from kolla_entry.errors import KollaEntryError

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ENVIRONMENT = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130

#: ``run``'s options that take a value, as the click command declares them (a test keeps the two in
#: step): option -> parameter. ``--patches`` may repeat.
RUN_VALUE_OPTIONS = {
    "--patches": "patches", "--target": "target", "--strip": "strip", "-p": "strip", "--fuzz": "fuzz",
    "-F": "fuzz", "--on-conflict": "on_conflict", "--state-file": "state_file", "--config": "config_path",
    "--user": "user", "--configured-marker": "configured_marker", "--log-format": "log_format",
    "--overlay": "overlay",
}
_INT_RANGES = {"strip": (0, 64), "fuzz": (0, 3)}
_CHOICES = {"on_conflict": ("fail", "skip"), "log_format": ("json", "console")}


def run_from_options(*, patches: Sequence[str], target: Optional[str], strip: int, fuzz: int,
                     on_conflict: Optional[str], state_file: Optional[str], config_path: Optional[str],
                     user: Optional[str], configured_marker: Optional[str], command: Sequence[str],
                     overlay: Optional[str] = None) -> int:
    """
    Build the :class:`~kolla_entry.start.runner.RunRequest` from ``run``'s options and run it.

    Returns:
        Only after a ``DEBUG_CONTAINER`` hold: its exit code; otherwise the service replaces us.
    """
    from kolla_entry.start.runner import DEFAULT_CONFIGURED_MARKER, RunRequest, run

    request = RunRequest(
        command=tuple(command), config=config_path or None, user=user,
        patterns=tuple(patches), target=target, strip=strip, fuzz=fuzz, on_conflict=on_conflict,
        state_file=state_file or None, environ=os.environ,
        configured_marker=configured_marker or DEFAULT_CONFIGURED_MARKER, overlay=overlay,
    )
    return run(request)


def parse_plain_run(args: Sequence[str]) -> Optional[Tuple[Optional[str], Dict[str, Any]]]:
    """
    Read ``[--log-format F] run [OPTIONS] [--] CMD...`` without click, or None for click to do it.

    ``--log-format`` may also be among ``run``'s options; the later one wins.

    Returns:
        The log format and the keyword arguments of :func:`run_from_options`; None for anything
        this reader does not vouch for (another command, ``--help``, an unknown or malformed option).
    """
    args = list(args)
    log_format: Optional[str] = None
    if args[:1] and args[0].startswith("--log-format"):
        name, value, args = _take_value(args)
        if name != "--log-format" or value is None:
            return None
        log_format = value
    if args[:1] != ["run"]:
        return None
    params: Dict[str, Any] = {"patches": [], "strip": 1, "fuzz": 0, "on_conflict": None, "state_file": None,
                              "config_path": None, "user": None, "configured_marker": None, "target": None,
                              "overlay": None}
    rest = args[1:]
    while rest and rest[0].startswith("-") and rest[0] not in ("-", "--"):
        name, value, rest = _take_value(rest)
        param = RUN_VALUE_OPTIONS.get(name)
        if param is None or value is None:
            return None
        if param == "log_format":  # also after the command name, as users type it (issue #12)
            log_format = value
        elif param == "patches":
            params["patches"].append(value)
        else:
            params[param] = value
    params["command"] = rest[1:] if rest[:1] == ["--"] else rest
    return _checked(log_format, params)


def _take_value(args: List[str]) -> Tuple[str, Optional[str], List[str]]:
    name, equals, value = args[0].partition("=")
    if equals:
        return name, value, args[1:]
    return (name, args[1], args[2:]) if len(args) > 1 else (name, None, [])


def _checked(log_format: Optional[str], params: Dict[str, Any]) -> Optional[Tuple[Optional[str], Dict[str, Any]]]:
    if log_format is not None and log_format not in _CHOICES["log_format"]:
        return None
    if params["on_conflict"] is not None and params["on_conflict"] not in _CHOICES["on_conflict"]:
        return None
    for param, (low, high) in _INT_RANGES.items():
        value = params[param]
        if isinstance(value, str):
            # isdecimal, not isdigit: "²" is a digit that int() refuses (a traceback, exit 3).
            if not value.isdecimal() or not low <= int(value) <= high:
                return None
            params[param] = int(value)
    return log_format, params


def main(argv: Optional[Sequence[str]] = None) -> None:
    """
    Run the CLI and exit with the documented code.

    Library errors become one ``kolla-entry: ...`` line on stderr and their exit code;
    anything else is a bug: traceback and exit 3.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        plain_run = parse_plain_run(args)
        if plain_run is not None:
            logging_setup.configure(plain_run[0])
            code = run_from_options(**plain_run[1])
        else:
            from kolla_entry.cli.commands import invoke

            code = invoke(args)
    except KollaEntryError as err:
        sys.stderr.write(f"kolla-entry: {logging_setup.redact(str(err))}\n")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit:
        raise
    except BaseException:
        import traceback  # only on this path: a bug (start-up budget, issue #7)

        traceback.print_exc()
        sys.stderr.write("kolla-entry: unexpected error (a bug): please report it with the traceback above\n")
        sys.exit(EXIT_BUG)
    sys.exit(code)
