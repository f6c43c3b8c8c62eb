"""
Working out a patch series in memory: strip, confinement, relevance (``relevance``), matching, compile check.

Nothing here writes. Reads of the target go through ``confine.read_target``; each patch sees the
results of the earlier ones through an in-memory view of the target (``view.SeriesView``). The result is a
value: one report per patch and the net file changes of the whole series.
"""

from __future__ import annotations

import functools
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from kolla_entry.errors import PatchConflict, PatchInvalid, PatchRefused
from kolla_entry.patching import compilecheck, confine, match, parse, relevance, reverse
from kolla_entry.patching.model import (
    ALREADY_APPLIED,
    APPLICABLE,
    APPLIED,
    CONFLICT,
    COPY,
    CREATE,
    DELETE,
    INVALID,
    RENAME,
    SKIPPED,
    FilePatch,
    FileResult,
    Hunk,
    HunkResult,
)
from kolla_entry.patching.report import FileReport, PatchReport
from kolla_entry.patching.transaction import FileChange
from kolla_entry.patching.view import FileState, PatchWork, SeriesView

if TYPE_CHECKING:
    from kolla_entry.patching.bytecode import Code

_NEW_FILE_MODE = 0o644


@dataclass(frozen=True)
class PatchInput:
    """
    One patch file as read: its name, sha256 and bytes, or why it could not be used (``error``).
    """

    name: str
    sha256: str
    data: bytes
    error: str = ""


@dataclass(frozen=True)
class SeriesPlan:
    """
    The reports of every patch, in order, and the net changes to commit (maybe none).

    ``code`` maps each written module to the marshalled code of its new content, as the compile
    check made it (issue #13: the commit writes it as bytecode); empty for a dry run. A deferred
    plan (``plan_series(defer=True)``) may still be compiling: then ``compilation`` runs, each
    ``code`` value waits for its module, and the reports hold only if :meth:`confirm` returns.
    Close the plan to stop the workers.
    """

    reports: Tuple[PatchReport, ...]
    changes: Tuple[FileChange, ...]
    code: Mapping[str, Code] = field(default_factory=dict)
    compilation: Optional[compilecheck.Compilation] = None

    def confirm(self) -> None:
        """
        Return once every checked module compiled (at once when nothing is compiling).

        Raises:
            NotCompiled: a module does not compile; plan again without ``defer`` to name the patch.
        """
        if self.compilation is not None:
            self.compilation.confirm()

    def close(self) -> None:
        """Stop the compile workers, if any still run."""
        if self.compilation is not None:
            self.compilation.close()


def plan_series(
    patches: Sequence[PatchInput],
    root: Path,
    *,
    strip: int,
    fuzz: int,
    on_conflict: str,
    dry_run: bool,
    defer: bool = False,
) -> SeriesPlan:
    """
    Work out a series of patches, in order, in memory.

    Args:
        patches: the patch files, in application order.
        root: the target site-packages.
        strip: leading components to strip from patch paths.
        fuzz: context lines a hunk may drop at its edges.
        on_conflict: ``fail``: any failed patch means no changes at all; ``skip``: failed
            patches are left out and the rest is kept.
        dry_run: report ``applicable`` instead of ``applied``.
        defer: when the compile check runs in workers, return before it ends (not for a dry
            run): the commit then overlaps it, see :class:`SeriesPlan`.

    Returns:
        The reports and the net changes (empty when nothing is to be written).
    """
    modules: List[compilecheck.Module] = []

    def collect(work: PatchWork) -> None:
        modules.extend((rel, _content(work, rel)) for rel in compilecheck.python_modules(work.writes))

    plan = _plan_series(patches, root, strip=strip, fuzz=fuzz, on_conflict=on_conflict, dry_run=dry_run,
                        check=collect)
    keep = () if dry_run else compilecheck.final_modules(modules, plan.changes)
    compilation = compilecheck.start(modules, keep)
    if defer and not dry_run and plan.changes and compilation.running:
        code = {modules[index][0]: functools.partial(compilation.code, index) for index in keep}
        return replace(plan, code=code, compilation=compilation)
    with compilation:
        compiled = compilation.wait()
    if compiled is not None:
        return replace(plan, code={modules[index][0]: code for index, code in compiled.items()})
    # A patch leaves a module that does not compile: plan again checking each patch as it comes,
    # so that patch alone is the conflict and the ones after it see the series without it.
    del modules[:]
    plan = _plan_series(patches, root, strip=strip, fuzz=fuzz, on_conflict=on_conflict, dry_run=dry_run,
                        check=_check_compiles)
    if dry_run or not plan.changes:
        return plan
    # Only with --on-conflict skip after such a failure: the modules left are compiled once more
    # for their bytecode (a rare path; the common one compiles each module once).
    written = [(c.path, c.content) for c in plan.changes if c.content is not None and c.path.endswith(".py")]
    compiled = compilecheck.compile_all(written, range(len(written))) or {}
    return replace(plan, code={written[index][0]: code for index, code in compiled.items()})


def _content(work: PatchWork, rel: str) -> bytes:
    state = work.writes[rel]
    assert state is not None
    return state.content


def _plan_series(patches: Sequence[PatchInput], root: Path, *, strip: int, fuzz: int, on_conflict: str,
                 dry_run: bool, check: Callable[[PatchWork], None]) -> SeriesPlan:
    view = SeriesView(root)
    reports: List[PatchReport] = []
    for item in patches:
        if item.error:
            reports.append(PatchReport(patch=item.name, status=INVALID, sha256=item.sha256, reason=item.error))
            continue
        report, writes = plan_patch(item.name, item.sha256, item.data, view, strip=strip, fuzz=fuzz,
                                    check=check)
        if not report.failed:
            view.update(writes)
        reports.append(report)
    if on_conflict == "fail" and any(report.failed for report in reports):
        return SeriesPlan(tuple(_as_applicable(r) for r in reports), ())
    if dry_run:
        return SeriesPlan(tuple(_as_applicable(r) for r in reports), view.net_changes())
    return SeriesPlan(tuple(reports), view.net_changes())


def _as_applicable(report: PatchReport) -> PatchReport:
    if report.status != APPLIED:
        return report
    files = tuple(replace(f, status=APPLICABLE) if f.status == APPLIED else f for f in report.files)
    return replace(report, status=APPLICABLE, files=files)


def plan_patch(
    name: str, sha256: str, data: bytes, view: SeriesView, *, strip: int, fuzz: int,
    check: Optional[Callable[[PatchWork], None]] = None,
) -> Tuple[PatchReport, Dict[str, Optional[FileState]]]:
    """
    Work out one patch against the view.

    Args:
        check: what to do with the patched modules: compile them now (the default, raising the
            conflict) or collect them for :func:`plan_series` to compile all at once.

    Returns:
        The patch's report and, when it applies, the file states it writes.
    """
    try:
        patch = parse.parse_patch(data, name=name)
        paths = [_target_paths(fp, strip) for fp in patch.files]
    except (PatchInvalid, PatchRefused) as err:
        return _failed(name, sha256, err), {}
    try:
        paths = [relevance.chosen_names(fp, pair, view) for fp, pair in zip(patch.files, paths)]
        unrelated = relevance.unrelated_packages(patch.files, paths, view)
        if unrelated is not None:
            first = relevance.relevance_path(patch.files[0], paths[0])
            reason = f"{unrelated} not installed in this image ({first}): the patch belongs to another image"
            return PatchReport(patch=name, status=SKIPPED, sha256=sha256, reason=reason, file=first), {}
        work = PatchWork(view)
        files = [_plan_file(fp, old, new, work, fuzz) for fp, (old, new) in zip(patch.files, paths)]
        (check or _check_compiles)(work)
    except (PatchInvalid, PatchRefused, PatchConflict) as err:
        if isinstance(err, PatchConflict) and _series_already_applied(patch.files, paths, view):
            return _already_applied(name, sha256, patch.files, paths), {}
        return _failed(name, sha256, err), {}
    report = _patch_report(name, sha256, files)
    if report.failed and _series_already_applied(patch.files, paths, view):
        return _already_applied(name, sha256, patch.files, paths), {}
    return report, work.writes


def _series_already_applied(files: Sequence[FilePatch], paths: Sequence[Tuple[Optional[str], Optional[str]]],
                            view: SeriesView) -> bool:
    # Only a patch that names a file twice (several commits) needs undoing as a whole; for the
    # others the per-hunk rule of `match` decides, which keeps near-identical twins apart.
    names = [new if fp.kind == CREATE else old for fp, (old, new) in zip(files, paths)]
    if len(set(names)) == len(names):
        return False

    def read(rel: str) -> Optional[bytes]:
        state = view.get(rel)
        return None if state is None else state.content

    try:
        return reverse.undoes_cleanly([(fp, old, new) for fp, (old, new) in zip(files, paths)], read)
    except (PatchInvalid, PatchRefused):
        # A path the forward plan never reached (through a regular file, say): not "already applied";
        # the patch keeps the failure the forward plan found (atheris).
        return False


def _already_applied(name: str, sha256: str, files: Sequence[FilePatch],
                     paths: Sequence[Tuple[Optional[str], Optional[str]]]) -> PatchReport:
    reports = tuple(FileReport(path=str(new if fp.kind == CREATE else old), status=ALREADY_APPLIED)
                    for fp, (old, new) in zip(files, paths))
    return PatchReport(patch=name, status=ALREADY_APPLIED, sha256=sha256, files=reports,
                       reason="every commit of the series is already in place")


def _failed(name: str, sha256: str, err: PatchInvalid | PatchRefused | PatchConflict) -> PatchReport:
    files: Tuple[FileReport, ...] = ()
    if err.file is not None:
        files = (FileReport(path=err.file, status=err.status, reason=err.message,
                            hunks=getattr(err, "hunks", ())),)
    return PatchReport(patch=name, status=err.status, sha256=sha256, reason=err.message, files=files,
                       hunk=err.hunk, file=err.file)


def _target_paths(fp: FilePatch, strip: int) -> Tuple[Optional[str], Optional[str]]:
    return _strip_one(fp.old_path, strip, fp), _strip_one(fp.new_path, strip, fp)


def _strip_one(path: Optional[str], strip: int, fp: FilePatch) -> Optional[str]:
    if path is None:
        return None
    stripped = parse.strip_path(path, strip)
    if stripped is None:
        raise PatchInvalid(
            f"the path has fewer than {strip + 1} components, so --strip {strip} leaves nothing; "
            "make the patch from site-packages with a/ b/ prefixes or change --strip",
            file=path,
        )
    if strip and stripped.startswith("/"):
        raise PatchRefused(
            f"absolute path once --strip {strip} is applied to {path}; paths must be relative to the target "
            "(diff -ruN a/ b/ writes a//x: make the diff from the folder names without trailing slashes)",
            file=stripped,
        )
    return confine.validate_relpath(stripped)


def _plan_file(
    fp: FilePatch, old: Optional[str], new: Optional[str], work: PatchWork, fuzz: int
) -> FileReport:
    shown = new if fp.kind == CREATE else old
    assert shown is not None
    if not work.view.top_level_exists(shown):
        return FileReport(path=shown, status=SKIPPED,
                          reason=f"{shown.split('/', 1)[0]} is not installed in the target")
    if fp.kind == CREATE:
        assert new is not None
        return _plan_create(fp, new, work)
    assert old is not None
    if fp.kind == DELETE:
        return _plan_delete(fp, old, work, fuzz)
    if fp.kind in (RENAME, COPY):
        assert new is not None
        return _plan_move(fp, old, new, work, fuzz)
    return _plan_modify(fp, old, work, fuzz)


def _new_side(hunks: Sequence[Hunk]) -> bytes:
    return b"".join(line.text + (b"\n" if line.newline else b"") for h in hunks for line in h.new_lines)


def _mode_bits(mode: Optional[int], default: int, rel: str) -> int:
    if mode is None:
        return default
    # A mode line is any run of octal digits: one too big for stat (atheris found it) or of another
    # file type is not a regular file's mode (git writes 100644 or 100755).
    if mode >> 16 or stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        raise PatchInvalid(f"mode {mode:o} is not a regular file's mode (100644 or 100755)", file=rel)
    return stat.S_IMODE(mode)


def _plan_create(fp: FilePatch, rel: str, work: PatchWork) -> FileReport:
    content = _new_side(fp.hunks)
    mode = _mode_bits(fp.new_mode, _NEW_FILE_MODE, rel)
    current = work.get(rel)
    if current is not None:
        if current.content == content:
            return FileReport(path=rel, status=ALREADY_APPLIED)
        raise PatchConflict("the patch creates this file but a different one is already there", file=rel)
    work.put(rel, FileState(content, mode))
    return FileReport(path=rel, status=APPLIED, operation="create",
                      hunks=tuple(HunkResult(index=h.index, status=APPLIED, line=1) for h in fp.hunks))


def _plan_delete(fp: FilePatch, rel: str, work: PatchWork, fuzz: int) -> FileReport:
    current = work.get(rel)
    if current is None:
        return FileReport(path=rel, status=ALREADY_APPLIED, operation="delete")
    result = _match(fp, rel, current.content, fuzz)
    if result.status != APPLIED or result.content:
        raise PatchConflict("the patch deletes this file but its content differs from the patch's",
                            file=rel, hunk=_first_bad_hunk(result))
    work.put(rel, None)
    return FileReport(path=rel, status=APPLIED, operation="delete", hunks=result.hunks)


def _plan_move(fp: FilePatch, old: str, new: str, work: PatchWork, fuzz: int) -> FileReport:
    source, dest = work.get(old), work.get(new)
    operation = "rename" if fp.kind == RENAME else "copy"
    if dest is not None and (source is None or fp.kind == COPY):
        # Already done when the destination holds the patched content.
        result = _match(fp, new, dest.content, fuzz) if fp.hunks else None
        if result is None or result.status == ALREADY_APPLIED:
            return FileReport(path=new, status=ALREADY_APPLIED, operation=operation,
                              hunks=() if result is None else result.hunks)
    if source is None or dest is not None:
        why = "its source is missing" if source is None else "its destination already exists"
        raise PatchConflict(f"cannot {operation} {old} to {new}: {why}", file=old)
    result = _match(fp, old, source.content, fuzz) if fp.hunks else None
    if result is not None and result.status != APPLIED:
        raise PatchConflict(f"the {operation}d file does not match the patch", file=old,
                            hunk=_first_bad_hunk(result))
    content = source.content if result is None or result.content is None else result.content
    work.put(new, FileState(content, _mode_bits(fp.new_mode, source.mode, new)))
    if fp.kind == RENAME:
        work.put(old, None)
    return FileReport(path=new, status=APPLIED, operation=operation,
                      hunks=() if result is None else result.hunks)


def _plan_modify(fp: FilePatch, rel: str, work: PatchWork, fuzz: int) -> FileReport:
    current = work.get(rel)
    if current is None:
        raise PatchConflict(f"{rel} is missing, although {rel.split('/', 1)[0]}/ is installed in this image: "
                            "the patch does not fit this image's version", file=rel)
    new_mode = _mode_bits(fp.new_mode, current.mode, rel)
    if not fp.hunks:
        status = ALREADY_APPLIED if new_mode == current.mode else APPLIED
        work.put(rel, FileState(current.content, new_mode))
        return FileReport(path=rel, status=status, operation="mode")
    result = _match(fp, rel, current.content, fuzz)
    if result.status == CONFLICT:
        raise _hunk_conflict(rel, result)
    if result.status == ALREADY_APPLIED and new_mode == current.mode:
        return FileReport(path=rel, status=ALREADY_APPLIED, hunks=result.hunks)
    assert result.content is not None
    work.put(rel, FileState(result.content, new_mode))
    return FileReport(path=rel, status=APPLIED, operation="modify", hunks=result.hunks)


def _match(fp: FilePatch, rel: str, content: bytes, fuzz: int) -> FileResult:
    return match.apply_hunks(content, fp.hunks, fuzz=fuzz)


def _first_bad_hunk(result: FileResult) -> Optional[int]:
    for hunk in result.hunks:
        if hunk.status == CONFLICT:
            return hunk.index
    return None


class _HunkConflict(PatchConflict):
    """A conflict that carries the per-hunk results, for the report."""

    def __init__(self, message: str, *, file: str, hunk: Optional[int],
                 hunks: Tuple[HunkResult, ...]) -> None:
        super().__init__(message, file=file, hunk=hunk)
        self.hunks = hunks


def _hunk_conflict(rel: str, result: FileResult) -> PatchConflict:
    bad = _first_bad_hunk(result)
    reason = result.reason
    if bad is not None:
        reason = next(h.reason for h in result.hunks if h.index == bad) or reason
    return _HunkConflict(reason or "the patch does not fit this file", file=rel, hunk=bad, hunks=result.hunks)


def _check_compiles(work: PatchWork) -> None:
    # A hot-fix that leaves a module unimportable must never reach a running service.
    for rel in compilecheck.python_modules(work.writes):
        error = compilecheck.compile_error(rel, _content(work, rel))
        if error is not None:
            raise error


def _patch_report(name: str, sha256: str, files: List[FileReport]) -> PatchReport:
    relevant = [f for f in files if f.status != SKIPPED]
    done = [f for f in relevant if f.status == ALREADY_APPLIED]
    todo = [f for f in relevant if f.status == APPLIED]
    if done and todo:
        reason = (f"partly applied: {done[0].path} already has its changes but {todo[0].path} does not; "
                  "restore the files or fix the patch")
        return PatchReport(patch=name, status=CONFLICT, sha256=sha256, reason=reason, files=tuple(files),
                           file=todo[0].path)
    status = APPLIED if todo else ALREADY_APPLIED
    return PatchReport(patch=name, status=status, sha256=sha256, files=tuple(files))
