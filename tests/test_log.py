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
