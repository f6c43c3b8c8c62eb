"""
Relevance: which file each entry of a patch names in this image, and whether the patch is this image's.

Called by :mod:`kolla_entry.patching.plan` after strip and confinement, before matching; reads the
target only through the series view (``view.SeriesView``), so earlier patches of the series count.
Relevance is decided by package, never by one file (issue #12).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from kolla_entry.patching.model import CREATE, MODIFY, FilePatch
from kolla_entry.patching.view import SeriesView

#: A file patch's (old, new) paths after strip, relative to the target; None for /dev/null.
Paths = Tuple[Optional[str], Optional[str]]


def chosen_names(fp: FilePatch, pair: Paths, view: SeriesView) -> Paths:
    """
    The file a modification patches, as GNU patch chooses it.

    The old name if it exists, else the new name if that exists (``diff -u x.py.orig x.py`` with
    ``--strip 0``), else the old name (issue #12). Other kinds keep their two names.

    Returns:
        The (old, new) pair to plan with: for a modification, the chosen name twice.

    Raises:
        PatchRefused: a name resolves through a symlink out of the target.
    """
    old, new = pair
    if fp.kind != MODIFY or old is None or new is None or old == new:
        return pair
    if view.get(old) is None and view.get(new) is not None:
        return new, new
    return old, old


def unrelated_packages(files: Sequence[FilePatch], paths: Sequence[Paths], view: SeriesView) -> Optional[str]:
    """
    Whether the patch belongs to another image: none of its top-level folders is installed here.

    Relevance is decided by package, never by one file (issue #12): a patch that touches an
    installed package is this image's patch, so every file missing inside that package is a
    conflict, while files of folders not installed (docs, another distribution's tests) are
    skipped with a warning. Only a patch none of whose folders is installed belongs to another image.

    Returns:
        None when some file lies in an installed top-level folder; else the folders, as the skip
        reason's subject (``nova/ is``, ``doc/, nova/ are``).

    Raises:
        PatchRefused: a path is not a safe relative path.
    """
    tops: List[str] = []
    for fp, pair in zip(files, paths):
        rel = relevance_path(fp, pair)
        if view.top_level_exists(rel):
            return None
        top = rel.split("/", 1)[0] + ("/" if "/" in rel else "")
        if top not in tops:
            tops.append(top)
    return f"{', '.join(tops)} {'is' if len(tops) == 1 else 'are'}"


def relevance_path(fp: FilePatch, paths: Paths) -> str:
    """
    The path that decides a file patch's relevance: the created file, else the (chosen) old one.
    """
    old, new = paths
    chosen = new if fp.kind == CREATE else old
    assert chosen is not None
    return chosen
