"""
What a generation of the overlay holds, worked out from the series' net changes (pure).

``changes (kolla_entry.patching) + image listings -> Layout``: every folder on the way to a changed
file is *mirrored*: a real folder in the overlay whose other entries are symlinks into the image
(so code that finds files next to ``__file__`` still finds them), whose changed files are real files
and whose deleted files are simply absent. A mirrored folder left empty by deletions is left out,
as the transaction prunes it in place. ``__pycache__`` is mirrored too, minus the bytecode of
changed and deleted modules (an unchecked-hash pyc would otherwise run the old code), plus the
pycs the commit writes for the changed modules (issue #13's ``pycache`` plan, re-homed beside the
overlay's own copy of each module: Python looks for a module's pyc in the ``__pycache__`` beside the
file it imports, so the image's is never consulted for an overlay file).
:mod:`kolla_entry.overlay.rules` decides beforehand which changes an overlay cannot serve;
:mod:`kolla_entry.overlay.build` writes the layout.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from kolla_entry.patching.pycache import PYCACHE, pyc_pattern
from kolla_entry.patching.transaction import FileChange

#: Lists an image folder (relative to the image root; "" is the root); None when it does not exist.
Lister = Callable[[str], Optional[List[str]]]


@dataclass(frozen=True)
class Layout:
    """
    One generation's tree, relative to its root.

    Args:
        dirs: mirrored folders to create, parents first.
        files: the changed files' new contents.
        links: ``(path, image path)`` symlinks into the image.
        hidden: dotted names of the modules the series deletes (for the import hook).
        listings: each mirrored folder's image listing (the manifest checks it on reuse).
        bytecode: the pycs of changed modules, rendered by the commit from their module's stat.
    """

    dirs: Tuple[str, ...]
    files: Tuple[FileChange, ...]
    links: Tuple[Tuple[str, str], ...]
    hidden: Tuple[str, ...]
    listings: Dict[str, Tuple[str, ...]]
    bytecode: Tuple[FileChange, ...] = ()


def plan_layout(changes: Sequence[FileChange], image: str, listdir: Lister,
                bytecode: Sequence[FileChange] = ()) -> Layout:
    """
    Work out the overlay tree for ``changes`` against the image at ``image`` (a real path).

    Args:
        changes: the series' net changes (content None: deleted).
        image: the image site-packages, as symlink targets name it.
        listdir: reads an image folder's names.
        bytecode: the pycs ``pycache.plan_bytecode`` plans for the written modules (others ignored).
    """
    written = {c.path: c for c in changes if c.content is not None}
    pycs = _rehomed(bytecode, written)
    deleted = {c.path for c in changes if c.content is None}
    mirrored = sorted({d for path in (*written, *deleted) for d in _ancestors(path)}, key=_depth, reverse=True)
    children: Dict[str, Set[str]] = {}
    for folder in mirrored:
        parent, name = posixpath.split(folder)
        children.setdefault(parent, set()).add(name)
    kept: Set[str] = set()
    links: List[Tuple[str, str]] = []
    pycache_dirs: List[str] = []
    listings: Dict[str, Tuple[str, ...]] = {}
    for folder in mirrored:  # deepest first: a child's emptiness is known before its parent's
        names = tuple(sorted(listdir(folder) or ()))
        listings[folder] = names
        own = {posixpath.basename(p) for p in written if posixpath.dirname(p) == folder}
        gone = {posixpath.basename(p) for p in deleted if posixpath.dirname(p) == folder}
        subdirs = children.get(folder, set())
        linked = [n for n in names if n != PYCACHE and n not in own | gone | subdirs]
        if not (linked or own or {d for d in subdirs if posixpath.join(folder, d) in kept}):
            continue
        kept.add(folder)
        links.extend((posixpath.join(folder, n), posixpath.join(image, folder, n)) for n in linked)
        if PYCACHE in names:
            stale = [pyc_pattern(n[:-3]) for n in own | gone if n.endswith(".py")]
            cache = posixpath.join(folder, PYCACHE)
            pyc_names = tuple(sorted(listdir(cache) or ()))
            listings[cache] = pyc_names
            pycache_dirs.append(cache)
            links.extend((posixpath.join(cache, n), posixpath.join(image, cache, n)) for n in pyc_names
                         if not any(p.fullmatch(n) for p in stale))
    pycache_dirs.extend(posixpath.dirname(c.path) for c in pycs)
    dirs = sorted(kept | set(pycache_dirs), key=lambda d: (_depth(d), d))
    return Layout(dirs=tuple(dirs), files=tuple(written[p] for p in sorted(written)),
                  links=tuple(sorted(links)), hidden=tuple(sorted(_module_names(deleted))), listings=listings,
                  bytecode=pycs)


def _rehomed(bytecode: Sequence[FileChange], written: Dict[str, FileChange]) -> Tuple[FileChange, ...]:
    """
    Each pyc at ``<module's folder>/__pycache__/<name>``: the pycache plan names physical image folders
    (it follows in-image folder symlinks), the overlay mirrors the paths the patches name.
    """
    pycs = []
    for change in bytecode:
        pyc = change.bytecode
        if pyc is None or pyc.source not in written:
            continue
        folder = posixpath.join(posixpath.dirname(pyc.source), PYCACHE)
        pycs.append(replace(change, path=posixpath.join(folder, posixpath.basename(change.path))))
    return tuple(sorted(pycs, key=lambda c: c.path))


def _ancestors(path: str) -> List[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _depth(folder: str) -> int:
    return folder.count("/")


def _module_names(deleted: Set[str]) -> Set[str]:
    names = set()
    for path in deleted:
        if path.endswith(".py"):
            dotted = path[: -len(".py")].replace("/", ".")
            names.add(dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted)
    return names
