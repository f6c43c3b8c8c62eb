"""The command line: exit codes, --json schema, status, log format."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from tests.helpers import configmap_dir

EXAMPLE = Path(__file__).parent.parent / "examples" / "small"


def _kolla_entry(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kolla_entry", *args], capture_output=True, text=True,
                          env=env, check=False)


def _layout(tmp_path: Path, extra: dict[str, bytes] | None = None) -> List[str]:
    target = tmp_path / "site-packages"
    shutil.copytree(EXAMPLE / "site-packages", target)
    patches = {p.name: p.read_bytes() for p in (EXAMPLE / "patches").glob("*.patch")}
    patches.update(extra or {})
    configmap_dir(tmp_path, "greeter-patches", patches)
    return ["--patches", f"{tmp_path}/*-patches/*.patch", "--target", str(target)]


def test_check_patches_json_schema_and_exit_0(tmp_path: Path) -> None:
    done = _kolla_entry("check-patches", *_layout(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) >= {"target", "patches", "summary"}
    first = report["patches"][0]
    assert set(first) >= {"patch", "status", "reason", "files", "sha256"}
    assert first["status"] == "applicable"
    hunk = first["files"][0]["hunks"][0]
    assert set(hunk) == {"index", "status", "offset", "fuzz", "line"}
    assert report["summary"] == {"applicable": 3, "skipped": 1}


def test_events_are_json_lines_on_stderr_when_not_a_tty(tmp_path: Path) -> None:
    done = _kolla_entry("check-patches", *_layout(tmp_path))
    events = [json.loads(line) for line in done.stderr.splitlines()]
    names = [e["event"] for e in events]
    assert "patch_skipped" in names and names[-1] == "series_done"
    skipped = next(e for e in events if e["event"] == "patch_skipped")
    assert skipped["looked_for"] == "nova/compute/claims.py"


def test_apply_conflict_exits_1_with_one_clear_line(tmp_path: Path) -> None:
    bad = b"--- a/greeter/hello.py\n+++ b/greeter/hello.py\n@@ -1,1 +1,1 @@\n-nothing like this\n+x\n"
    done = _kolla_entry("apply-patches", *_layout(tmp_path, {"0009-bad.patch": bad}),
                        "--state-file", str(tmp_path / "state.json"))
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("kolla-entry:")]
    assert len(lines) == 1
    assert "0009-bad.patch" in lines[0] and "greeter/hello.py" in lines[0] and "hunk #1" in lines[0]


def test_json_conflict_reason_names_the_file_and_the_hunk(tmp_path: Path) -> None:
    """Issue #12: a CI gate prints `reason` alone, so it says which file and hunk itself."""
    bad = b"--- a/greeter/hello.py\n+++ b/greeter/hello.py\n@@ -1,1 +1,1 @@\n-nothing like this\n+x\n"
    done = _kolla_entry("check-patches", *_layout(tmp_path, {"0009-bad.patch": bad}), "--json")
    assert done.returncode == 1
    [failed] = [p for p in json.loads(done.stdout)["patches"] if p["status"] == "conflict"]
    assert failed["reason"].startswith("greeter/hello.py hunk #1: context not found near line 1"), failed["reason"]
    line = next(x for x in done.stderr.splitlines() if x.startswith("kolla-entry:"))
    assert line.count("greeter/hello.py") == 1 and line.count("hunk #1") == 1, line


def test_missing_target_exits_2(tmp_path: Path) -> None:
    done = _kolla_entry("check-patches", "--target", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert "does not exist" in done.stderr


def test_bad_option_exits_2(tmp_path: Path) -> None:
    done = _kolla_entry("apply-patches", "--on-conflict", "maybe")
    assert done.returncode == 2


def test_status_prints_what_apply_recorded(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    applied = _kolla_entry("apply-patches", *_layout(tmp_path), "--state-file", str(state))
    assert applied.returncode == 0, applied.stderr
    done = _kolla_entry("status", "--state-file", str(state))
    assert done.returncode == 0
    assert "applied" in done.stdout and "0001-strip-names.patch" in done.stdout
    as_json = json.loads(_kolla_entry("status", "--state-file", str(state), "--json").stdout)
    assert as_json["patches"]["written"] is True


def test_apply_logs_and_status_shows_the_modules_made_import_ready(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    applied = _kolla_entry("--log-format", "json", "apply-patches", *_layout(tmp_path), "--state-file", str(state))
    assert applied.returncode == 0, applied.stderr
    events = [json.loads(line) for line in applied.stderr.splitlines() if line.startswith("{")]
    ready = [e for e in events if e["event"] == "modules_import_ready"]
    assert [(e["modules"], e["of"]) for e in ready] == [(2, 2)]
    done = _kolla_entry("status", "--state-file", str(state))
    assert "modules import-ready (valid bytecode written): 2" in done.stdout
    assert re.search(r"applied +greeter/version.py  bytecode: import-ready", done.stdout), done.stdout


def test_status_of_a_hand_edited_state_file_prints_without_a_traceback(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"patches": {"patches": [{"patch": "/p/0001.patch", "files": [{"path": "a.py"}]}]}}')
    done = _kolla_entry("status", "--state-file", str(state))
    assert done.returncode == 0, done.stderr
    assert "/p/0001.patch" in done.stdout and "a.py" in done.stdout


@pytest.mark.parametrize(("option", "value"), [("--bogus", "json"), ("--log-format", "xml")])
def test_run_with_an_unknown_option_is_a_usage_error_before_anything_is_done(tmp_path: Path, option: str,
                                                                            value: str) -> None:
    """A typo before the command is not exec'd as the program after patches and configs were done."""
    state = tmp_path / "state.json"
    done = _kolla_entry("run", option, value, "--state-file", str(state), "--", "/bin/true")
    assert done.returncode == 2, done.stderr
    assert option in done.stderr and not state.exists()


@pytest.mark.parametrize("command", ["check-patches", "apply-patches"])
def test_log_format_is_accepted_after_the_subcommand(tmp_path: Path, command: str) -> None:
    """Issue #12: `kolla-entry apply-patches --log-format console ...`, as users type it."""
    done = _kolla_entry(command, "--log-format", "console", *_layout(tmp_path),
                        "--state-file" if command == "apply-patches" else "--json",
                        *([str(tmp_path / "state.json")] if command == "apply-patches" else []))
    assert done.returncode == 0, done.stderr
    assert "series_done" in done.stderr and not done.stderr.lstrip().startswith("{")


def test_log_format_after_status_is_accepted(tmp_path: Path) -> None:
    done = _kolla_entry("status", "--log-format", "json", "--state-file", str(tmp_path / "none.json"))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("fast", [True, False], ids=["plain-reader", "click"])
def test_log_format_after_run(tmp_path: Path, fast: bool) -> None:
    """Both readers of `run` take it: the pod-start reader, and click (`-p1` is a form only click reads)."""
    (tmp_path / "config.json").write_text("{}")
    args = ["run", "--log-format", "console", *([] if fast else ["-p1"]), "--state-file", str(tmp_path / "state.json"),
            "--patches", f"{tmp_path}/no/*.patch", "--target", str(tmp_path), "--config", str(tmp_path / "config.json")]
    done = _kolla_entry(*args, "/bin/true")
    assert done.returncode == 0, done.stderr
    assert "run_step" in done.stderr and not done.stderr.lstrip().startswith("{")


def test_run_passes_the_options_after_the_command_to_it(tmp_path: Path) -> None:
    out = tmp_path / "argv"
    (tmp_path / "config.json").write_text("{}")
    done = _kolla_entry("run", "--state-file", str(tmp_path / "state.json"), "--patches", f"{tmp_path}/no/*.patch",
                        "--config", str(tmp_path / "config.json"), "/bin/sh", "-c",
                        f'echo "$@" > {out}', "sh", "--bogus", "-x")
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "--bogus -x\n"


def test_patches_from_environment(tmp_path: Path) -> None:
    args = _layout(tmp_path)
    env = {"KOLLA_ENTRY_PATCHES": args[1], "KOLLA_ENTRY_TARGET": args[3], "PATH": "/usr/bin:/bin"}
    done = _kolla_entry("check-patches", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"]["applicable"] == 3


def test_plain_run_options_are_the_click_commands_options() -> None:
    """The click-free reader of `run` knows exactly the options the click command declares."""
    from kolla_entry.cli import RUN_VALUE_OPTIONS
    from kolla_entry.cli.commands import cli

    command = cli.commands["run"]
    declared = {opt: param.name for param in command.params if not getattr(param, "is_flag", False)
                for opt in param.opts if opt.startswith("-")}
    assert declared == RUN_VALUE_OPTIONS


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "--", "true"], {"command": ["true"], "patches": []}),
    (["run", "--patches", "/a/*.patch", "--patches=/b/*.patch", "-p", "2", "--fuzz=1", "svc", "--debug"],
     {"patches": ["/a/*.patch", "/b/*.patch"], "strip": 2, "fuzz": 1, "command": ["svc", "--debug"]}),
    (["--log-format", "json", "run", "--config", "/c.json", "--user", "nova", "--on-conflict", "skip"],
     {"config_path": "/c.json", "user": "nova", "on_conflict": "skip", "command": []}),
    (["run", "--log-format=console", "--config", "/c.json", "svc"], {"config_path": "/c.json", "command": ["svc"]}),
], ids=["dashdash", "options-then-command", "log-format", "log-format-after-run"])
def test_plain_run_is_read_without_click(args: List[str], expected: Dict[str, Any]) -> None:
    from kolla_entry.cli import parse_plain_run

    parsed = parse_plain_run(args)
    assert parsed is not None
    assert {key: parsed[1][key] for key in expected} == expected
    assert parsed[0] == next((a.split("=")[-1] for a in args if a.startswith("--log-format=")),
                             "json" if "--log-format" in args else None)


@pytest.mark.parametrize("args", [
    ["run", "--help"], ["run", "--strip", "99"], ["run", "--fuzz", "x"], ["run", "--on-conflict", "maybe"],
    ["run", "--unknown", "1"], ["run", "--target"], ["--log-format", "xml", "run"], ["status"],
    ["run", "-p1"], ["run", "--strip", "\u00b2"], ["run", "--log-format", "xml"],
])
def test_anything_unusual_is_left_to_click(args: List[str]) -> None:
    from kolla_entry.cli import parse_plain_run

    assert parse_plain_run(args) is None


def test_a_pod_start_does_not_import_click(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"command": "/bin/true"}')
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kolla_entry", "run", "--patches", f"{tmp_path}/none/*.patch",
         "--target", str(tmp_path), "--state-file", str(tmp_path / "state.json"), "--config",
         str(tmp_path / "config.json")],
        capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "| click" not in done.stderr and "|   click" not in done.stderr
    assert " kolla_entry.start.runner" in done.stderr
