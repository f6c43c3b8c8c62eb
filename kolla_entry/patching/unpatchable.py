"""
Files a hot-fix cannot reach, in place and in overlay mode: such a change makes its patch a ``conflict``.

Some images copy or compile files of site-packages elsewhere at build time: horizon collects its
static files into ``STATIC_ROOT`` and compresses its CSS/JS (and the blocks of the templates that hold
them) offline. The service then serves the build's copy, so a patch to the original would be reported
``applied`` and never reach a user: a silent partial fix (issue #16). The image declares such files in
``site-packages/kolla-entry-unpatchable.json``, ``{"<why>": ["<path relative to site-packages>", ...]}``;
:func:`plan_with_rules` turns a patch that changes one into a ``conflict`` naming the file and the why.

Overlay mode adds its own rules (:mod:`kolla_entry.overlay.rules`) through the same function.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence

from kolla_entry.errors import EnvironmentProblem
from kolla_entry.patching.model import APPLICABLE, APPLIED, CONFLICT
from kolla_entry.patching.plan import PatchInput, SeriesPlan, _as_applicable, plan_series
from kolla_entry.patching.report import PatchReport

#: The image's declaration, at the top of the target site-packages.
DECLARATION_NAME = "kolla-entry-unpatchable.json"

#: Why a change to a path (relative to the target) would not be served, as a whole reason, or None.
Rule = Callable[[str], Optional[str]]


def load(target: Path) -> Dict[str, str]:
    """
    The image's declared unpatchable files: path -> why (empty when the image declares none).

    Raises:
        EnvironmentProblem: the declaration is unreadable or not ``{"<why>": ["<path>", ...]}``.
    """
    path = target / DECLARATION_NAME
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise EnvironmentProblem(f"the image's declaration of unpatchable files is unreadable ({err}); "
                                 "fix the image build that wrote it", file=str(path)) from err
    if not isinstance(document, dict) or not all(
            isinstance(why, str) and isinstance(files, list) and all(isinstance(f, str) for f in files)
            for why, files in document.items()):
        raise EnvironmentProblem('the image\'s declaration of unpatchable files is not {"<why>": ["<path>", ...]}; '
                                 "fix the image build that wrote it", file=str(path))
    return {rel: why for why, files in document.items() for rel in files}


def declared_rule(declared: Mapping[str, str]) -> Rule:
    """
    The rule of an image's declaration (see :func:`load`).
    """
    def rule(rel: str) -> Optional[str]:
        why = declared.get(rel)
        if why is None:
            return None
        return f"the image declares this file unpatchable: {why}; apply this fix in the image instead"
    return rule


def plan_with_rules(inputs: Sequence[PatchInput], target: Path, rule: Rule, *, strip: int, fuzz: int,
                    on_conflict: str, dry_run: bool, defer: bool = False) -> SeriesPlan:
    """
    Plan the series as :func:`~kolla_entry.patching.plan.plan_series` does, then make each patch that
    changes a file ``rule`` refuses a ``conflict``: with ``fail`` nothing is written; with ``skip`` the
    series is planned again without those patches, as the engine leaves out any failed patch.
    """
    def run(items: Sequence[PatchInput]) -> SeriesPlan:
        return plan_series(items, target, strip=strip, fuzz=fuzz, on_conflict=on_conflict, dry_run=dry_run,
                           defer=defer)

    plan = run(inputs)
    refused = {}
    for patch_report in plan.reports:
        checked = _refuse(patch_report, rule)
        if checked is not patch_report:
            refused[patch_report.patch] = checked
    if not refused:
        return plan
    if on_conflict == "fail":
        reports = tuple(refused.get(r.patch, _as_applicable(r)) for r in plan.reports)
        # A deferred plan's compile still runs: its verdict decides whether these reports hold (the
        # engine confirms it before reporting, as for any deferred plan).
        return SeriesPlan(reports, (), compilation=plan.compilation)
    plan.close()
    kept = run([item for item in inputs if item.name not in refused])
    by_name = {r.patch: r for r in kept.reports}
    return replace(kept, reports=tuple(refused.get(item.name) or by_name[item.name] for item in inputs))


def _refuse(report: PatchReport, rule: Rule) -> PatchReport:
    if report.status not in (APPLIED, APPLICABLE):
        return report
    for file_report in report.files:
        reason = rule(file_report.path) if file_report.status in (APPLIED, APPLICABLE) else None
        if reason is not None:
            return replace(report, status=CONFLICT, reason=reason, file=file_report.path,
                           files=(replace(file_report, status=CONFLICT, reason=reason),))
    return report

