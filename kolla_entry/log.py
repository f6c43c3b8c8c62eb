"""
Logging set-up: structlog-style events, configured once, JSON lines when stderr is not a TTY.

Modules log through :func:`get_logger`, a lazy proxy, so importing a module costs nothing; how an
event is rendered is decided by :func:`configure` (start-up budget, issue #7).
Secret values registered with :func:`register_secret` are masked in every event by a processor
that sits in front of the renderer.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict, List, MutableMapping, Optional

_SECRETS: List[str] = []
_MASK = "***"
_OWN_FIELDS = frozenset({"event", "level", "timestamp", "logger"})
_format: Optional[str] = None
_stream: Any = None


def register_secret(value: str) -> None:
    """
    Mask ``value`` wherever it would appear in a log event from now on.

    Args:
        value: a resolved secret (a ``${file:...}`` value, a password). Empty values are ignored.
    """
    if value and value not in _SECRETS:
        _SECRETS.append(value)
        _SECRETS.sort(key=len, reverse=True)


def forget_secrets() -> None:
    """Forget every registered secret (for tests: a process that renders configs execs right after)."""
    _SECRETS.clear()


def redact(text: str) -> str:
    """
    Return ``text`` with every registered secret replaced by ``***``.
    """
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(item) for item in value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, BaseException):
        return redact(str(value))
    return value


def redact_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: mask registered secrets in every value of the event."""
    if not _SECRETS:
        return event_dict
    # Our own fixed fields never hold a rendered value; masking them (a value `info` resolved from
    # an environment variable) would only break the log's structure.
    return {key: value if key in _OWN_FIELDS else _redact_value(value) for key, value in event_dict.items()}


def add_level(_logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Processor: the event's level under ``level`` (as structlog's ``add_log_level``)."""
    event_dict["level"] = "warning" if method == "warn" else method
    return event_dict


def add_timestamp(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Processor: an ISO 8601 UTC timestamp under ``timestamp``."""
    # time, not datetime: one import less on every pod start (issue #7); same ISO 8601 form.
    now = time.time()
    event_dict["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    return event_dict


def render_json(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
    """Processor: one JSON line."""
    return json.dumps(event_dict, default=str)


#: The chain in front of the renderer, shared by structlog and the JSON fast path.
PROCESSORS = (add_level, add_timestamp, redact_processor)


def configure(log_format: Optional[str] = None, *, stream: Any = None) -> None:
    """
    Configure logging once: ``console`` on a TTY, ``json`` lines otherwise.

    Pods log JSON lines. On that path the shared processor chain runs without importing
    structlog, whose import (it pulls in asyncio) costs more than the rest of a pod start
    (issue #7). When structlog is imported anyway (console output, tests capturing events),
    events go through structlog with the same processors, so the lines are the same.

    Args:
        log_format: ``json``, ``console`` or None to decide by whether the stream is a TTY.
        stream: where events go; stderr by default (stdout is kept for ``--json`` reports).
    """
    global _format, _stream
    out = stream if stream is not None else sys.stderr
    if log_format is None:
        log_format = "console" if getattr(out, "isatty", lambda: False)() else "json"
    _format, _stream = log_format, out
    if log_format == "console" or "structlog" in sys.modules:
        _configure_structlog()


def _configure_structlog() -> None:
    import structlog

    renderer: Any = render_json if _format == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*PROCESSORS, renderer],
        logger_factory=structlog.PrintLoggerFactory(file=_stream if _stream is not None else sys.stderr),
        cache_logger_on_first_use=False,
    )


class _LazyLogger:
    """A logger that imports structlog only when it is really needed."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _emit(self, method: str, event: str, fields: Dict[str, Any]) -> None:
        if _format == "json" and "structlog" not in sys.modules:
            event_dict: MutableMapping[str, Any] = {"event": event, "logger": self._name, **fields}
            for processor in PROCESSORS:
                event_dict = processor(None, method, event_dict)
            out = _stream if _stream is not None else sys.stderr
            out.write(render_json(None, method, event_dict) + "\n")
            out.flush()
            return
        import structlog

        getattr(structlog.get_logger(), method)(event, logger=self._name, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)


def get_logger(name: str) -> _LazyLogger:
    """
    Return a module logger; events are ``snake_case`` facts with values in keys.

    Args:
        name: the module name (``__name__``).
    """
    return _LazyLogger(name)
