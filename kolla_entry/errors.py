"""
Errors that kolla-entry reports to operators.

Every expected failure is a :class:`KollaEntryError` carrying the fields an operator needs
(patch, target file, hunk, config entry) and a one-line message: where, what, what to do.
Only ``kolla_entry.cli`` turns them into exit codes (``exit_code`` below).
"""

from __future__ import annotations

from typing import Optional


class KollaEntryError(Exception):
    """
    Base of every user-facing failure.

    Args:
        message: what went wrong and what the operator can do.
        patch: the patch file concerned, if any.
        file: the target (or config) file concerned, if any.
        hunk: the 1-based hunk index concerned, if any.
        entry: the config entry concerned (``config_files[2].dest``), if any.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        patch: Optional[str] = None,
        file: Optional[str] = None,
        hunk: Optional[int] = None,
        entry: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.patch = patch
        self.file = file
        self.hunk = hunk
        self.entry = entry

    def __str__(self) -> str:
        where = []
        if self.patch is not None:
            where.append(f"patch {self.patch}")
        if self.file is not None:
            where.append(f"file {self.file}")
        if self.hunk is not None:
            where.append(f"hunk #{self.hunk}")
        if self.entry is not None:
            where.append(f"entry {self.entry}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class EnvironmentProblem(KollaEntryError):
    """The invocation or the machine is not usable (no target, unreadable folder): exit 2."""

    exit_code = 2


class PatchInvalid(KollaEntryError):
    """A patch cannot be parsed or applied as text (status ``invalid``)."""

    status = "invalid"


class PatchConflict(KollaEntryError):
    """A patch does not fit the target (status ``conflict``)."""

    status = "conflict"


class PatchRefused(KollaEntryError):
    """A patch names an unsafe path: absolute, ``..``, through a symlink, not a regular file."""

    status = "refused"


class WriteFailed(KollaEntryError):
    """
    A filesystem operation failed while committing; everything was rolled back.

    Args:
        operation: the seam operation that failed (``open``, ``write``, ``fsync``, ``chmod``,
            ``chown``, ``replace``, ``unlink``, ``mkdir``, ``rename``).
    """

    def __init__(self, message: str, *, operation: str, file: Optional[str] = None,
                 patch: Optional[str] = None) -> None:
        super().__init__(message, file=file, patch=patch)
        self.operation = operation


class ConfigError(KollaEntryError):
    """The service config (config.json / config.yaml) is invalid or cannot be applied."""


class TemplateError(ConfigError):
    """A ``${env:...}`` / ``${file:...}`` placeholder cannot be resolved (never shows values)."""


class DependencyTimeout(KollaEntryError):
    """A configured dependency did not become reachable in time."""


class PrivilegeError(KollaEntryError):
    """Dropping privileges is impossible (not root, unknown user) or a write needs rights we lack."""


class ExecFailed(KollaEntryError):
    """The service command could not be exec'd."""
