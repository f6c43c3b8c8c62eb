"""
Overlay mode's entry points: :func:`check_overlay` and :func:`apply_overlay` (issue #16).

``discover -> reuse check (manifest) -> plan against the image (kolla_entry.patching, unchanged)
-> rules (what an overlay cannot serve: conflict) -> pycache (the pycs, decided as in place) -> layout
-> build + switch -> report / state``.

The image's site-packages is only read. Statuses, series semantics (``fail``/``skip``), the compile
check and the bytecode of the patched modules (issue #13) are the patch engine's own; only the commit
goes to the overlay. A restart whose patches,
options and image are unchanged reuses the current generation without planning, and reports each
applied patch ``already-applied``, as a restart in place does.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from kolla_entry import __version__
from kolla_entry.constants import JOURNAL_NAME
from kolla_entry.errors import EnvironmentProblem, PatchRefused, WriteFailed
from kolla_entry.fs.seam import REAL, FileSystem
from kolla_entry.log import get_logger
from kolla_entry.overlay import build, hook, manifest
from kolla_entry.overlay.layout import plan_layout
from kolla_entry.overlay.rules import unservable
from kolla_entry.patching import engine, pycache, unpatchable
from kolla_entry.patching.discover import discover
from kolla_entry.patching.engine import PatchRequest
from kolla_entry.patching.model import ALREADY_APPLIED, APPLIED
from kolla_entry.patching.plan import PatchInput, SeriesPlan
from kolla_entry.patching.report import FileReport, PatchReport, SeriesReport

log = get_logger("kolla_entry.overlay")


@dataclass(frozen=True)
class OverlayRequest:
    """
    A patch request served from an overlay.

    Args:
        patch: what to patch (``target`` is the image site-packages, only read).
        overlay: the writable overlay folder (must exist: an emptyDir).
        fs: the filesystem seam.
        durable: fsync the generation before switching to it.
    """

    patch: PatchRequest
    overlay: Path
    fs: FileSystem = REAL
    durable: bool = True


def check_overlay(request: OverlayRequest) -> SeriesReport:
    """
    Work out the series as overlay mode would serve it; write nothing.

    Raises:
        EnvironmentProblem: no target, overlay folder or import hook; unreadable patches.
    """
    return _run(request, dry_run=True)


def apply_overlay(request: OverlayRequest) -> SeriesReport:
    """
    Serve the series from the overlay: reuse the current generation or build a new one, all or nothing.

    Raises:
        EnvironmentProblem: no target, overlay folder or import hook; unreadable patches.
    """
    return _run(request, dry_run=False)


def _run(request: OverlayRequest, *, dry_run: bool) -> SeriesReport:
    started = time.monotonic()
    target = request.patch.target
    _check_environment(request)
    inputs = [engine._read(source) for source in discover(request.patch.patterns)]
    key = _key(request.patch, inputs)
    report = None if dry_run else _reused(request, key)
    if report is None:
        plan = _plan(request.patch, inputs, dry_run=dry_run)
        report = SeriesReport(target=str(target), dry_run=dry_run, patches=plan.reports)
        for patch_report in report.patches:
            engine._log_patch(patch_report)
        # As in place: with `fail` a failed series changes nothing (the current generation stays).
        if not dry_run and not (report.failed and request.patch.on_conflict == "fail"):
            report = _commit(request, key, report, plan)
    if not dry_run and request.patch.state_file is not None:
        _record(request, report)
    log.info("series_done", target=str(target), overlay=str(request.overlay), dry_run=dry_run,
             written=report.written, import_ready=len(report.import_ready),
             duration_ms=round((time.monotonic() - started) * 1000, 1), **report.counts())
    return report


def _record(request: OverlayRequest, report: SeriesReport) -> None:
    """The engine's state section, plus the overlay folder and its current generation (for ``status``)."""
    from kolla_entry.patching import state

    assert request.patch.state_file is not None
    generation = build.current_generation(request.overlay)
    section = {**engine._state_section(report), "overlay": str(request.overlay),
               "generation": None if generation is None else generation.name}
    try:
        state.record(request.patch.state_file, "patches", section)
    except (WriteFailed, OSError) as err:
        # As in place: the patches are served (or refused) either way; a read-only /run must not stop a start.
        log.warning("state_not_recorded", state_file=str(request.patch.state_file), reason=str(err))


def _check_environment(request: OverlayRequest) -> None:
    target = request.patch.target
    if not target.is_dir():
        raise EnvironmentProblem("the target site-packages folder does not exist", file=str(target))
    if not request.overlay.is_dir():
        raise EnvironmentProblem("the overlay folder does not exist; mount a writable volume (an emptyDir) there",
                                 file=str(request.overlay))
    if os.path.lexists(target / JOURNAL_NAME):
        raise EnvironmentProblem("an interrupted apply left its journal in the image's site-packages: the image "
                                 "is half patched; run apply-patches without --overlay once or rebuild the image",
                                 file=str(target / JOURNAL_NAME))
    problem = build.hook_problem(target)
    if problem is not None:
        raise EnvironmentProblem(problem, file=str(target))


def _key(request: PatchRequest, inputs: Sequence[PatchInput]) -> manifest.Key:
    patches = tuple((item.name, item.sha256 or f"error: {item.error}") for item in inputs)
    return manifest.Key(__version__, request.strip, request.fuzz, request.on_conflict, patches)


def _reused(request: OverlayRequest, key: manifest.Key) -> SeriesReport | None:
    generation = build.current_generation(request.overlay)
    if generation is None:
        return None
    distrust = build.untrusted(generation)
    if distrust is not None:
        log.warning("overlay_stale", generation=generation.name, reason=distrust)
        return None
    recorded = manifest.load(generation)
    tree = generation / hook.TREE
    if recorded is None:
        log.info("overlay_stale", generation=generation.name, reason="no readable manifest")
        return None
    dropped = build.drop_bytecode(tree, recorded["tree"], fs=request.fs)
    reason = manifest.stale_reason(recorded, key, request.patch.target, tree)
    if reason is not None:
        log.info("overlay_stale", generation=generation.name, reason=reason)
        return None
    build.remove_stale(request.overlay, keep=generation.name, fs=request.fs)
    reports = tuple(_reused_report(item) for item in recorded["reports"])
    log.info("overlay_reused", overlay=str(request.overlay), generation=generation.name, bytecode_dropped=dropped)
    return SeriesReport(target=str(request.patch.target), dry_run=False, patches=reports)


def _reused_report(item: Dict[str, Any]) -> PatchReport:
    def status(value: str) -> str:
        return ALREADY_APPLIED if value == APPLIED else value

    files = tuple(FileReport(path=f["path"], status=status(f["status"]), operation=f.get("operation", ""))
                  for f in item["files"])
    reason = "served from the overlay built at an earlier start" if item["status"] == APPLIED else item["reason"]
    return PatchReport(patch=item["patch"], status=status(item["status"]), sha256=item["sha256"], reason=reason,
                       files=files, file=item.get("file"), hunk=item.get("hunk"))


def _plan(request: PatchRequest, inputs: List[PatchInput], *, dry_run: bool) -> SeriesPlan:
    declared = unpatchable.declared_rule(unpatchable.load(request.target))

    def rule(rel: str) -> Optional[str]:
        why = unservable(rel)
        if why is not None:
            return f"overlay mode cannot serve this file: {why}; apply this fix in the image instead"
        return declared(rel)

    return unpatchable.plan_with_rules(inputs, request.target, rule, strip=request.strip, fuzz=request.fuzz,
                                       on_conflict=request.on_conflict, dry_run=dry_run)


def _commit(request: OverlayRequest, key: manifest.Key, report: SeriesReport, plan: SeriesPlan) -> SeriesReport:
    overlay, target = request.overlay, request.patch.target
    if not plan.changes:
        if build.clear(overlay, fs=request.fs):
            log.info("overlay_cleared", overlay=str(overlay), reason="no change to serve")
        return report
    image = os.path.realpath(target)
    try:
        # Decided against the image exactly as in place (its invalidation mode, its interpreter);
        # only the pycs to write are used: the layout already leaves out every stale one.
        bytecode = pycache.plan_bytecode(target, plan.changes, plan.code)
    except (WriteFailed, PatchRefused) as err:
        operation = err.operation if isinstance(err, WriteFailed) else err.status
        log.error("commit_failed", target=str(overlay), operation=operation, file=err.file, reason=err.message,
                  rolled_back=True)
        return replace(report, error=str(err), error_operation=operation)
    pycs = [c for c in bytecode.changes if c.bytecode is not None]
    layout = plan_layout(plan.changes, image, lambda folder: _listdir(target / folder), pycs)
    facts = manifest.image_facts(target, _named_paths(plan), layout)
    document = manifest.document(key, image, facts, manifest.tree_facts(layout),
                                 [_stored(r) for r in report.patches])
    hidden = "".join(f"{name}\n" for name in layout.hidden).encode()
    try:
        generation = build.build(overlay, layout, image=image, hidden=hidden, manifest=document, fs=request.fs,
                                 durable=request.durable)
    except WriteFailed as err:
        log.error("commit_failed", target=str(overlay), operation=err.operation, file=err.file, reason=err.message,
                  rolled_back=True)
        return replace(report, error=str(err), error_operation=err.operation)
    build.remove_stale(overlay, keep=generation.name, fs=request.fs)
    log.info("overlay_built", overlay=str(overlay), generation=generation.name, files=len(layout.files),
             links=len(layout.links), hidden=len(layout.hidden), bytecode=len(layout.bytecode))
    if bytecode.reason:
        log.warning("bytecode_not_written", reason=bytecode.reason)
    # As in place (issue #13): how many patched modules each service process loads without compiling.
    log.info("modules_import_ready", modules=len(bytecode.ready),
             of=sum(1 for c in plan.changes if c.content is not None and c.path.endswith(".py")))
    return replace(report, written=True, changed_files=tuple(c.path for c in plan.changes),
                   import_ready=bytecode.ready)


def _named_paths(plan: SeriesPlan) -> List[str]:
    # The image's declaration too: a rebuilt image that declares a served file unpatchable is a change.
    paths = [unpatchable.DECLARATION_NAME, *(c.path for c in plan.changes)]
    for patch_report in plan.reports:
        paths.extend(f.path for f in patch_report.files)
        if patch_report.file:
            paths.append(patch_report.file)
    return paths


def _stored(report: PatchReport) -> Dict[str, Any]:
    return {"patch": report.patch, "status": report.status, "sha256": report.sha256, "reason": report.reason,
            "file": report.file, "hunk": report.hunk,
            "files": [{"path": f.path, "status": f.status, "operation": f.operation} for f in report.files]}


def _listdir(folder: Path) -> List[str] | None:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
