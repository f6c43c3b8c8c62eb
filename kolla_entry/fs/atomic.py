"""
Atomic single-file writes: a hidden temp beside the file, owner and mode set before the rename.

:func:`atomic_write_file` serves the config writers, the state file and the commit journal;
:func:`write_fd` and :data:`CREATE_FLAGS` are the write order :mod:`kolla_entry.patching.transaction`'s
staging shares. Every operation goes through the :class:`~kolla_entry.fs.seam.FileSystem` seam.
The config writers and the state file import it from here, not through the transaction, so a
start without patches never loads the patch commit's modules (start-up budget, issue #13).
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Optional, Tuple

from kolla_entry.errors import WriteFailed
from kolla_entry.fs.seam import REAL, FileSystem, StepError, step
from kolla_entry.log import get_logger

if TYPE_CHECKING:
    from _typeshed import StrPath

# Events keep the name of the public module they always came from.
log = get_logger("kolla_entry.transaction")

#: Every temp or backup file kolla-entry creates has this in its name; a patch may not name one.
TEMP_MARKER = ".kolla-entry-"
# A temp name must fit NAME_MAX with the dot and the marker around it.
_NAME_BUDGET = 200

#: How a temp is created: new, never through a symlink, not inherited by the service.
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def temp_name(name: str) -> str:
    """
    Return a fresh hidden name beside ``name`` that can never be imported as a module.

    The leading dot and the ``.kolla-entry-<hex>`` suffix rule out ``*.py`` and package names.
    """
    stem = os.fsdecode(os.fsencode(name)[:_NAME_BUDGET])
    return f".{stem}{TEMP_MARKER}{os.urandom(6).hex()}"


def write_fd(fs: FileSystem, fd: int, rel: str, content: bytes, mode: int,
             owner: Optional[Tuple[int, int]], durable: bool) -> None:
    """
    Fill a fresh ``0o600`` temp: write, set owner and mode, fsync, the order that never exposes a secret.

    Args:
        fs: the filesystem seam.
        fd: the temp's descriptor (the caller closes it).
        rel: the file's name in messages.
        content: the bytes to write.
        mode: permission bits, set after the chown (which clears set-id bits).
        owner: (uid, gid) to set (-1 keeps one); None keeps the writer's. Skipped when already
            right, unless running as root.
        durable: fsync the temp.

    Raises:
        journal.StepError: a seam operation failed.
    """
    step("write", rel, fs.write, fd, content, rel)
    if owner is not None:
        st = os.fstat(fd)
        if os.geteuid() == 0 or owner != (st.st_uid, st.st_gid):
            step("chown", rel, fs.fchown, fd, owner[0], owner[1], rel)
    step("chmod", rel, fs.fchmod, fd, mode, rel)
    if durable:
        step("fsync", rel, fs.fsync, fd, rel)


def atomic_write_file(path: StrPath, content: bytes, *, mode: int, uid: Optional[int] = None,
                      gid: Optional[int] = None, fs: FileSystem = REAL, durable: bool = True) -> None:
    """
    Replace one file atomically: temp in the same folder, owner and mode set before the rename.

    The temp is created ``0o600``, so the content is never readable by others, even for a
    moment; readers see the old file or the whole new one.

    Args:
        path: absolute path of the file (``str`` or ``Path``); its folder must exist. A symlink at ``path`` is
            replaced, never followed.
        content: the new bytes.
        mode: permission bits of the new file.
        uid: owner to set, None to keep the writer's (``-1`` semantics for one of the two).
        gid: group to set, None to keep the writer's.
        fs: the filesystem seam.
        durable: fsync the file and its folder (False: atomic against a killed process, not
            against a power loss).

    Raises:
        WriteFailed: an operation failed; the temp is removed and the old file is untouched,
            unless only the final folder fsync failed (the message then says the file is written).
    """
    rel = os.fspath(path)
    folder, name = os.path.split(rel)
    try:
        dir_fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise WriteFailed(f"cannot open folder: {err.strerror}", operation="open", file=rel) from err
    try:
        _atomic_write_at(dir_fd, name, rel, content, mode,
                         None if uid is None and gid is None else (_id(uid), _id(gid)), fs, durable)
    except StepError as err:
        raise WriteFailed(f"{err.operation} failed: {err.error.strerror or err.error}",
                          operation=err.operation, file=rel) from err.error
    except _WrittenNotSynced as err:
        raise WriteFailed(f"file written, but syncing its folder failed: {err.step.error.strerror}",
                          operation="fsync", file=rel) from err.step.error
    finally:
        os.close(dir_fd)


def _id(value: Optional[int]) -> int:
    return -1 if value is None else value


class _WrittenNotSynced(Exception):
    """The file is in place, only the folder fsync after the rename failed."""

    def __init__(self, step: StepError) -> None:
        super().__init__(str(step))
        self.step = step


def _atomic_write_at(dir_fd: int, name: str, rel: str, content: bytes, mode: int,
                     owner: Optional[Tuple[int, int]], fs: FileSystem, durable: bool) -> None:
    temp = temp_name(name)
    fd = step("open", rel, fs.open, temp, CREATE_FLAGS, 0o600, dir_fd=dir_fd)
    try:
        try:
            write_fd(fs, fd, rel, content, mode, owner, durable)
        finally:
            os.close(fd)
        step("replace", rel, fs.replace, temp, name, dir_fd=dir_fd)
    except BaseException:
        _quiet_unlink(fs, temp, dir_fd)
        raise
    if durable:
        try:
            step("fsync", rel, fs.fsync, dir_fd, rel)
        except StepError as err:
            raise _WrittenNotSynced(err) from err.error


def _quiet_unlink(fs: FileSystem, name: str, dir_fd: int) -> None:
    try:
        fs.unlink(name, dir_fd=dir_fd)
    except OSError as err:
        if err.errno != errno.ENOENT:
            log.warning("temp_left_behind", temp=name, error=err.strerror)
