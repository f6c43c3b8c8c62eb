"""
Confinement: every path a patch names stays below the target root (issue #2, issue #8).

Paths are walked one component at a time with directory descriptors opened with
``O_NOFOLLOW | O_DIRECTORY``, never by handing a joined path to the kernel, so a component that
is (or becomes, between check and write) a symlink is never followed blindly.

The descriptor walker (:func:`locate`, :class:`DirCache`, ``open_*``) is in
:mod:`kolla_entry.patching.folders` and imported from here; this module checks names, refuses
non-regular targets and reads.

Symlink policy, decided here:

- The root itself may be reached through symlinks (Kolla's ``lib/python3 -> python3.X``).
- A symlinked *folder* below the root is allowed when its target, resolved component by
  component, stays inside the root (a relative link such as ``pkg -> ../other/pkg``). An
  absolute link target, a target that climbs above the root, or more than
  :data:`MAX_SYMLINKS` links is refused (:class:`~kolla_entry.errors.PatchRefused`).
- The *last* component must be a regular file or missing: a symlink (even one pointing inside
  the root), a folder, a fifo or a device is refused. Writes replace directory entries, so a
  symlink is never written through.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, TypeVar

from kolla_entry.errors import EnvironmentProblem, PatchRefused
from kolla_entry.fs.atomic import TEMP_MARKER, temp_name
from kolla_entry.patching.folders import (
    MAX_SYMLINKS,
    DirCache,
    Located,
    locate,
    open_dir,
    open_physical,
    open_root,
)

__all__ = [
    "MAX_SYMLINKS",
    "TEMP_MARKER",
    "DirCache",
    "Located",
    "TargetFile",
    "check_regular",
    "exists",
    "locate",
    "lstat_at",
    "open_dir",
    "open_physical",
    "open_root",
    "read_at",
    "read_target",
    "temp_name",
    "top_level_exists",
    "validate_relpath",
]

_T = TypeVar("_T")

#: Names of kolla-entry's own files in a target (the crash journal): never a patch's to touch.
RESERVED_PREFIX = ".kolla-entry"

# O_NONBLOCK: a fifo swapped in after the lstat check must not hang the start.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# NAME_MAX on Linux filesystems.
_MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class TargetFile:
    """
    A regular file read from the target.

    Args:
        content: the bytes of the file.
        mode: the full ``st_mode`` (type and permission bits).
        uid: the owner.
        gid: the group.
    """

    content: bytes
    mode: int
    uid: int
    gid: int


def validate_relpath(path: str) -> str:
    """
    Check and normalise a path a patch names, relative to the target.

    Args:
        path: the path after ``--strip`` (``nova/compute/claims.py``).

    Returns:
        The path with ``.`` components and repeated slashes removed.

    Raises:
        PatchRefused: empty, absolute, ``..`` component, NUL byte, trailing slash, a component
            longer than 255 bytes, or one that could collide with kolla-entry's own temp files.
    """
    if not path or "\0" in path:
        raise PatchRefused("empty path or NUL byte in path", file=repr(path))
    if path.startswith("/"):
        raise PatchRefused("absolute path refused; paths must be relative to the target", file=path)
    if path.endswith("/"):
        raise PatchRefused("path names a folder, not a file", file=path)
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts:
        raise PatchRefused("path names the target itself, not a file", file=path)
    for part in parts:
        if part == "..":
            raise PatchRefused("'..' component refused; paths must stay inside the target", file=path)
        if TEMP_MARKER in part or part.startswith(RESERVED_PREFIX):
            raise PatchRefused(f"name containing {TEMP_MARKER!r} is reserved for kolla-entry temp files",
                               file=path)
        # NAME_MAX: the OS would refuse it later with a raw ENAMETOOLONG; refuse it by name now.
        if len(os.fsencode(part)) > _MAX_NAME_BYTES:
            raise PatchRefused(f"a path component is longer than {_MAX_NAME_BYTES} bytes", file=path)
    return "/".join(parts)


def check_regular(st: os.stat_result, rel: str) -> None:
    """
    Refuse anything but a regular file as a patch target.

    Raises:
        PatchRefused: the entry is a symlink, a folder, a fifo, a socket or a device.
    """
    if stat.S_ISREG(st.st_mode):
        return
    kind = "symlink" if stat.S_ISLNK(st.st_mode) else "folder" if stat.S_ISDIR(st.st_mode) else "special file"
    raise PatchRefused(f"target is a {kind}; only regular files are patched", file=rel)


def lstat_at(dir_fd: int, name: str) -> Optional[os.stat_result]:
    """Return the ``lstat`` of ``name`` in ``dir_fd``, or None when it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def read_at(dir_fd: int, name: str, rel: str) -> Optional[TargetFile]:
    """
    Read the regular file ``name`` in an open folder, refusing anything else.

    Returns:
        The file, or None when it does not exist.

    Raises:
        PatchRefused: the entry is not a regular file.
        EnvironmentProblem: the file cannot be read (permissions, I/O error).
    """
    found = lstat_at(dir_fd, name)
    if found is None:
        return None
    # Checked before opening: opening a fifo or socket would block or fail obscurely.
    check_regular(found, rel)
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENXIO):
            raise PatchRefused("target is a symlink or special file; only regular files are patched",
                               file=rel) from err
        raise EnvironmentProblem(f"cannot read target file: {err.strerror}", file=rel) from err
    try:
        st = os.fstat(fd)
        check_regular(st, rel)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return TargetFile(b"".join(chunks), st.st_mode, st.st_uid, st.st_gid)
    finally:
        os.close(fd)


def read_target(root: Path, rel: str) -> Optional[TargetFile]:
    """
    Read a file below ``root`` without following a symlink out of it.

    Args:
        root: the target folder (may itself be reached through symlinks).
        rel: the path relative to ``root``; validated here.

    Returns:
        The file's content, mode and owner, or None when the file or a folder on its way is
        missing.

    Raises:
        PatchRefused: an unsafe path (see the module docstring) or not a regular file.
    """
    return _at_target(root, rel, None, read_at)


def top_level_exists(root: Path, rel: str) -> bool:
    """
    Tell whether the first component of ``rel`` is present in ``root`` (the relevance rule).

    A symlink there counts as present, without being followed: a patch into it is then refused
    at write time instead of being quietly skipped.

    Raises:
        PatchRefused: ``rel`` is not a safe relative path.
    """
    first = validate_relpath(rel).split("/")[0]
    root_fd = open_root(root)
    try:
        return lstat_at(root_fd, first) is not None
    finally:
        os.close(root_fd)


def exists(root: Path, rel: str) -> bool:
    """
    Tell whether ``rel`` exists below ``root`` (any kind of entry; the last one not followed).

    Raises:
        PatchRefused: the path is unsafe or resolves through a symlink to outside ``root``
            (refused rather than reported missing, so a hostile patch is never quietly skipped).
    """
    return _at_target(root, rel, False, _present)


def _present(dir_fd: int, name: str, _rel: str) -> bool:
    return lstat_at(dir_fd, name) is not None


def _at_target(root: Path, rel: str, missing: _T, look: Callable[[int, str, str], _T]) -> _T:
    """
    Validate ``rel``, open its folder below ``root`` and return ``look(dir_fd, name, rel)``.

    ``missing`` is returned instead when a folder on the way does not exist; ``rel`` handed to
    ``look`` is the normalised path, for messages.
    """
    rel = validate_relpath(rel)
    root_fd = open_root(root)
    try:
        where = locate(root_fd, rel)
        if where.missing:
            return missing
        dir_fd = open_physical(root_fd, where.dirs)
        try:
            return look(dir_fd, where.name, rel)
        finally:
            os.close(dir_fd)
    finally:
        os.close(root_fd)
