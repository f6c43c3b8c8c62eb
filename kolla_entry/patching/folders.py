"""
The descriptor walker of :mod:`kolla_entry.patching.confine`: folders below the target root opened one
component at a time with ``O_NOFOLLOW | O_DIRECTORY``, and :func:`locate`, which resolves a
checked relative path to its physical folders following only in-root folder symlinks (the policy
is in :mod:`kolla_entry.patching.confine`'s docstring). Import these names from :mod:`kolla_entry.patching.confine`.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from kolla_entry.errors import EnvironmentProblem, PatchRefused

#: Symlinks followed while resolving one path, as Linux's own limit.
MAX_SYMLINKS = 40

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


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
        """Close every folder of the walk."""
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def up(self) -> None:
        """Step back to the parent folder (a ``..`` from a link target); never above the root."""
        if not self.dirs:
            raise PatchRefused("path resolves through a symlink to outside the target", file=self.rel)
        os.close(self.fds.pop())
        self.dirs.pop()

    def down(self, name: str) -> None:
        """Enter folder ``name`` (``O_NOFOLLOW``)."""
        self.fds.append(open_dir(self.fds[-1], name))
        self.dirs.append(name)

    def expand(self, name: str) -> List[str]:
        """The components of symlink ``name``'s target (relative only), counting it against the limit."""
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
        rel: a path checked by :func:`kolla_entry.patching.confine.validate_relpath`.

    Returns:
        The physical location; the last component is not resolved (see
        :func:`kolla_entry.patching.confine.check_regular`).

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


class DirCache:
    """
    Open physical folders below one root, each once, closed together.

    The transaction, :mod:`kolla_entry.patching.pycache` and recovery share it so every write uses a
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
