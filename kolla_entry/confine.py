"""
Confinement: every path a patch names stays below the target root (issue #2, issue #8).

Paths are walked one component at a time with directory descriptors opened with
``O_NOFOLLOW | O_DIRECTORY``, never by handing a joined path to the kernel, so a component that
is (or becomes, between check and write) a symlink is never followed blindly.

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
from typing import Dict, List, Optional, Tuple

from kolla_entry.errors import EnvironmentProblem, PatchRefused

#: Every temp or backup file kolla-entry creates has this in its name; a patch may not name one.
TEMP_MARKER = ".kolla-entry-"
#: Symlinks followed while resolving one path, as Linux's own limit.
MAX_SYMLINKS = 40

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# A temp name must fit NAME_MAX (255 bytes) with the dot and the marker around it.
_NAME_BUDGET = 200


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


@dataclass(frozen=True)
class Located:
    """
    Where a relative path lives physically below the root (no symlink in ``dirs``).

    Args:
        dirs: the folders below the root that exist, symlinks resolved.
        missing: the folders after ``dirs`` that do not exist yet (created by a write).
        name: the last component.
    """

    dirs: Tuple[str, ...]
    missing: Tuple[str, ...]
    name: str

    @property
    def parts(self) -> Tuple[str, ...]:
        """The whole physical path as components."""
        return (*self.dirs, *self.missing, self.name)

    @property
    def physical(self) -> str:
        """The whole physical path, relative to the root."""
        return "/".join(self.parts)


def temp_name(name: str) -> str:
    """
    Return a fresh hidden name beside ``name`` that can never be imported as a module.

    The leading dot and the ``.kolla-entry-<hex>`` suffix rule out ``*.py`` and package names.
    """
    stem = os.fsdecode(os.fsencode(name)[:_NAME_BUDGET])
    return f".{stem}{TEMP_MARKER}{os.urandom(6).hex()}"


_MAX_NAME_BYTES = 255


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
        if TEMP_MARKER in part:
            raise PatchRefused(f"name containing {TEMP_MARKER!r} is reserved for kolla-entry temp files",
                               file=path)
        # NAME_MAX: the OS would refuse it later with a raw ENAMETOOLONG; refuse it by name now.
        if len(os.fsencode(part)) > _MAX_NAME_BYTES:
            raise PatchRefused(f"a path component is longer than {_MAX_NAME_BYTES} bytes", file=path)
    return "/".join(parts)


def open_root(root: Path) -> int:
    """
    Open the target root as a directory descriptor (symlinks to the root itself are followed).

    Raises:
        EnvironmentProblem: the root is missing, unreadable or not a folder.
    """
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise EnvironmentProblem(f"cannot open the target folder {root}: {err.strerror}") from err


def open_dir(parent_fd: int, name: str) -> int:
    """
    Open folder ``name`` in ``parent_fd`` without following a symlink.

    Raises:
        OSError: ``ELOOP`` when it is a symlink, ``ENOTDIR`` when not a folder, ``ENOENT``.
    """
    return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)


def open_physical(root_fd: int, dirs: Tuple[str, ...]) -> int:
    """
    Open a symlink-free folder path below the root, component by component, with ``O_NOFOLLOW``.

    Args:
        root_fd: the root's descriptor.
        dirs: physical folder components (from :func:`locate`); empty for the root itself.

    Returns:
        A new descriptor the caller closes.

    Raises:
        OSError: a component is missing, not a folder, or (now) a symlink (``ELOOP``).
    """
    fd = os.dup(root_fd)
    try:
        for name in dirs:
            child = open_dir(fd, name)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Walk:
    """The state of one :func:`locate` walk: a stack of open folders below the root."""

    def __init__(self, root_fd: int, rel: str) -> None:
        self.rel = rel
        self.fds: List[int] = [os.dup(root_fd)]
        self.dirs: List[str] = []
        self.links = 0

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def up(self) -> None:
        if not self.dirs:
            raise PatchRefused("path resolves through a symlink to outside the target", file=self.rel)
        os.close(self.fds.pop())
        self.dirs.pop()

    def down(self, name: str) -> None:
        self.fds.append(open_dir(self.fds[-1], name))
        self.dirs.append(name)

    def expand(self, name: str) -> List[str]:
        self.links += 1
        if self.links > MAX_SYMLINKS:
            raise PatchRefused("too many levels of symlinks", file=self.rel)
        target = os.readlink(name, dir_fd=self.fds[-1])
        if target.startswith("/"):
            raise PatchRefused(f"path goes through a symlink to an absolute path ({target})", file=self.rel)
        return target.split("/")


def locate(root_fd: int, rel: str) -> Located:
    """
    Find where ``rel`` lives physically below the root, following in-root folder symlinks only.

    Args:
        root_fd: the root's descriptor (:func:`open_root`).
        rel: a path checked by :func:`validate_relpath`.

    Returns:
        The physical location; the last component is not resolved (see :func:`check_regular`).

    Raises:
        PatchRefused: a symlink leads outside the root, or a component is not a folder.
    """
    todo = rel.split("/")
    name = todo.pop()
    walk = _Walk(root_fd, rel)
    try:
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                walk.up()
                continue
            try:
                st = os.stat(part, dir_fd=walk.fds[-1], follow_symlinks=False)
            except FileNotFoundError:
                missing = tuple(p for p in [part, *todo] if p not in ("", "."))
                if ".." in missing:
                    raise PatchRefused("symlink target climbs through a missing folder", file=rel) from None
                return Located(tuple(walk.dirs), missing, name)
            if stat.S_ISLNK(st.st_mode):
                todo[:0] = walk.expand(part)
            elif stat.S_ISDIR(st.st_mode):
                walk.down(part)
            else:
                raise PatchRefused(f"{'/'.join([*walk.dirs, part])} is not a folder", file=rel)
        return Located(tuple(walk.dirs), (), name)
    except OSError as err:
        raise PatchRefused(f"cannot resolve path: {os.strerror(err.errno or 0)}", file=rel) from err
    finally:
        walk.close()


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
    rel = validate_relpath(rel)
    root_fd = open_root(root)
    try:
        where = locate(root_fd, rel)
        if where.missing:
            return None
        dir_fd = open_physical(root_fd, where.dirs)
        try:
            return read_at(dir_fd, where.name, rel)
        finally:
            os.close(dir_fd)
    finally:
        os.close(root_fd)


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
    rel = validate_relpath(rel)
    root_fd = open_root(root)
    try:
        where = locate(root_fd, rel)
        if where.missing:
            return False
        dir_fd = open_physical(root_fd, where.dirs)
        try:
            return lstat_at(dir_fd, where.name) is not None
        finally:
            os.close(dir_fd)
    finally:
        os.close(root_fd)


class DirCache:
    """
    Open physical folders below one root, each once, closed together.

    The transaction, :mod:`kolla_entry.pycache` and recovery share it so every write uses a
    descriptor opened with ``O_NOFOLLOW`` at write time.
    """

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self._fds: Dict[Tuple[str, ...], int] = {}

    def get(self, dirs: Tuple[str, ...]) -> int:
        """
        Return the descriptor of a physical folder, opening it (strictly) on first use.

        Raises:
            OSError: missing, not a folder, or a symlink now (``ELOOP``).
        """
        fd = self._fds.get(dirs)
        if fd is None:
            fd = open_physical(self.root_fd, dirs) if not dirs else self._open_child(dirs)
            self._fds[dirs] = fd
        return fd

    def _open_child(self, dirs: Tuple[str, ...]) -> int:
        return open_dir(self.get(dirs[:-1]), dirs[-1])

    def forget(self, dirs: Tuple[str, ...]) -> None:
        """Close and drop a folder (after it was removed)."""
        fd = self._fds.pop(dirs, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Close every descriptor, the root's included."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        os.close(self.root_fd)
