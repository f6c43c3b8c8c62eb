"""
The one seam through which kolla-entry changes a filesystem.

Every write the patch transaction and the config step make goes through a :class:`FileSystem`
instance, so tests can fail the Nth operation (issue #8) with a subclass that raises
``OSError`` from :meth:`FileSystem._count`. Reads do not go through here.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")


class FileSystem:
    """
    Real filesystem operations, each named by the seam operation it counts as.

    Operation names: ``open``, ``write``, ``fsync``, ``chmod``, ``chown``, ``replace``,
    ``unlink``, ``mkdir``, ``rename``, ``rmdir``, ``link``, ``symlink``.

    Paths are relative to ``dir_fd`` when one is given (the transaction works with directory
    descriptors opened with ``O_NOFOLLOW``, so a swapped-in symlink is never followed).
    """

    def _count(self, operation: str, path: str) -> None:
        """Hook called before every operation; the real filesystem does nothing here."""

    def open(self, path: str, flags: int, mode: int = 0o600, *, dir_fd: Optional[int] = None) -> int:
        self._count("open", path)
        return os.open(path, flags, mode, dir_fd=dir_fd)

    def write(self, fd: int, data: bytes, path: str) -> None:
        self._count("write", path)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def fsync(self, fd: int, path: str) -> None:
        self._count("fsync", path)
        os.fsync(fd)

    def fchmod(self, fd: int, mode: int, path: str) -> None:
        self._count("chmod", path)
        os.fchmod(fd, mode)

    def fchown(self, fd: int, uid: int, gid: int, path: str) -> None:
        self._count("chown", path)
        os.fchown(fd, uid, gid)

    def replace(self, src: str, dst: str, *, dir_fd: Optional[int] = None) -> None:
        self._count("replace", dst)
        os.replace(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

    def rename(self, src: str, dst: str, *, src_dir_fd: Optional[int] = None,
               dst_dir_fd: Optional[int] = None) -> None:
        self._count("rename", dst)
        os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def unlink(self, path: str, *, dir_fd: Optional[int] = None) -> None:
        self._count("unlink", path)
        os.unlink(path, dir_fd=dir_fd)

    def mkdir(self, path: str, mode: int = 0o755, *, dir_fd: Optional[int] = None) -> None:
        self._count("mkdir", path)
        os.mkdir(path, mode, dir_fd=dir_fd)

    def rmdir(self, path: str, *, dir_fd: Optional[int] = None) -> None:
        self._count("rmdir", path)
        os.rmdir(path, dir_fd=dir_fd)

    def link(self, src: str, dst: str, *, src_dir_fd: Optional[int] = None,
             dst_dir_fd: Optional[int] = None) -> None:
        """Hard-link ``src`` to ``dst`` without following a symlink at ``src`` (backups)."""
        self._count("link", dst)
        os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)

    def symlink(self, points_to: str, path: str, *, dir_fd: Optional[int] = None) -> None:
        """Create the symlink ``path`` -> ``points_to`` (the overlay's links into the image, issue #16)."""
        self._count("symlink", path)
        os.symlink(points_to, path, dir_fd=dir_fd)


#: The default, real filesystem.
REAL = FileSystem()


class StepError(Exception):
    """An ``OSError`` from one seam operation, with the operation and relative path named."""

    def __init__(self, operation: str, rel: str, error: OSError) -> None:
        super().__init__(f"{operation} {rel}: {error.strerror or error}")
        self.operation = operation
        self.rel = rel
        self.error = error


def step(operation: str, rel: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """
    Run one seam operation, turning its ``OSError`` into :class:`StepError`.

    Raises:
        StepError: the operation failed.
    """
    try:
        return fn(*args, **kwargs)
    except OSError as err:
        raise StepError(operation, rel, err) from err
