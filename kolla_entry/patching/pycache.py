"""
Bytecode of changed modules: which ``__pycache__`` files to write and which to remove (issues #2, #13).

``compilecheck`` (marshalled code) -> **pycache** (this plan, reads only) -> ``bytecode`` (the
bytes) -> ``transaction`` (writes them with the modules, journaled, rolled back together).

Site-packages is root-owned and the service user cannot write ``__pycache__``: a module left
without valid bytecode is compiled again by every service process at every start. So each
written module gets the ``.pyc`` Python will load, built from the compile check's code, in the
invalidation mode the tree already uses (its own old pyc, else a neighbour's in the same
``__pycache__``, else any found in the series, else ``timestamp``). Every other cached file of a
changed module goes: ``-O`` variants (``.opt-1``/``.opt-2``, rebuilding them would mean compiling
again), other interpreters' files, and all of a deleted module's. An unchecked-hash pyc is
loaded without looking at the source, so none may survive a patch.

Bytecode is only written for the interpreter kolla-entry runs (marshal is version-specific): when
the target's existing pycs, or its ``lib/pythonX.Y`` path, name another one, the plan only removes
the stale files, as before issue #13. Only the ``__pycache__`` folder beside each changed file is
listed: never a walk of site-packages (issue #2, "cost proportional to the patch").
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from kolla_entry.errors import PatchRefused, WriteFailed
from kolla_entry.patching import bytecode as bc
from kolla_entry.patching.confine import DirCache, locate, open_root
from kolla_entry.patching.transaction import FileChange

PYCACHE = "__pycache__"
_PYTHON_DIR = re.compile(r"python(\d+)\.(\d+)")


def pyc_pattern(stem: str) -> re.Pattern[str]:
    """
    Match every cached file of module ``stem``: all interpreter tags and optimisation levels.

    ``mod.cpython-311.pyc``, ``mod.cpython-39.opt-1.pyc``, ``mod.pypy39.opt-2.pyc``; not
    ``mod_x.cpython-311.pyc`` nor ``mod.x.cpython-311.pyc``.
    """
    return re.compile(re.escape(stem) + r"\.[^.]+(\.opt-[0-9]*)?\.pyc")


@dataclass(frozen=True)
class Interpreter:
    """The interpreter bytecode is written for: its cache tag (``cpython-311``) and magic number."""

    tag: str
    magic: bytes


@dataclass(frozen=True)
class BytecodePlan:
    """
    The ``__pycache__`` changes of a commit, to be committed after the module changes.

    Args:
        changes: the pycs to write, then the stale ones to remove.
        ready: the modules that get bytecode Python will use.
        removed: the stale cached files removed (paths relative to the target).
        reason: why no bytecode is written at all ("" when it is).
    """

    changes: Tuple[FileChange, ...] = ()
    ready: Tuple[str, ...] = ()
    removed: Tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class _Beside:
    """What the ``__pycache__`` beside one module holds (read once, before planning)."""

    change: FileChange
    folder: Tuple[str, ...]
    stem: str
    names: Tuple[str, ...]
    headers: Mapping[str, bc.Header]


def running_interpreter() -> Optional[Interpreter]:
    """The interpreter kolla-entry runs on, or None when it keeps no bytecode (no cache tag)."""
    import importlib.util  # only after a patch is applied

    tag = sys.implementation.cache_tag
    return None if tag is None else Interpreter(tag, importlib.util.MAGIC_NUMBER)


def plan_bytecode(root: Path, changes: Sequence[FileChange], code: Mapping[str, bc.Code],
                  interpreter: Optional[Interpreter] = None) -> BytecodePlan:
    """
    Decide the pycs to write and remove for the modules ``changes`` write or delete (reads only).

    Args:
        root: the target folder.
        changes: the commit's changes; only ``.py`` files count.
        code: module path -> marshalled code of its new content (from the compile check), or what
            waits for it while the check still runs.
        interpreter: who the bytecode is for; None: the running one.

    Returns:
        The pyc changes to commit after ``changes``, the modules made import-ready, the stale files
        removed, and why no bytecode is written when it is not.

    Raises:
        PatchRefused: a ``__pycache__`` beside a module is a symlink or not a folder.
        WriteFailed: a ``__pycache__`` cannot be read.
    """
    modules = [c for c in changes if c.path.endswith(".py") and c.bytecode is None]
    if not modules:
        return BytecodePlan()
    current = interpreter or running_interpreter()
    cache = DirCache(open_root(root))
    try:
        found = [_look(cache, change, current) for change in modules]
    finally:
        cache.close()
    reason = _refusal(root, found, current)
    usable = None if reason else current
    default = _series_mode(found)
    writes: List[FileChange] = []
    removals: List[FileChange] = []
    for beside in found:
        pyc = _pyc_for(beside, code, usable, default)
        keep = "" if pyc is None else pyc.path.rsplit("/", 1)[-1]
        writes.extend([] if pyc is None else [pyc])
        removals.extend(FileChange(_path(beside.folder, name), None) for name in beside.names if name != keep)
    return BytecodePlan(tuple(writes + removals), tuple(w.bytecode.source for w in writes if w.bytecode),
                        tuple(r.path for r in removals), reason)


def _path(folder: Tuple[str, ...], name: str) -> str:
    return "/".join((*folder, name))


def _look(cache: DirCache, change: FileChange, current: Optional[Interpreter]) -> _Beside:
    rel = change.path
    where = locate(cache.root_fd, rel)
    folder = (*where.dirs, *where.missing, PYCACHE)
    stem = where.name[: -len(".py")]
    if where.missing:
        return _Beside(change, folder, stem, (), {})
    try:
        fd = cache.get(folder)
    except OSError as err:
        if err.errno == errno.ENOENT:
            return _Beside(change, folder, stem, (), {})
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            # A symlinked __pycache__ is not followed: refuse rather than leave a stale pyc.
            raise PatchRefused(f"{PYCACHE} beside the file is a symlink or not a folder", file=rel) from err
        raise WriteFailed(f"cannot open {PYCACHE}: {err.strerror}", operation="open", file=rel) from err
    pattern = pyc_pattern(stem)
    listed = sorted(os.listdir(fd))
    names = tuple(name for name in listed if pattern.fullmatch(name) and not _is_dir(fd, name))
    return _Beside(change, folder, stem, names, _headers(fd, stem, listed, current))


def _is_dir(fd: int, name: str) -> bool:
    return stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)


def _headers(fd: int, stem: str, listed: Sequence[str], current: Optional[Interpreter]) -> Dict[str, bc.Header]:
    """The headers of the module's own pyc and of the first neighbour's, both for ``current``'s tag."""
    if current is None:
        return {}
    suffix = f".{current.tag}.pyc"
    own = bc.cache_name(stem, current.tag)
    neighbours = [name for name in listed if name.endswith(suffix) and name != own]
    headers = {}
    for name in [own, *neighbours[:1]]:
        header = _read_header(fd, name)
        if header is not None:
            headers[name] = header
    return headers


def _read_header(fd: int, name: str) -> Optional[bc.Header]:
    try:
        handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        return None
    try:
        return bc.read_header(os.read(handle, bc.HEADER_SIZE)) if stat.S_ISREG(os.fstat(handle).st_mode) else None
    except OSError:
        return None
    finally:
        os.close(handle)


def _refusal(root: Path, found: Sequence[_Beside], current: Optional[Interpreter]) -> str:
    """Why bytecode must not be written for this target, or "" when it may."""
    if current is None:
        return "this interpreter keeps no bytecode (no cache tag)"
    headers = [header for beside in found for header in beside.headers.values()]
    if any(header.magic != current.magic for header in headers):
        return f"the target's {current.tag} bytecode has another magic number than this interpreter's"
    if headers:
        return ""
    # A pyc of another tag is never read by this interpreter, nor ours by the target's: only the
    # evidence that the target runs another Python stops the write.
    other = sorted({_tag(beside.stem, name) for beside in found for name in beside.names} - {current.tag})
    if other:
        return f"the target's bytecode is for {', '.join(other)}, kolla-entry runs {current.tag}"
    versions = {m.groups() for m in map(_PYTHON_DIR.fullmatch, Path(os.path.realpath(root)).parts) if m}
    mine = (str(sys.version_info[0]), str(sys.version_info[1]))
    if versions and mine not in versions:
        shown = ", ".join(f"python{major}.{minor}" for major, minor in sorted(versions))
        return f"the target belongs to {shown}, kolla-entry runs python{mine[0]}.{mine[1]}"
    return ""


def _tag(stem: str, name: str) -> str:
    """The interpreter tag of a cached file of ``stem``: ``cpython-39`` of ``mod.cpython-39.opt-1.pyc``."""
    return name[len(stem) + 1:-len(".pyc")].split(".", 1)[0]


def _series_mode(found: Sequence[_Beside]) -> str:
    """The invalidation mode of the first pyc found beside any module; ``timestamp`` when none."""
    for beside in found:
        for header in beside.headers.values():
            return header.mode
    return bc.TIMESTAMP


def _pyc_for(beside: _Beside, code: Mapping[str, bc.Code], current: Optional[Interpreter],
             default: str) -> Optional[FileChange]:
    change = beside.change
    marshalled = code.get(change.path)
    if current is None or change.content is None or marshalled is None:
        return None
    own = bc.cache_name(beside.stem, current.tag)
    header = beside.headers.get(own) or next(iter(beside.headers.values()), None)
    mode = default if header is None else header.mode
    digest = b"" if mode == bc.TIMESTAMP else bc.source_hash(change.content)
    pyc = bc.Pyc(change.path, marshalled, current.magic, mode, digest)
    return FileChange(_path(beside.folder, own), None, bytecode=pyc)
