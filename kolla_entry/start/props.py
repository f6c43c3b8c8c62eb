"""
Filesystem steps shared by the config writers (:mod:`kolla_entry.start.install`): safe ``mkdir -p``,
owner and mode set without following a symlink, tree removal, and OS errors turned into
:class:`~kolla_entry.errors.ConfigError` / :class:`~kolla_entry.errors.PrivilegeError` naming the
config entry. Every change goes through the :mod:`kolla_entry.fs.seam` seam.
"""

from __future__ import annotations

import os
import stat
from typing import Callable, List, Mapping, NamedTuple, Optional, Tuple, TypeVar

from kolla_entry.errors import ConfigError, PrivilegeError
from kolla_entry.fs import seam
from kolla_entry.start.model import Owner

_T = TypeVar("_T")

#: uid and gid of each owner named in the config.
OwnerIds = Mapping[Owner, Tuple[int, int]]

_DIR_MODE_PARENTS = 0o755


class Props(NamedTuple):
    """Owner and mode to give one written file or folder."""

    uid: int
    gid: int
    mode: int
    owner: str


def dir_mode(perm: int) -> int:
    """A file mode used on a folder: add the search bit wherever a read bit is set (Kolla 1fe983df4)."""
    return perm | ((perm & 0o444) >> 2)


def make_dirs(path: str, entry: str, fs: seam.FileSystem) -> None:
    """``mkdir -p`` through the seam; created folders get 0755 and our own owner, as in Kolla."""
    missing: List[str] = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        current = os.path.dirname(current)
    if not os.path.isdir(current):
        raise ConfigError("not a folder", entry=entry, file=current)
    for folder in reversed(missing):
        _mkdir(folder, entry, fs)


def _mkdir(folder: str, entry: str, fs: seam.FileSystem) -> None:
    # A function of its own so the lambda binds this folder, not the loop variable (ruff B023).
    os_call(lambda: fs.mkdir(folder, _DIR_MODE_PARENTS), "mkdir", folder, entry)


def refuse_non_file(path: str, entry: str) -> None:
    """
    Refuse a symlink, folder or special file at ``path`` (nothing there is fine).

    Raises:
        ConfigError: naming ``entry``.
    """
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
        raise ConfigError("a symlink or non-regular file is at this path; refusing to touch it",
                          entry=entry, file=path)


def set_props(path: str, props: Props, entry: str, fs: seam.FileSystem, *,
              dir_fd: Optional[int] = None, name: Optional[str] = None) -> None:
    """
    Set owner and mode (``mode`` -1: keep) without following a symlink at ``path``.

    With ``dir_fd`` and ``name`` the entry is opened relative to an already opened folder, so a
    folder higher up swapped for a symlink meanwhile cannot redirect the change; ``path`` then
    only names it in errors and logs. A symlink found there is left alone.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    if dir_fd is not None and name is not None:
        # The recursive walk of a shared folder (Kolla's /var/log/kolla): an entry removed since the
        # walk listed it (a rotated log) is simply gone, not a reason to refuse the start.
        try:
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                return
        except FileNotFoundError:
            return
        fd = os_call(lambda: _open_present(fs, name, flags, dir_fd), "open", path, entry)
        if fd < 0:
            return
    else:
        fd = os_call(lambda: fs.open(path, flags), "open", path, entry)
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return
        chown = (st.st_uid, st.st_gid) != (props.uid, props.gid)
        if chown:
            os_call(lambda: fs.fchown(fd, props.uid, props.gid, path), "chown", path, entry)
        # After the chown, which clears set-id bits: so the mode is set again after any chown.
        if props.mode >= 0 and (chown or stat.S_IMODE(st.st_mode) != props.mode):
            os_call(lambda: fs.fchmod(fd, props.mode, path), "chmod", path, entry)
    finally:
        os.close(fd)


def _open_present(fs: seam.FileSystem, name: str, flags: int, dir_fd: int) -> int:
    """Open ``name`` in ``dir_fd``; -1 when it no longer exists."""
    try:
        return fs.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return -1


def os_call(call: Callable[[], _T], operation: str, path: str, entry: str) -> _T:
    """
    Run one filesystem call, naming the operation, path and entry if it fails.

    Returns:
        What ``call`` returned.

    Raises:
        PrivilegeError: the call failed with EPERM/EACCES (this uid may not do it).
        ConfigError: any other OS error.
    """
    try:
        return call()
    except PermissionError as err:
        raise PrivilegeError(f"uid {os.geteuid()} cannot {operation} this path: {err.strerror}",
                             entry=entry, file=path) from err
    except OSError as err:
        raise ConfigError(f"{operation} failed: {err.strerror}", entry=entry, file=path) from err


def remove_tree(path: str, entry: str, fs: seam.FileSystem) -> None:
    """Delete a file, link or folder tree through the seam (links are removed, not followed)."""
    if os.path.isdir(path) and not os.path.islink(path):
        for name in os.listdir(path):
            remove_tree(os.path.join(path, name), entry, fs)
        os_call(lambda: fs.rmdir(path), "rmdir", path, entry)
    else:
        os_call(lambda: fs.unlink(path), "unlink", path, entry)


def octal(mode: int) -> str:
    """A mode as four octal digits (``0640``), as logs and the state file show it."""
    return f"{mode:04o}"
