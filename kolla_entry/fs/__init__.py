"""
The only doors to the filesystem: ``seam -> atomic -> digest``.

Every change either pipeline makes to a filesystem goes through :class:`~kolla_entry.fs.seam.FileSystem`
(so fault injection can fail any operation); :func:`~kolla_entry.fs.atomic.atomic_write_file` is the one
single-file writer (config files, the state file, the commit journal); :func:`~kolla_entry.fs.digest.sha256_hex`
names what was written. This package imports neither pipeline.
"""

from __future__ import annotations

__all__ = ["REAL", "FileSystem", "StepError", "atomic_write_file", "sha256_hex", "step"]

from kolla_entry.fs.atomic import atomic_write_file
from kolla_entry.fs.digest import sha256_hex
from kolla_entry.fs.seam import REAL, FileSystem, StepError, step
