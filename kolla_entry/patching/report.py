"""
Statuses and reports of a patch series: what ``check-patches``/``apply-patches`` print and record.

The JSON schema (``--json``) is documented in README.md and built only here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from kolla_entry.patching.model import (
    ALREADY_APPLIED,
    APPLICABLE,
    APPLIED,
    CONFLICT,
    INVALID,
    REFUSED,
    SKIPPED,
    HunkResult,
)

#: Patch statuses that stop a start (exit code 1).
FAILED_STATUSES = frozenset({CONFLICT, INVALID, REFUSED})
#: Every patch status, for documentation and validation.
PATCH_STATUSES = (APPLICABLE, APPLIED, ALREADY_APPLIED, SKIPPED, CONFLICT, INVALID, REFUSED)


@dataclass(frozen=True)
class FileReport:
    """What happened to one target file of a patch (``path`` is relative to the target)."""

    path: str
    status: str
    hunks: Tuple[HunkResult, ...] = ()
    reason: str = ""
    operation: str = ""

    def to_dict(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {
            "path": self.path,
            "status": self.status,
            "hunks": [
                {"index": h.index, "status": h.status, "offset": h.offset, "fuzz": h.fuzz, "line": h.line}
                for h in self.hunks
            ],
        }
        if self.operation:
            data["operation"] = self.operation
        if self.reason:
            data["reason"] = self.reason
        return data


@dataclass(frozen=True)
class PatchReport:
    """The outcome of one patch file."""

    patch: str
    status: str
    sha256: str = ""
    reason: str = ""
    files: Tuple[FileReport, ...] = ()
    hunk: Optional[int] = None
    file: Optional[str] = None

    @property
    def failed(self) -> bool:
        """True for statuses that refuse a start: conflict, invalid, refused."""
        return self.status in FAILED_STATUSES

    @property
    def where(self) -> str:
        """The file and hunk a failure is about (``nova/x.py hunk #2``), empty when unknown."""
        where = self.file or ""
        if self.hunk is not None:
            where += f" hunk #{self.hunk}"
        return where.strip()

    def located_reason(self) -> str:
        """The reason, led by the file and hunk for a failed patch: a CI gate prints it alone (issue #12)."""
        if not self.failed or not self.where or self.reason.startswith(self.where):
            return self.reason
        return f"{self.where}: {self.reason}"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "patch": self.patch,
            "status": self.status,
            "sha256": self.sha256,
            "reason": self.located_reason(),
            "files": [f.to_dict() for f in self.files],
        }


@dataclass(frozen=True)
class SeriesReport:
    """
    The outcome of a whole series.

    ``written`` is True when the target was changed; ``error`` holds a commit failure
    (all changes rolled back) as a one-line message. ``import_ready`` lists the written modules
    that got bytecode Python will use (issue #13).
    """

    target: str
    patches: Tuple[PatchReport, ...] = ()
    written: bool = False
    dry_run: bool = True
    error: str = ""
    error_operation: str = ""
    changed_files: Tuple[str, ...] = field(default_factory=tuple)
    import_ready: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> bool:
        """True when any patch failed or the commit failed: exit code 1."""
        return bool(self.error) or any(p.failed for p in self.patches)

    def counts(self) -> Dict[str, int]:
        """Number of patches per status, for the closing summary."""
        result: Dict[str, int] = {}
        for report in self.patches:
            result[report.status] = result.get(report.status, 0) + 1
        return result

    def to_dict(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {
            "target": self.target,
            "dry_run": self.dry_run,
            "written": self.written,
            "summary": self.counts(),
            "patches": [p.to_dict() for p in self.patches],
            "import_ready": list(self.import_ready),
        }
        if self.error:
            data["error"] = {"message": self.error, "operation": self.error_operation}
        return data

    def failure_lines(self) -> List[str]:
        """One line per failed patch: which patch, which file, which hunk and why."""
        lines = []
        for report in self.patches:
            if report.failed:
                lines.append(f"{report.status}: {report.patch}: {report.located_reason()}")
        if self.error:
            lines.append(f"write failed ({self.error_operation}): {self.error}")
        # One line each, whatever a (git-quoted) file name holds.
        return [line.replace("\r", "\\r").replace("\n", "\\n") for line in lines]
