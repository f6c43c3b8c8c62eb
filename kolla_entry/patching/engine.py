"""
The patch engine's library entry points: :func:`check_patches` and :func:`apply_patches`.

``discover -> parse -> plan (in memory) -> commit -> report/state``. Nothing here prints or exits;
``kolla_entry.cli`` and ``kolla_entry.start.runner`` call these and map the result to exit codes.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Tuple, Union

from kolla_entry.constants import DEFAULT_PATCH_GLOB, DEFAULT_STRIP, JOURNAL_NAME, MAX_PATCH_BYTES
from kolla_entry.errors import EnvironmentProblem, PatchConflict, PatchRefused, WriteFailed
from kolla_entry.log import get_logger
from kolla_entry.patching.discover import PatchSource, discover
from kolla_entry.patching.model import SKIPPED
from kolla_entry.patching.report import FAILED_STATUSES, FileReport, PatchReport, SeriesReport

if TYPE_CHECKING:
    from kolla_entry.patching.plan import PatchInput, SeriesPlan
    from kolla_entry.patching.pycache import BytecodePlan
    from kolla_entry.patching.transaction import FileChange

#: Why a commit wrote nothing (rolled back or refused before its first write).
CommitError = Union[WriteFailed, PatchRefused, PatchConflict]

# The logger name is a field of every JSON log line: it stays what it was before the layout move.
log = get_logger("kolla_entry.engine")

# The crash journal (constants.JOURNAL_NAME) lives in the target itself: the same filesystem and container
# layer as the files it protects, so a restart after a kill -9 always finds it (a tmpfs /run would lose it).


@dataclass(frozen=True)
class PatchRequest:
    """
    What to patch and how.

    Args:
        target: the site-packages folder (already resolved, see ``discover.resolve_target``).
        patterns: patch globs, in the order given.
        strip: leading path components to strip (``-p``).
        fuzz: context lines that may be dropped at a hunk's edges.
        on_conflict: ``fail`` (nothing written if any patch fails) or ``skip`` (leave those out).
        state_file: where ``apply_patches`` records what it did; None records nothing.
    """

    target: Path
    patterns: Tuple[str, ...] = (DEFAULT_PATCH_GLOB,)
    strip: int = DEFAULT_STRIP
    fuzz: int = 0
    on_conflict: str = "fail"
    state_file: Optional[Path] = None


def check_patches(request: PatchRequest) -> SeriesReport:
    """
    Work out the whole series in memory and report it; write nothing.

    Raises:
        EnvironmentProblem: the target is missing or a patches folder or file is unreadable.
    """
    return _run(request, dry_run=True)


def apply_patches(request: PatchRequest) -> SeriesReport:
    """
    Work out the series, then commit it all or nothing and record the state file.

    Raises:
        EnvironmentProblem: the target is missing or a patches folder or file is unreadable.
    """
    return _run(request, dry_run=False)


def _run(request: PatchRequest, *, dry_run: bool) -> SeriesReport:
    started = time.monotonic()
    if not request.target.is_dir():
        raise EnvironmentProblem("the target site-packages folder does not exist", file=str(request.target))
    journal = request.target / JOURNAL_NAME
    if journal.exists():
        if dry_run:
            # The tree may be half old, half new: any status reported now would mislead.
            raise EnvironmentProblem("an interrupted apply left its journal in the target; run apply-patches "
                                     "(or restart the pod) to finish it, then check again", file=str(journal))
        else:
            _recover(request.target, journal)
    sources = discover(request.patterns)
    report = SeriesReport(target=str(request.target), dry_run=dry_run)
    outcome: Optional[_Outcome] = None
    if sources:
        # Only a start with patches pays for the parser, the matcher and the transaction (issue #7).
        report, outcome = _series(request, report, sources, journal, dry_run=dry_run)
    for patch_report in report.patches:
        _log_patch(patch_report)
    if outcome is not None:
        _log_commit(request, outcome)
    if not dry_run and request.state_file is not None:
        _record(request.state_file, report)
    log.info("series_done", target=str(request.target), dry_run=dry_run, written=report.written,
             import_ready=len(report.import_ready),
             duration_ms=round((time.monotonic() - started) * 1000, 1), **report.counts())
    return report


def _read(source: PatchSource) -> PatchInput:
    from kolla_entry.patching.plan import PatchInput

    try:
        if not stat.S_ISREG(os.stat(source.path).st_mode):
            return PatchInput(source.name, "", b"", "not a regular file (a folder or device named *.patch); "
                              "remove it from the patches folder")
        with open(source.path, "rb") as handle:
            data = handle.read(MAX_PATCH_BYTES + 1)
    except FileNotFoundError:
        return PatchInput(source.name, "", b"", "a dangling symlink: the ConfigMap key points nowhere; "
                          "check the volume")
    except OSError as err:
        raise EnvironmentProblem(f"cannot read the patch file: {err.strerror}", patch=source.name) from err
    if len(data) > MAX_PATCH_BYTES:
        return PatchInput(source.name, "", b"",
                          f"the patch file is larger than {MAX_PATCH_BYTES // (1024 * 1024)} MiB; split it "
                          "into several patches")
    return PatchInput(source.name, hashlib.sha256(data).hexdigest(), data)


def _recover(target: Path, journal: Path) -> None:
    from kolla_entry.patching.transaction import recover

    done = recover(target, journal)
    if done:
        log.warning("journal_recovered", target=str(target), journal=str(journal), action=done)


class _Outcome(NamedTuple):
    """What a commit did, logged after the patches' lines (the verdict may come during the commit)."""

    changes: Tuple[FileChange, ...]
    bytecode: Optional[BytecodePlan]
    error: Optional[CommitError]


def _series(request: PatchRequest, report: SeriesReport, sources: List[PatchSource], journal: Path, *,
            dry_run: bool) -> Tuple[SeriesReport, Optional[_Outcome]]:
    """Plan the series and, unless a dry run, commit it; the report and what the commit did."""
    from kolla_entry.patching import unpatchable
    from kolla_entry.patching.compilecheck import NotCompiled

    rule = unpatchable.declared_rule(unpatchable.load(request.target))
    inputs = [_read(source) for source in sources]

    def plan(defer: bool) -> SeriesPlan:
        return unpatchable.plan_with_rules(inputs, request.target, rule, strip=request.strip, fuzz=request.fuzz,
                                           on_conflict=request.on_conflict, dry_run=dry_run, defer=defer)

    # An apply commits while the compile check still runs in workers (issue #13): the commit
    # stages the texts meanwhile and waits for the verdict before its swap.
    series = plan(not dry_run)
    try:
        if dry_run:
            return replace(report, patches=series.reports), None
        try:
            outcome = _commit(request, series, journal)
            series.confirm()  # a commit refused before its swap, or nothing to write, did not wait for it
        except NotCompiled:
            # A module does not compile and the commit rolled back: plan again checking each patch
            # as it comes, which names that patch (and, with skip, commits the others).
            series.close()
            series = plan(False)
            outcome = _commit(request, series, journal)
        report = replace(report, patches=series.reports)
    finally:
        series.close()
    if outcome is None:
        return report, None
    if outcome.error is not None:
        return replace(report, error=str(outcome.error), error_operation=_operation(outcome.error)), outcome
    ready = () if outcome.bytecode is None else outcome.bytecode.ready
    return replace(report, written=True, changed_files=tuple(c.path for c in outcome.changes),
                   import_ready=ready), outcome


def _commit(request: PatchRequest, series: SeriesPlan, journal: Path) -> Optional[_Outcome]:
    """
    Commit the plan's changes with their bytecode; None when there is nothing to write.

    Raises:
        NotCompiled: the plan's compile check found a module that does not compile (rolled back).
    """
    changes = series.changes
    if not changes:
        return None
    from kolla_entry.patching import pycache
    from kolla_entry.patching.transaction import commit

    try:
        # Inside the try: a folder swapped for a symlink after the check is refused here too.
        bytecode = pycache.plan_bytecode(request.target, changes, series.code)
        # One transaction for modules and their bytecode (issue #13): a rollback or a crash
        # recovery restores old text with old bytecode, never new text behind an old pyc.
        commit(request.target, (*changes, *bytecode.changes), journal=journal, ready=series.confirm)
    except (WriteFailed, PatchRefused, PatchConflict) as err:
        return _Outcome(changes, None, err)
    return _Outcome(changes, bytecode, None)


def _operation(err: CommitError) -> str:
    return err.operation if isinstance(err, WriteFailed) else err.status


def _log_commit(request: PatchRequest, outcome: _Outcome) -> None:
    err = outcome.error
    if err is not None:
        log.error("commit_failed", target=str(request.target), operation=_operation(err), file=err.file,
                  reason=err.message, rolled_back=True)
        return
    for change in outcome.changes:
        log.info("file_written", path=change.path, deleted=change.content is None)
    bytecode = outcome.bytecode
    assert bytecode is not None
    if bytecode.removed:
        log.info("pycache_invalidated", files=len(bytecode.removed))
    if bytecode.reason:
        log.warning("bytecode_not_written", reason=bytecode.reason)
    # How many patched modules each service process will load without compiling (issue #13).
    log.info("modules_import_ready", modules=len(bytecode.ready),
             of=sum(1 for c in outcome.changes if c.content is not None and c.path.endswith(".py")))


def _log_patch(report: PatchReport) -> None:
    if report.status == SKIPPED:
        log.info("patch_skipped", patch=report.patch, looked_for=report.file, reason=report.reason)
        return
    for file_report in report.files:
        _log_file(report.patch, file_report)
    event = "patch_" + report.status.replace("-", "_")
    if report.failed:
        log.error(event, patch=report.patch, file=report.file, hunk=report.hunk, reason=report.reason)
    else:
        log.info(event, patch=report.patch, sha256=report.sha256, files=len(report.files))


def _log_file(patch: str, report: FileReport) -> None:
    event = "file_" + report.status.replace("-", "_")
    fields: Dict[str, Any] = {"patch": patch, "path": report.path}
    if report.operation:
        fields["operation"] = report.operation
    if report.hunks:
        fields["hunks"] = [{"index": h.index, "line": h.line, "offset": h.offset, "fuzz": h.fuzz}
                           for h in report.hunks]
    if report.status == SKIPPED:
        log.warning(event, reason=report.reason, **fields)
    elif report.status in FAILED_STATUSES:
        log.error(event, reason=report.reason, **fields)
    else:
        log.info(event, **fields)


def _record(state_file: Path, report: SeriesReport) -> None:
    from kolla_entry.patching import state
    try:
        state.record(state_file, "patches", _state_section(report))
    except (WriteFailed, OSError) as err:
        # The patches are in place (or refused) either way; a read-only /run must not stop a start.
        log.warning("state_not_recorded", state_file=str(state_file), reason=str(err))


def _state_section(report: SeriesReport) -> Dict[str, Any]:
    return {
        "target": report.target,
        "written": report.written,
        "error": report.error,
        "patches": [
            {"patch": p.patch, "sha256": p.sha256, "status": p.status, "reason": p.reason,
             "files": [_state_file(f, report) for f in p.files]}
            for p in report.patches
        ],
        "import_ready": len(report.import_ready),
    }


def _state_file(file: FileReport, report: SeriesReport) -> Dict[str, Any]:
    entry: Dict[str, Any] = {"path": file.path, "status": file.status}
    written = report.written and file.operation != "delete" and file.path in report.changed_files
    if written and file.path.endswith(".py"):
        # Per file, what Python will find (issue #13): bytecode it uses, or none (compiled at import).
        entry["bytecode"] = "import-ready" if file.path in report.import_ready else "none"
    return entry
