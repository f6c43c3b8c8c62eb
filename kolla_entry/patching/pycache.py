"""
Stale bytecode: remove the ``__pycache__`` entries of changed modules (issue #2).

An unchecked-hash pyc (PEP 552, ``compileall --invalidation-mode unchecked-hash``) is loaded
without looking at the source, so a patched module would keep running its old code; a
timestamp pyc would be caught by its mtime/size, but only if nobody restores mtimes. Removing
the pyc of every changed or deleted ``.py`` is correct for all three modes and costs one
recompilation. Only the ``__pycache__`` folder beside each changed file is listed: never a
walk of site-packages (issue #2, "cost proportional to the patch").

Calling :func:`invalidate` *before* :func:`kolla_entry.patching.transaction.commit` is the crash-safe
order: a pyc removed for a commit that then fails only costs a recompilation, while the
other order leaves a window where a kill -9 keeps new source behind an old unchecked pyc.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import List, Sequence

from kolla_entry.errors import PatchRefused, WriteFailed
from kolla_entry.fs.seam import REAL, FileSystem
from kolla_entry.log import get_logger
from kolla_entry.patching import journal as jr
from kolla_entry.patching.confine import DirCache, locate, open_root, validate_relpath

# The logger name is a field of every JSON log line: it stays what it was before the layout move.
log = get_logger("kolla_entry.pycache")

PYCACHE = "__pycache__"


def pyc_pattern(stem: str) -> re.Pattern[str]:
    """
    Match every cached file of module ``stem``: all interpreter tags and optimisation levels.

    ``mod.cpython-311.pyc``, ``mod.cpython-39.opt-1.pyc``, ``mod.pypy39.opt-2.pyc``; not
    ``mod_x.cpython-311.pyc`` nor ``mod.x.cpython-311.pyc``.
    """
    return re.compile(re.escape(stem) + r"\.[^.]+(\.opt-[0-9]*)?\.pyc")


def invalidate(root: Path, changed: Sequence[str], *, fs: FileSystem = REAL) -> List[str]:
    """
    Remove ``__pycache__/<stem>.*.pyc`` of every changed or deleted ``.py`` file.

    Args:
        root: the target folder.
        changed: paths relative to ``root`` (other suffixes are ignored).
        fs: the filesystem seam.

    Returns:
        The removed files, relative to ``root`` (through the physical folder of each module).

    Raises:
        PatchRefused: a path is unsafe (see :mod:`kolla_entry.patching.confine`).
        WriteFailed: a pyc could not be removed (``operation`` is ``unlink``).
    """
    removed: List[str] = []
    cache = DirCache(open_root(root))
    try:
        for rel in changed:
            rel = validate_relpath(rel)
            if rel.endswith(".py"):
                removed.extend(_invalidate_one(cache, rel, fs))
    finally:
        cache.close()
    if removed:
        log.info("pycache_invalidated", files=removed)
    return removed


def _invalidate_one(cache: DirCache, rel: str, fs: FileSystem) -> List[str]:
    where = locate(cache.root_fd, rel)
    if where.missing:
        return []
    folder = (*where.dirs, PYCACHE)
    try:
        fd = cache.get(folder)
    except OSError as err:
        if err.errno == errno.ENOENT:
            return []
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            # A symlinked __pycache__ is not followed: refuse rather than leave a stale pyc.
            raise PatchRefused(f"{PYCACHE} beside the file is a symlink or not a folder", file=rel) from err
        raise WriteFailed(f"cannot open {PYCACHE}: {err.strerror}", operation="open", file=rel) from err
    pattern = pyc_pattern(where.name[: -len(".py")])
    removed = []
    for name in sorted(os.listdir(fd)):
        if not pattern.fullmatch(name):
            continue
        found = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(found.st_mode):
            continue
        path = "/".join((*folder, name))
        if jr.unlink_leftover(path, name, fs, what="stale bytecode", dir_fd=fd):
            removed.append(path)
    return removed
