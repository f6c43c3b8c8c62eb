"""
Logging set-up: structlog, configured once, JSON lines when stderr is not a TTY.

Modules log through :func:`get_logger`, a lazy proxy, so importing a module costs nothing and
structlog itself is only imported when the first event is logged (start-up budget, issue #7).
Secret values registered with :func:`register_secret` are masked in every event by a processor
that sits in front of the renderer.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, MutableMapping, Optional

_SECRETS: List[str] = []
_MASK = "***"
_configured = False
_format: Optional[str] = None


def register_secret(value: str) -> None:
    """
    Mask ``value`` wherever it would appear in a log event from now on.

    Args:
        value: a resolved secret (a ``${file:...}`` value, a password). Empty values are ignored.
    """
    if value and value not in _SECRETS:
        _SECRETS.append(value)
        _SECRETS.sort(key=len, reverse=True)


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
    return {key: _redact_value(value) for key, value in event_dict.items()}


def configure(log_format: Optional[str] = None, *, stream: Any = None) -> None:
    """
    Configure structlog once: ``console`` on a TTY, ``json`` lines otherwise.

    Args:
        log_format: ``json``, ``console`` or None to decide by whether stderr is a TTY.
        stream: where events go; stderr by default (stdout is kept for ``--json`` reports).
    """
    global _configured, _format
    import structlog

    out = stream if stream is not None else sys.stderr
    if log_format is None:
        log_format = "console" if getattr(out, "isatty", lambda: False)() else "json"
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_processor,
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    _configured = True
    _format = log_format


class _LazyLogger:
    """A logger that imports structlog only when an event is emitted."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _emit(self, method: str, event: str, fields: Dict[str, Any]) -> None:
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
