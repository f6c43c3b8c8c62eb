"""
Committing file changes into a target all or nothing, and atomic single-file writes.

The single-file writer, :func:`atomic_write_file`, lives in :mod:`kolla_entry.fs.atomic` (the
journal below uses it); this module holds the transaction.

How :func:`commit` works (issue #2 "Committing", issue #8):

1. *Prepare* (reads only): validate and locate every path (:mod:`kolla_entry.patching.confine`), refuse
   anything but regular files, decide mode and owner, name every temp and backup up front.
2. *Stage*: write the journal (state ``staging``) when one is given; create missing folders;
   write each new content to a hidden temp ``.<name>.kolla-entry-<random>`` in the target's
   folder (write, fchown, fchmod, fsync); hard-link each file to be modified to a backup name.
3. *Swap*: journal ``committing``; ``replace`` each temp into place, ``rename`` each deleted
   file to its backup name; fsync the folders; journal ``done`` (the point of no return).
4. *Finish*: unlink the backups, remove the folders deletions left empty (up to, not
   including, the root, as GNU patch and ``git apply`` do), unlink the journal. A failure here
   is only logged: the new tree is complete, and :func:`recover` removes what is left on the
   next start.

Any failure before the point of no return (or Ctrl-C) rolls back from the backups: the old
files come back as the very same inodes (content, mode, owner, mtime), new files and created
folders go, no temp stays. Decisions: a new file takes the owner of its folder and mode
``0o644`` unless given; a created folder copies its parent's owner and mode; a rollback
removes the folders the commit created.
Every write goes through the :class:`~kolla_entry.fs.seam.FileSystem` seam, on descriptors of
folders opened with ``O_NOFOLLOW`` at write time, so nothing is ever written outside the root.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from kolla_entry.errors import EnvironmentProblem, PatchConflict, PatchRefused, WriteFailed
from kolla_entry.fs.atomic import CREATE_FLAGS, atomic_write_file, temp_name, write_fd
from kolla_entry.fs.seam import REAL, FileSystem, StepError, step
from kolla_entry.log import get_logger
from kolla_entry.patching import journal as jr
from kolla_entry.patching.confine import (
    DirCache,
    Located,
    check_regular,
    locate,
    lstat_at,
    open_root,
    validate_relpath,
)
from kolla_entry.patching.journal import recover, remove_stale_temps

if TYPE_CHECKING:
    # Only a commit with bytecode needs it; the config step of a pod start uses this module's writer.
    from kolla_entry.patching.bytecode import Pyc

# The logger name is a field of every JSON log line: it stays what it was before the layout move.
log = get_logger("kolla_entry.transaction")

__all__ = ["FileChange", "commit", "recover", "remove_stale_temps", "temp_name"]

#: Mode of a new file when the change does not give one.
NEW_FILE_MODE = 0o644


@dataclass(frozen=True)
class FileChange:
    """
    One file to write or delete.

    Args:
        path: relative to the target root; validated (``PatchRefused`` when unsafe).
        content: the new content, or None to delete the file (unless ``bytecode`` is given).
        mode: permission bits (``0o755`` for an executable); None keeps the existing file's
            mode, or ``0o644`` for a new file.
        bytecode: instead of ``content``, a pyc rendered from its module's change in the same
            commit, once that module is staged (issue #13); it must come after that change.
    """

    path: str
    content: Optional[bytes]
    mode: Optional[int] = None
    bytecode: Optional[Pyc] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", validate_relpath(self.path))
        if self.mode is not None and self.mode & ~0o7777:
            raise ValueError(f"FileChange.mode takes permission bits only, got {oct(self.mode)}")
        if self.bytecode is not None and self.content is not None:
            raise ValueError("FileChange takes content or bytecode, not both")

    @property
    def deletes(self) -> bool:
        """True when the change removes the file."""
        return self.content is None and self.bytecode is None


@dataclass(frozen=True)
class _Plan:
    """What prepare decided for one change (pure data, besides the record it seeds)."""

    change: FileChange
    where: Located
    mode: int
    owner: Tuple[int, int]


class _Transaction:
    """One commit: its open folders, records and journal (see the module docstring)."""

    def __init__(self, root: Path, fs: FileSystem, journal: Optional[Path], durable: bool,
                 ready: Optional[Callable[[], None]] = None) -> None:
        self.root = root
        self.ready = ready
        self.durable = durable
        self.fs = fs
        self.journal = journal
        self.cache = DirCache(open_root(root))
        self.plans: List[_Plan] = []
        self.records: List[jr.Record] = []
        self.to_create: List[Tuple[Tuple[str, ...], Tuple[int, int], int]] = []
        self.created: List[Tuple[str, ...]] = []
        self.journal_written = False
        # The stat of each staged temp, for the pycs rendered from their module's (issue #13).
        self.staged: Dict[str, os.stat_result] = {}

    def close(self) -> None:
        """Close the open folders and the root."""
        self.cache.close()

    # -- prepare (reads only) ------------------------------------------------------------
    def prepare(self, changes: Sequence[FileChange]) -> None:
        """Locate and check every change, decide modes, owners and folders to create (reads only)."""
        wanted: Dict[Tuple[str, ...], Tuple[Tuple[int, int], int]] = {}
        physical: Dict[str, str] = {}
        for change in changes:
            where = locate(self.cache.root_fd, change.path)
            other = physical.setdefault(where.physical, change.path)
            if other != change.path:
                raise PatchRefused(f"same file as {other} (through a folder symlink); name it once",
                                   file=change.path)
            try:
                self.plans.append(self._plan(change, where, wanted))
            except OSError as err:
                raise WriteFailed(f"cannot inspect target: {err.strerror}", operation="open",
                                  file=change.path) from err
        self.to_create = [(dirs, *wanted[dirs]) for dirs in sorted(wanted, key=len)]

    def _plan(self, change: FileChange, where: Located,
              wanted: Dict[Tuple[str, ...], Tuple[Tuple[int, int], int]]) -> _Plan:
        rel = change.path
        base = self._open(where.dirs, rel)
        current = None if where.missing else lstat_at(base, where.name)
        if current is not None:
            check_regular(current, rel)
        if change.deletes:
            if current is None:
                raise PatchConflict("file to delete does not exist", file=rel)
            self._add_record(rel, where, jr.DELETE)
            return _Plan(change, where, stat.S_IMODE(current.st_mode), (current.st_uid, current.st_gid))
        parent = os.fstat(base)
        for depth in range(1, len(where.missing) + 1):
            wanted.setdefault((*where.dirs, *where.missing[:depth]),
                              ((parent.st_uid, parent.st_gid), stat.S_IMODE(parent.st_mode)))
        if current is None:
            self._add_record(rel, where, jr.CREATE)
            mode = NEW_FILE_MODE if change.mode is None else change.mode
            return _Plan(change, where, mode, (parent.st_uid, parent.st_gid))
        self._add_record(rel, where, jr.MODIFY)
        mode = stat.S_IMODE(current.st_mode) if change.mode is None else change.mode
        return _Plan(change, where, mode, (current.st_uid, current.st_gid))

    def _add_record(self, rel: str, where: Located, kind: str) -> None:
        self.records.append(jr.Record(
            rel, (*where.dirs, *where.missing), where.name, kind,
            None if kind == jr.DELETE else temp_name(where.name),
            None if kind == jr.CREATE else temp_name(where.name)))

    def _open(self, dirs: Tuple[str, ...], rel: str) -> int:
        """Open a physical folder at write time; a folder turned symlink is refused."""
        try:
            return self.cache.get(dirs)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise PatchRefused("a folder on the path is (now) a symlink or not a folder",
                                   file=rel) from err
            raise StepError("open", rel, err) from err

    # -- stage, swap --------------------------------------------------------------------
    def run(self) -> None:
        """Stage every change, then swap them all in, with the journal marking each phase."""
        self._write_journal(jr.STAGING)
        for dirs, owner, mode in self.to_create:
            self._mkdir(dirs, owner, mode)
        for plan, record in zip(self.plans, self.records):
            self._stage(plan, record)
        if self.ready is not None:
            self.ready()
        if self.journal is not None and self.durable:
            self._sync_dirs()
        self._write_journal(jr.COMMITTING)
        for record in self.records:
            self._swap(record)
        if self.durable:
            self._sync_dirs()
        self._write_journal(jr.DONE)

    def _mkdir(self, dirs: Tuple[str, ...], owner: Tuple[int, int], mode: int) -> None:
        rel = "/".join(dirs)
        parent = self._open(dirs[:-1], rel)
        step("mkdir", rel, self.fs.mkdir, dirs[-1], 0o700, dir_fd=parent)
        self.created.append(dirs)
        fd = self._open(dirs, rel)
        if os.geteuid() == 0 or owner != (os.geteuid(), os.getegid()):
            step("chown", rel, self.fs.fchown, fd, owner[0], owner[1], rel)
        step("chmod", rel, self.fs.fchmod, fd, mode, rel)

    def _stage(self, plan: _Plan, record: jr.Record) -> None:
        fd_dir = self._open(record.dirs, record.rel)
        if record.temp is not None and not plan.change.deletes:
            content = self._content(plan.change)
            fd = step("open", record.rel, self.fs.open, record.temp, CREATE_FLAGS, 0o600, dir_fd=fd_dir)
            try:
                record.temp_ino = os.fstat(fd).st_ino
                write_fd(self.fs, fd, record.rel, content, plan.mode, plan.owner, self.durable)
                # Renames keep the mtime: the module in place will have this very stat.
                self.staged[record.rel] = os.fstat(fd)
            finally:
                os.close(fd)
        if record.kind == jr.MODIFY and record.backup is not None:
            step("link", record.rel, self.fs.link, record.name, record.backup,
                    src_dir_fd=fd_dir, dst_dir_fd=fd_dir)

    def _content(self, change: FileChange) -> bytes:
        if change.bytecode is None:
            assert change.content is not None
            return change.content
        source = self.staged[change.bytecode.source]
        return change.bytecode.render(source.st_mtime, source.st_size)

    def _swap(self, record: jr.Record) -> None:
        fd_dir = self._open(record.dirs, record.rel)
        if record.kind == jr.DELETE and record.backup is not None:
            step("rename", record.rel, self.fs.rename, record.name, record.backup,
                    src_dir_fd=fd_dir, dst_dir_fd=fd_dir)
        elif record.temp is not None:
            step("replace", record.rel, self.fs.replace, record.temp, record.name, dir_fd=fd_dir)

    def _sync_dirs(self) -> None:
        seen = {r.dirs: r.rel for r in self.records}
        seen.update({dirs[:-1]: "/".join(dirs) for dirs in self.created})
        for dirs, rel in seen.items():
            step("fsync", rel, self.fs.fsync, self._open(dirs, rel), rel)

    def _write_journal(self, state: str) -> None:
        if self.journal is None:
            return
        if not self.journal_written:
            self._make_journal_folder(self.journal.parent)
        planned = [dirs for dirs, _owner, _mode in self.to_create]
        document = jr.journal_document(os.path.realpath(self.root), state, self.records, planned)
        data = json.dumps(document, indent=1).encode()
        # Marked before the write: a failure after its rename (the folder fsync) leaves it there.
        self.journal_written = True
        atomic_write_file(self.journal, data, mode=0o600, fs=self.fs, durable=self.durable)

    def _make_journal_folder(self, folder: Path) -> None:
        if folder.is_dir():
            return
        self._make_journal_folder(folder.parent)
        step("mkdir", str(folder), self.fs.mkdir, str(folder), 0o755)

    # -- end -----------------------------------------------------------------------------
    def roll_back(self) -> List[StepError]:
        """Undo everything done so far; returns the problems (the journal stays if any)."""
        undo = jr.Undo(self.cache, self.fs)
        undo.roll_back(self.records, self.created)
        if not undo.problems:
            self._drop_journal()
        return undo.problems

    def finish(self) -> None:
        """Past the point of no return: remove backups and the journal, warn on leftovers."""
        undo = jr.Undo(self.cache, self.fs)
        undo.finish(self.records)
        if undo.problems:
            log.warning("commit_leftovers", files=[p.rel for p in undo.problems],
                        error=str(undo.problems[0]), journal=str(self.journal))
            return
        self._drop_journal()

    def _drop_journal(self) -> None:
        if self.journal is None or not self.journal_written:
            return
        try:
            self.fs.unlink(str(self.journal))
        except OSError as err:
            if err.errno != errno.ENOENT:
                log.warning("journal_left_behind", journal=str(self.journal), error=err.strerror)


def commit(root: Path, changes: Sequence[FileChange], *, fs: FileSystem = REAL,
           journal: Optional[Path] = None, durable: bool = True, ready: Optional[Callable[[], None]] = None) -> None:
    """
    Write and delete files below ``root``, all or nothing.

    Args:
        root: the target folder (may be reached through symlinks).
        changes: the files to write or delete; each path at most once. A rename is a deletion
            of the old path plus a write of the new one.
        fs: the filesystem seam (fault injection in tests).
        journal: where to keep a crash journal (beside the state file); run :func:`recover`
            with it before the next commit. None: no crash safety beyond the rollback.
        durable: fsync files, folders and journal so the commit also survives a power loss.
            False skips every fsync (about 4x faster on ext4): the commit stays all or
            nothing against errors and a killed process, whose writes the page cache keeps.
        ready: called once everything is staged, before anything becomes visible; an exception
            from it (as from a pyc's code being awaited) rolls the commit back and passes through.
            The engine's compile check ends here while the texts are staged (issue #13).

    Raises:
        PatchRefused: a path is unsafe, or a target is not a regular file. Nothing written.
        PatchConflict: a file to delete does not exist. Nothing written.
        EnvironmentProblem: the journal of an earlier commit is still there.
        WriteFailed: an operation failed; everything was rolled back (the message says if the
            rollback itself was incomplete, in which case the journal is kept for
            :func:`recover`). ``operation`` names the seam operation that failed first.
    """
    if not changes:
        return
    paths = [change.path for change in changes]
    if len(set(paths)) != len(paths):
        raise ValueError("commit(): a path appears twice in one change set")
    _check_bytecode_order(changes)
    if journal is not None and os.path.lexists(journal):
        raise EnvironmentProblem(f"a journal of an interrupted commit exists ({journal}); recover first")
    txn = _Transaction(root, fs, journal, durable, ready)
    try:
        txn.prepare(changes)
        try:
            txn.run()
        except BaseException as err:
            _fail(txn, err)
            raise
        txn.finish()
    finally:
        txn.close()


def _check_bytecode_order(changes: Sequence[FileChange]) -> None:
    written = set()
    for change in changes:
        if change.bytecode is not None and change.bytecode.source not in written:
            raise ValueError(f"commit(): the pyc {change.path} comes before its module {change.bytecode.source}")
        if change.content is not None:
            written.add(change.path)


def _fail(txn: _Transaction, err: BaseException) -> None:
    """Roll back, then turn a seam failure into ``WriteFailed`` (other errors pass through)."""
    problems = txn.roll_back()
    rolled = ("rolled back" if not problems else
              f"rollback INCOMPLETE ({problems[0]}); journal kept for recovery: {txn.journal}")
    log.warning("commit_rolled_back", error=str(err), complete=not problems)
    if isinstance(err, StepError):
        raise WriteFailed(f"{err.operation} failed: {err.error.strerror or err.error}; {rolled}",
                          operation=err.operation, file=err.rel) from err.error
    if isinstance(err, WriteFailed) and problems:
        raise WriteFailed(f"{err.message}; {rolled}", operation=err.operation, file=err.file) from err
