"""
kolla-entry's overlay import hook: the service's side of overlay mode (issue #16).

Standard library only, and no import of ``kolla_entry``: the image build copies this file into the
service venv as ``kolla_entry_overlay.py`` beside a one-line ``kolla-entry-overlay.pth``
(``kolla-entry install-overlay-hook``). Python's ``site`` runs that line at every interpreter start;
with ``KOLLA_ENTRY_OVERLAY`` unset it costs one dictionary lookup and this module is never imported.

With it set (``kolla-entry run`` sets it for the service), :func:`activate`:

1. resolves ``<overlay>/current`` once (a running process keeps its generation even if a later
   start switches ``current``);
2. checks that the generation was made for this very site-packages (``<generation>/target``);
3. puts ``<generation>/site-packages`` on ``sys.path`` right before this site-packages, so the
   normal import system finds a patched package there first. Each folder on the way to a changed
   file is a real folder in the overlay whose other entries are symlinks into the image, so
   ``__file__``, tracebacks, ``inspect.getsource``, ``importlib.resources``, ``get_data`` and
   ``os.path.dirname(__file__)`` all see the patched tree;
4. puts :class:`ServeTopLevel` first on ``sys.meta_path``: the overlay's top-level packages and modules
   are found in the overlay even when the service puts the image's site-packages ahead of it on
   ``sys.path`` (horizon's ``openstack_dashboard/wsgi.py`` inserts it at index 0); their submodules
   follow the package's ``__path__``, which is the overlay's;
5. when a patch deletes modules, puts :class:`HideDeleted` before it: a deleted
   module that only the image still provides (a top-level module, a namespace package portion)
   is not found.

Neighbours: :mod:`kolla_entry.overlay.build` writes what this reads.
"""

from __future__ import annotations

import os
import sys
from typing import Any, FrozenSet, List, Optional, Sequence

#: The variable that activates the hook: the overlay folder.
ENV = "KOLLA_ENTRY_OVERLAY"
#: Names inside the overlay folder and each generation, shared with ``kolla_entry.overlay.build``.
CURRENT = "current"
TREE = "site-packages"
TARGET_FILE = "target"
HIDDEN_FILE = "hidden"
#: What the image build installs into the service venv.
MODULE_NAME = "kolla_entry_overlay"
PTH_NAME = "kolla-entry-overlay.pth"
PTH_LINE = (f'import os; os.environ.get("{ENV}") and __import__("{MODULE_NAME}").activate_from_environ()\n')


class HideDeleted:
    """
    A meta path finder that makes modules deleted by a patch unimportable when the image still has them.

    Args:
        names: the dotted names the overlay deletes.
        image: the real path of the image's site-packages.
    """

    def __init__(self, names: FrozenSet[str], image: str) -> None:
        self.names = names
        self.image = image.rstrip(os.sep) + os.sep

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None, target: Any = None) -> Any:
        """Refuse a deleted module found in the image; anything else is left to the other finders."""
        if fullname not in self.names:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        origin = getattr(spec, "origin", None)
        if origin and os.path.realpath(origin).startswith(self.image):
            raise ModuleNotFoundError(f"No module named {fullname!r} (deleted by a hot-fix)", name=fullname)
        return None

    def invalidate_caches(self) -> None:
        """Nothing cached."""


class ServeTopLevel:
    """
    A meta path finder that finds the overlay's top-level packages and modules in the overlay first.

    A namespace package is left to the path finder, which joins its portions along ``sys.path``.

    Args:
        names: the top-level names the overlay's tree holds.
        tree: the generation's site-packages.
    """

    def __init__(self, names: FrozenSet[str], tree: str) -> None:
        self.names = names
        self.tree = [tree]

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None, target: Any = None) -> Any:
        """The overlay's spec of a top-level name it holds; anything else is left to the other finders."""
        if path is not None or fullname not in self.names:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, self.tree)
        return spec if spec is not None and spec.origin is not None else None

    def invalidate_caches(self) -> None:
        """Nothing cached."""


def activate(overlay: str, site_dir: str) -> Optional[str]:
    """
    Serve the overlay's current generation to this interpreter.

    Args:
        overlay: the overlay folder (``KOLLA_ENTRY_OVERLAY``).
        site_dir: the site-packages this hook was installed into.

    Returns:
        The generation's tree now on ``sys.path``, or None when there is no current generation
        (no patch) or it was made for another site-packages (a warning on stderr says so).
    """
    generation = os.path.realpath(os.path.join(overlay, CURRENT))
    try:
        with open(os.path.join(generation, TARGET_FILE), encoding="utf-8") as handle:
            made_for = handle.read().strip()
    except FileNotFoundError:
        return None
    except OSError as err:
        # One line, not site's traceback of a failing .pth line.
        sys.stderr.write(f"kolla-entry overlay: cannot read {generation}: {err.strerror}; not used by this "
                         "interpreter\n")
        return None
    image = os.path.realpath(site_dir)
    if made_for != image:
        sys.stderr.write(f"kolla-entry overlay: {generation} was made for {made_for}, not {image}; "
                         "not used by this interpreter\n")
        return None
    tree = os.path.join(generation, TREE)
    _insert_before(sys.path, tree, image)
    sys.meta_path.insert(0, ServeTopLevel(_top_level(tree), tree))
    hidden = _read_lines(os.path.join(generation, HIDDEN_FILE))
    if hidden:
        sys.meta_path.insert(0, HideDeleted(frozenset(hidden), image))
    return tree


def _insert_before(path: List[str], tree: str, image: str) -> None:
    # Right before the image's own entry: whatever came earlier on sys.path keeps its precedence.
    for index, entry in enumerate(path):
        if entry and os.path.realpath(entry) == image:
            path.insert(index, tree)
            return
    path.append(tree)


def _top_level(tree: str) -> FrozenSet[str]:
    try:
        entries = os.listdir(tree)
    except OSError:
        return frozenset()
    return frozenset(name[:-3] if name.endswith(".py") else name for name in entries
                     if name.endswith(".py") or "." not in name)


def _read_lines(name: str) -> List[str]:
    try:
        with open(name, encoding="utf-8") as handle:
            return [line for line in handle.read().splitlines() if line]
    except FileNotFoundError:
        return []


_activated: List[Optional[str]] = []


def activate_from_environ() -> Optional[str]:
    """
    The ``.pth`` entry point: activate the overlay ``KOLLA_ENTRY_OVERLAY`` names for this site-packages.

    Once per interpreter: ``site`` runs the ``.pth`` line twice in a venv whose ``lib64`` is a symlink to
    ``lib`` (it compares the two paths without resolving them).
    """
    if _activated:
        return _activated[0]
    overlay = os.environ.get(ENV)
    result = activate(overlay, os.path.dirname(os.path.abspath(__file__))) if overlay else None
    _activated.append(result)
    return result
