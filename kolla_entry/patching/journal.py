"""
The transaction's records and how to undo or finish them, in-process or after a crash.

A commit names every file it will create before it creates it: the temp holding the new
content, the backup (a hard link, or for a deletion the renamed old file) that keeps the old
one. The same records drive the in-process rollback and :func:`kolla_entry.patching.transaction.recover`,
so both paths are exercised by the fault-injection tests.

Every undo step is tolerant: a missing temp or backup means that step never happened.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from kolla_entry.errors import EnvironmentProblem, WriteFailed
from kolla_entry.fs.atomic import TEMP_MARKER, temp_name
from kolla_entry.fs.seam import REAL, FileSystem, StepError, step
from kolla_entry.log import get_logger
from kolla_entry.patching.confine import DirCache, lstat_at, open_root, validate_relpath

# The logger name is a field of every JSON log line: it stays what it was before the layout move.
log = get_logger("kolla_entry.journal")

#: Journal states. ``staging``: nothing in the tree replaced yet; ``committing``: replaces may
#: have happened; ``done``: the new tree is complete and durable, only leftovers remain.
STAGING = "staging"
COMMITTING = "committing"
DONE = "done"
JOURNAL_VERSION = 1

MODIFY = "modify"
CREATE = "create"
DELETE = "delete"


@dataclass
class Record:
    """
    One file of a commit, as the journal stores it (mutable while the commit runs).

    Args:
        rel: the path as the caller named it (for messages).
        dirs: the physical folders below the root (no symlinks).
        name: the file name in ``dirs``.
        kind: ``modify``, ``create`` or ``delete``.
        temp: the name of the temp holding the new content (None for a deletion).
        backup: the name that keeps the old file (None for a creation).
        temp_ino: the inode of the staged temp once it exists, so a crash recovery only
            removes a created file that is really ours.
    """

    rel: str
    dirs: Tuple[str, ...]
    name: str
    kind: str
    temp: Optional[str]
    backup: Optional[str]
    temp_ino: Optional[int] = None

    def to_json(self) -> Dict[str, Any]:
        """The record as a JSON object."""
        return {"rel": self.rel, "dirs": list(self.dirs), "name": self.name, "kind": self.kind,
                "temp": self.temp, "backup": self.backup, "temp_ino": self.temp_ino}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> Record:
        """Read a record back from :meth:`to_json`."""
        return cls(str(data["rel"]), tuple(str(d) for d in data["dirs"]), str(data["name"]),
                   str(data["kind"]), data["temp"], data["backup"], data["temp_ino"])


def journal_document(root: str, state: str, records: Iterable[Record],
                     created: Iterable[Tuple[str, ...]]) -> Dict[str, Any]:
    """Build the journal's JSON document."""
    return {"version": JOURNAL_VERSION, "root": root, "state": state,
            "records": [r.to_json() for r in records], "created": [list(c) for c in created]}


class Undo:
    """
    Undo or finish a commit from its records, collecting problems instead of stopping at one.

    Args:
        cache: open folders below the root.
        fs: the filesystem seam.
    """

    def __init__(self, cache: DirCache, fs: FileSystem) -> None:
        self.cache = cache
        self.fs = fs
        self.problems: List[StepError] = []
        self.touched: Dict[Tuple[str, ...], str] = {}

    def _try(self, operation: str, rel: str, fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        try:
            step(operation, rel, fn, *args, **kwargs)
        except StepError as err:
            if err.error.errno != errno.ENOENT:
                self.problems.append(err)

    def _dir(self, record: Record) -> Optional[int]:
        try:
            fd = self.cache.get(record.dirs)
        except FileNotFoundError:
            return None
        except OSError as err:
            self.problems.append(StepError("open", record.rel, err))
            return None
        self.touched[record.dirs] = record.rel
        return fd

    def roll_back(self, records: List[Record], created: List[Tuple[str, ...]]) -> None:
        """Put every old file back, remove new files, temps and created folders."""
        for record in reversed(records):
            fd = self._dir(record)
            if fd is not None:
                self._restore(record, fd)
                self._drop(record.temp, record, fd)
        for dirs in reversed(created):
            self.cache.forget(dirs)
            parent = self._dir(Record("/".join(dirs), dirs[:-1], dirs[-1], CREATE, None, None))
            if parent is not None:
                self._rmdir(dirs, parent)
        self.sync()

    def finish(self, records: List[Record]) -> None:
        """
        After the point of no return: remove backups and temps, keep the new tree.

        Then remove the folders that deletions left empty, up to (not including) the root, as
        GNU patch and ``git apply`` both do. Only possible now: until the backups go, a deleted
        file's backup still fills its folder, so these removals never need a rollback.
        """
        for record in records:
            fd = self._dir(record)
            if fd is not None:
                self._drop(record.backup, record, fd)
                self._drop(record.temp, record, fd)
        for record in records:
            if record.kind == DELETE:
                self._prune(record.dirs, record.rel)

    def _prune(self, dirs: Tuple[str, ...], rel: str) -> None:
        while dirs:
            try:
                parent = self.cache.get(dirs[:-1])
            except OSError:
                return
            self.cache.forget(dirs)
            try:
                step("rmdir", rel, self.fs.rmdir, dirs[-1], dir_fd=parent)
            except StepError as err:
                if err.error.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
                    self.problems.append(err)
                return
            dirs = dirs[:-1]

    def _restore(self, record: Record, fd: int) -> None:
        current = lstat_at(fd, record.name)
        if record.kind == CREATE:
            if current is not None and record.temp_ino is not None and current.st_ino == record.temp_ino:
                self._try("unlink", record.rel, self.fs.unlink, record.name, dir_fd=fd)
            return
        backup = lstat_at(fd, record.backup) if record.backup else None
        if backup is None or record.backup is None:
            return
        if current is not None and current.st_ino == backup.st_ino:
            # Not replaced yet: the backup is a second link to the file still in place.
            self._try("unlink", record.rel, self.fs.unlink, record.backup, dir_fd=fd)
        else:
            self._try("rename", record.rel, self.fs.rename, record.backup, record.name,
                      src_dir_fd=fd, dst_dir_fd=fd)

    def _drop(self, name: Optional[str], record: Record, fd: int) -> None:
        if name is not None and lstat_at(fd, name) is not None:
            self._try("unlink", record.rel, self.fs.unlink, name, dir_fd=fd)

    def _rmdir(self, dirs: Tuple[str, ...], parent: int) -> None:
        rel = "/".join(dirs)
        try:
            step("rmdir", rel, self.fs.rmdir, dirs[-1], dir_fd=parent)
        except StepError as err:
            # A created folder someone else filled is left in place, not an error of ours.
            if err.error.errno not in (errno.ENOENT, errno.ENOTEMPTY):
                self.problems.append(err)

    def sync(self) -> None:
        """Make the undo durable: fsync every folder touched (problems are collected)."""
        for dirs, rel in self.touched.items():
            try:
                fd = self.cache.get(dirs)
            except OSError:
                continue
            self._try("fsync", rel, self.fs.fsync, fd, rel)


def recover(root: Path, journal: Path, *, fs: FileSystem = REAL) -> Optional[str]:
    """
    Finish what an interrupted (killed) commit left, before anything else plans on the tree.

    Direction: a commit that had not reached its point of no return (journal ``staging`` or
    ``committing``) is rolled *back* from its backups, so the tree is exactly the old one and
    the caller simply plans and commits again; a commit past it (``done``) is completed by
    removing its leftovers. Either way the tree is one whole series, never a mix.

    Args:
        root: the target the journal belongs to.
        journal: the journal path given to :func:`commit`.
        fs: the filesystem seam.

    Returns:
        What was done, for the log, or None when there was nothing to recover.

    Raises:
        EnvironmentProblem: the journal is unreadable or belongs to another root.
        WriteFailed: an undo step failed; the journal is kept so a later start tries again.
    """
    stale = remove_stale_temps(journal, fs=fs)
    if not os.path.lexists(journal):
        return f"removed {len(stale)} stale journal temp file(s)" if stale else None
    state, records, created = _load_journal(root, journal)
    cache = DirCache(open_root(root))
    try:
        undo = Undo(cache, fs)
        if state == DONE:
            undo.finish(records)
            what = "completed"
        else:
            undo.roll_back(records, created)
            what = "rolled back"
    finally:
        cache.close()
    if undo.problems:
        first = undo.problems[0]
        raise WriteFailed(f"recovery incomplete, journal kept ({journal}): {first}",
                          operation=first.operation, file=first.rel)
    try:
        step("unlink", str(journal), fs.unlink, str(journal))
    except StepError as err:
        raise WriteFailed(f"cannot remove journal: {err.error.strerror}", operation="unlink",
                          file=str(journal)) from err.error
    description = f"{what} an interrupted commit of {len(records)} file(s): " + \
        ", ".join(r.rel for r in records)
    log.warning("commit_recovered", state=state, action=what, files=[r.rel for r in records])
    return description


def _load_journal(root: Path, journal: Path) -> Tuple[str, List[Record], List[Tuple[str, ...]]]:
    try:
        document = json.loads(journal.read_bytes())
        if document.get("version") != JOURNAL_VERSION:
            raise ValueError(f"unknown journal version {document.get('version')!r}")
        records = [Record.from_json(item) for item in document["records"]]
        created = [tuple(str(part) for part in dirs) for dirs in document["created"]]
        state = str(document["state"])
        recorded_root = str(document["root"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise EnvironmentProblem(f"unreadable commit journal {journal}: {err}") from err
    if os.path.realpath(recorded_root) != os.path.realpath(root):
        raise EnvironmentProblem(f"commit journal {journal} belongs to {recorded_root}, not {root}")
    for record in records:
        for part in (*record.dirs, record.name):
            validate_relpath(part)
        for ours in (record.temp, record.backup):
            # A journal only ever names our own hidden temp files; anything else is not ours to touch.
            if ours is not None and ("/" in ours or not ours.startswith(".") or TEMP_MARKER not in ours):
                raise EnvironmentProblem(f"commit journal {journal} names a foreign file {ours!r}")
    return state, records, created


def remove_stale_temps(path: Path, *, fs: FileSystem = REAL) -> List[str]:
    """
    Remove the temps that a killed atomic write of ``path`` left beside it.

    Only names of the form ``.<name>.kolla-entry-<hex>`` in ``path``'s own folder are touched;
    they were never visible under the real name. The config step calls this before writing a
    file, :func:`recover` for the journal.

    Args:
        path: the file whose stale temps to remove (absolute).
        fs: the filesystem seam.

    Returns:
        The removed temps, as full paths.

    Raises:
        WriteFailed: a temp could not be removed.
    """
    prefix = temp_name(path.name).split(TEMP_MARKER)[0] + TEMP_MARKER
    try:
        names = sorted(n for n in os.listdir(path.parent) if n.startswith(prefix))
    except FileNotFoundError:
        return []
    temps = [str(path.parent / name) for name in names]
    return [temp for temp in temps if unlink_leftover(temp, temp, fs, what="stale temp file")]


def unlink_leftover(shown: str, name: str, fs: FileSystem, *, what: str, dir_fd: Optional[int] = None) -> bool:
    """
    Remove a leftover (a stale temp, a stale pyc) through the seam; one already gone is fine.

    Returns:
        True when it was removed, False when it no longer existed.

    Raises:
        WriteFailed: any other failure, naming ``shown`` and the ``unlink`` operation.
    """
    try:
        step("unlink", shown, fs.unlink, name, dir_fd=dir_fd)
    except StepError as err:
        if err.error.errno == errno.ENOENT:
            return False
        raise WriteFailed(f"cannot remove {what}: {err.error.strerror}", operation="unlink",
                          file=shown) from err.error
    return True
