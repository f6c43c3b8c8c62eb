"""
The click half of the ``kolla-entry`` command: every subcommand, its options and help.

Imported by ``cli.main`` only when needed: a pod start (``kolla-entry run ...`` with plain options)
is parsed by ``cli``'s fast path without importing click (start-up budget, issue #7).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar

import click

from kolla_entry import log as logging_setup
from kolla_entry.cli import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, run_from_options
from kolla_entry.constants import (
    DEFAULT_OVERLAY,
    DEFAULT_PATCH_GLOB,
    DEFAULT_STATE_FILE,
    DEFAULT_STRIP,
    ENV_ON_CONFLICT,
    ENV_STATE_FILE,
)

F = TypeVar("F", bound=Callable[..., Any])


def _configure_logging(_ctx: click.Context, _param: click.Parameter, value: Optional[str]) -> None:
    if value is not None:
        logging_setup.configure(value)


def log_format_option(func: F) -> F:
    """``--log-format`` after the command name too, as users type it (issue #12): it overrides the group's."""
    option = click.option("--log-format", type=click.Choice(["json", "console"]), default=None, expose_value=False,
                          callback=_configure_logging, help="How events are written on stderr (as before the command).")
    return option(func)


def patch_options(func: F) -> F:
    """The options every patching command shares (``check-patches``, ``apply-patches``, ``run``)."""
    decorators = [
        click.option("--patches", "patches", multiple=True, metavar="GLOB",
                     help=f"Patch files to use (repeatable). Env KOLLA_ENTRY_PATCHES, colon-separated. "
                          f"Default {DEFAULT_PATCH_GLOB}."),
        click.option("--target", metavar="DIR", default=None,
                     help="The site-packages to patch. Env KOLLA_ENTRY_TARGET. Default: the Kolla venv's."),
        click.option("--strip", "-p", type=click.IntRange(0, 64), default=DEFAULT_STRIP, show_default=True,
                     help="Leading path components to strip from patch paths."),
        click.option("--fuzz", "-F", type=click.IntRange(0, 3), default=0, show_default=True,
                     help="Context lines a hunk may drop at its edges, as GNU patch --fuzz."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def overlay_option(func: F) -> F:
    """``--overlay DIR``: serve the patches from an overlay folder, never writing the target (issue #16)."""
    return click.option(
        "--overlay", metavar="DIR", default=None,
        help=f"Write the patched files to this folder (an emptyDir), not into the target; the image's import "
             f"hook serves them. Env KOLLA_ENTRY_OVERLAY. Default: in place, or {DEFAULT_OVERLAY} when the "
             f"target is read-only and that folder exists.")(func)


def _series(request: Any, overlay: Optional[str], *, dry_run: bool) -> Any:
    """Run the series in place or, when chosen, in an overlay: the one library call of check/apply."""
    from kolla_entry.overlay.select import choose_overlay

    folder = choose_overlay(overlay, os.environ, request.target)
    if folder is None:
        from kolla_entry.patching.engine import apply_patches, check_patches

        return check_patches(request) if dry_run else apply_patches(request)
    from kolla_entry.overlay.apply import OverlayRequest, apply_overlay, check_overlay

    overlay_request = OverlayRequest(request, Path(folder))
    return check_overlay(overlay_request) if dry_run else apply_overlay(overlay_request)


def _patch_request(patches: Sequence[str], target: Optional[str], strip: int, fuzz: int,
                   on_conflict: str = "fail", state_file: Optional[str] = None) -> Any:
    from kolla_entry.patching.discover import patterns_from, resolve_target
    from kolla_entry.patching.engine import PatchRequest

    return PatchRequest(
        target=Path(resolve_target(target, os.environ)),
        patterns=patterns_from(patches, os.environ, DEFAULT_PATCH_GLOB),
        strip=strip, fuzz=fuzz, on_conflict=on_conflict,
        state_file=Path(state_file) if state_file else None,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-format", type=click.Choice(["json", "console"]), default=None,
              help="How events are written on stderr. Default: console on a TTY, JSON lines otherwise.")
@click.version_option(package_name="kolla-entry")
def cli(log_format: Optional[str]) -> None:
    """Container entrypoint for Kolla-style OpenStack images: hot-fix patches, config files, exec."""
    logging_setup.configure(log_format)


@cli.command("check-patches")
@log_format_option
@patch_options
@overlay_option
@click.option("--json", "as_json", is_flag=True, help="Print the machine-readable report on stdout.")
def check_patches_command(patches: Sequence[str], target: Optional[str], strip: int, fuzz: int,
                          overlay: Optional[str], as_json: bool) -> None:
    """Dry run: report what apply-patches would do, write nothing."""
    report = _series(_patch_request(patches, target, strip, fuzz), overlay, dry_run=True)
    _finish_series(report, as_json)


@cli.command("apply-patches")
@log_format_option
@patch_options
@click.option("--on-conflict", type=click.Choice(["fail", "skip"]), envvar=ENV_ON_CONFLICT, default="fail",
              show_default=True, help="fail: write nothing if any patch fails; skip: leave failed patches out.")
@click.option("--state-file", envvar=ENV_STATE_FILE, default=DEFAULT_STATE_FILE, show_default=True,
              help="Where to record what was done (read by `kolla-entry status`).")
@overlay_option
@click.option("--json", "as_json", is_flag=True, help="Print the machine-readable report on stdout.")
def apply_patches_command(patches: Sequence[str], target: Optional[str], strip: int, fuzz: int,
                          on_conflict: str, state_file: str, overlay: Optional[str], as_json: bool) -> None:
    """Apply the hot-fix patches to the target (or into an overlay), all or nothing."""
    report = _series(_patch_request(patches, target, strip, fuzz, on_conflict, state_file), overlay, dry_run=False)
    _finish_series(report, as_json)


# No ignore_unknown_options: a mistyped option before the command must be a usage error (exit 2), not the
# program to exec after patches and configs were done; the service's own options follow CMD untouched.
@cli.command("run", context_settings={"allow_interspersed_args": False})
@log_format_option
@patch_options
@click.option("--on-conflict", type=click.Choice(["fail", "skip"]), default=None,
              help="fail (default): refuse to start if any patch fails. Env KOLLA_ENTRY_ON_CONFLICT.")
@click.option("--state-file", default=None,
              help=f"Where to record what was done. Env KOLLA_ENTRY_STATE_FILE. Default {DEFAULT_STATE_FILE}.")
@click.option("--config", "config_path", default=None, metavar="PATH",
              help="The Kolla config.json/config.yaml. Default /var/lib/kolla/config_files/config.{yaml,json}.")
@click.option("--user", default=None, help="Run the service as this user (overrides the config's \"user\").")
@click.option("--configured-marker", default=None, hidden=True, help="The COPY_ONCE marker file (tests).")
@overlay_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run_command(patches: Sequence[str], target: Optional[str], strip: int, fuzz: int, on_conflict: Optional[str],
                state_file: Optional[str], config_path: Optional[str], user: Optional[str],
                configured_marker: Optional[str], overlay: Optional[str], command: Sequence[str]) -> None:
    """Apply patches, put config files in place, drop privileges and exec the service."""
    sys.exit(run_from_options(patches=patches, target=target, strip=strip, fuzz=fuzz, on_conflict=on_conflict,
                              state_file=state_file, config_path=config_path, user=user,
                              configured_marker=configured_marker, command=command, overlay=overlay))


@cli.command("install-overlay-hook")
@log_format_option
@click.option("--target", metavar="DIR", default=None,
              help="The service venv's site-packages. Env KOLLA_ENTRY_TARGET. Default: the Kolla venv's.")
def install_overlay_hook_command(target: Optional[str]) -> None:
    """Image build step: install the import hook that serves an overlay (kolla-entry-overlay.pth)."""
    from kolla_entry.overlay.build import install_hook
    from kolla_entry.patching.discover import resolve_target

    for path in install_hook(Path(resolve_target(target, os.environ))):
        click.echo(f"installed {path}")


def _finish_series(report: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    for line in report.failure_lines():
        click.echo(f"kolla-entry: {line}", err=True)
    sys.exit(EXIT_FAILED if report.failed else EXIT_OK)


@cli.command("status")
@log_format_option
@click.option("--state-file", envvar=ENV_STATE_FILE, default=DEFAULT_STATE_FILE, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the state file as it is.")
def status_command(state_file: str, as_json: bool) -> None:
    """Show which hot-fixes and config files are live in this container."""
    from kolla_entry.patching import state
    data = state.load(Path(state_file))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data:
        click.echo(f"no state recorded at {state_file}: kolla-entry has not applied anything here")
        return
    click.echo(_format_status(data))


def _format_status(data: Dict[str, Any]) -> str:
    lines = [f"updated: {data.get('updated', '?')}"]
    patches = data.get("patches") or {}
    if patches:
        lines.append(f"target: {patches.get('target')}  written: {patches.get('written')}")
        if "import_ready" in patches:
            lines.append(f"modules import-ready (valid bytecode written): {patches.get('import_ready')}")
        if patches.get("overlay"):
            lines.append(f"overlay: {patches.get('overlay')}  generation: {patches.get('generation')}")
        for item in patches.get("patches", []):
            # !s: a format width on a missing (None) status raises TypeError, a traceback at 3 a.m.
            lines.append(f"  {item.get('status')!s:<16} {item.get('patch')}  sha256:{str(item.get('sha256'))[:12]}")
            lines.extend(f"      {f.get('status')!s:<16} {f.get('path')}{_bytecode_note(f)}"
                         for f in item.get("files", []))
    configs = data.get("configs")
    if configs:
        lines.append("config files:")
        for item in configs if isinstance(configs, list) else configs.get("files", []):
            lines.append(f"  {item.get('dest')}  {item.get('owner')} {item.get('perm')} "
                         f"sha256:{str(item.get('sha256'))[:12]}")
    command = data.get("command")
    if command:
        lines.append(f"command: {json.dumps(command)}")
    return "\n".join(lines)


def _bytecode_note(entry: Dict[str, Any]) -> str:
    # Per file (issue #13): whether each service process loads the fix from bytecode or compiles it.
    bytecode = entry.get("bytecode")
    return f"  bytecode: {bytecode}" if bytecode else ""


def invoke(args: List[str]) -> int:
    """
    Run the click command group on ``args``; click's own usage errors become exit code 2.

    Library errors (``KollaEntryError``) propagate to ``cli.main``.
    """
    try:
        cli.main(args=args, prog_name="kolla-entry", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as err:
        err.show()
        return EXIT_ENVIRONMENT
    except click.exceptions.Abort:
        return EXIT_INTERRUPTED
    return EXIT_OK
