"""Logging: JSON lines, one event per decision, secrets masked."""

from __future__ import annotations

import io
import json

import structlog.testing

from kolla_entry import log


def test_json_lines_with_level_and_timestamp() -> None:
    out = io.StringIO()
    log.configure("json", stream=out)
    log.get_logger("kolla_entry.x").info("patch_skipped", patch="/p/a.patch", looked_for="nova/x.py")
    event = json.loads(out.getvalue())
    assert event["event"] == "patch_skipped"
    assert event["level"] == "info"
    assert event["looked_for"] == "nova/x.py"
    assert "timestamp" in event


def test_registered_secrets_never_reach_the_output() -> None:
    out = io.StringIO()
    log.configure("json", stream=out)
    log.register_secret("s3cr3t-MARKER")
    log.get_logger("t").error("template_failed", reason="value s3cr3t-MARKER was bad",
                              nested={"x": ["s3cr3t-MARKER"]})
    text = out.getvalue()
    assert "s3cr3t-MARKER" not in text
    assert "***" in text
    assert log.redact("a s3cr3t-MARKER b") == "a *** b"


def test_events_can_be_captured_in_tests() -> None:
    with structlog.testing.capture_logs() as events:
        log.get_logger("t").warning("file_skipped", path="doc/x.rst")
    assert events == [{"event": "file_skipped", "path": "doc/x.rst", "logger": "t", "log_level": "warning"}]


def test_fast_json_path_matches_structlog_output() -> None:
    """Pods log without importing structlog; the lines must be those structlog would write."""
    import subprocess
    import sys

    code = (
        "import io, sys, json\n"
        "from kolla_entry import log\n"
        "log.configure('json')\n"
        "log.get_logger('m').info('file_written', path='a/b.py', n=3)\n"
        "assert 'structlog' not in sys.modules, 'structlog was imported'\n"
    )
    fast = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    slow = subprocess.run([sys.executable, "-c", "import structlog\n" + code.replace(
        "assert 'structlog' not in sys.modules, 'structlog was imported'\n", "")],
        capture_output=True, text=True, check=True)
    fast_event, slow_event = json.loads(fast.stderr), json.loads(slow.stderr)
    assert fast_event.pop("timestamp")[:4] == slow_event.pop("timestamp")[:4]
    assert fast_event == slow_event == {"event": "file_written", "logger": "m", "path": "a/b.py", "n": 3,
                                        "level": "info"}


def test_masking_never_breaks_the_event_structure() -> None:
    out = io.StringIO()
    log.configure("json", stream=out)
    log.register_secret("info")
    try:
        log.get_logger("t").info("config_file_written", dest="/etc/info/x.conf")
    finally:
        log.forget_secrets()
    event = json.loads(out.getvalue())
    assert event["level"] == "info" and event["event"] == "config_file_written"
    assert event["dest"] == "/etc/***/x.conf"
