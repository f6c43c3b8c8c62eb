"""
Differential: overlay mode against the engine in place (issue #16), on generated trees and change sets.

The same real ``git diff`` is applied in place to one copy of a tree and into an overlay over another;
the tree the service would see through the overlay (a top-level name present in the overlay is served
from it, as the first ``sys.path`` entry wins) must equal the patched tree file by file and folder by
folder, with the same statuses.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kolla_entry.overlay.apply import OverlayRequest, apply_overlay
from kolla_entry.overlay.build import install_hook
from kolla_entry.patching.engine import PatchRequest, apply_patches
from tests.helpers import git_diff, make_tree

FILES = ["pkg/__init__.py", "pkg/mod.py", "pkg/data.txt", "pkg/a/__init__.py", "pkg/a/x.py",
         "pkg/a/b/__init__.py", "pkg/a/b/y.py", "top.py", "other/__init__.py", "other/z.py"]
NEW = ["pkg/new.py", "pkg/fresh/__init__.py", "pkg/fresh/f.py", "pkg/a/b/extra.py"]
HOOK = {"kolla_entry_overlay.py", "kolla-entry-overlay.pth"}


@st.composite
def _change_set(draw: st.DrawFn) -> Dict[str, Optional[bytes]]:
    changes: Dict[str, Optional[bytes]] = {}
    for rel in draw(st.lists(st.sampled_from(FILES), min_size=1, max_size=6, unique=True)):
        changes[rel] = None if draw(st.booleans()) else f"# changed\nVALUE = {len(changes)}\n".encode()
    for rel in draw(st.lists(st.sampled_from(NEW), max_size=3, unique=True)):
        changes[rel] = b"NEW = 1\n"
    return changes


def _served(image: Path, tree: Path) -> Dict[str, object]:
    """
    Every file and folder the service would see: overlay entries first for top-level names in it; a
    top-level module or package the hook hides (``hidden``) is not there.
    """
    seen: Dict[str, object] = {}
    in_tree = set(os.listdir(tree)) if tree.is_dir() else set()
    hidden_file = tree.parent / "hidden"
    hidden = set(hidden_file.read_text().split()) if hidden_file.exists() else set()
    for top in sorted((set(os.listdir(image)) | in_tree) - HOOK - {"__pycache__"}):
        base = tree if os.path.lexists(tree / top) else image
        root = base / top
        if (top[:-3] if top.endswith(".py") else top) in hidden and base == image:
            continue  # the hook's finder refuses it
        if root.is_file():
            seen[top] = root.read_bytes()
            continue
        for folder, dirs, files in os.walk(root, followlinks=True):
            rel = os.path.relpath(folder, base)
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            seen[rel] = "<dir>"
            for name in sorted(files):
                seen[os.path.join(rel, name)] = (Path(folder) / name).read_bytes()
    return seen


def _statuses(report: object) -> List[Tuple[str, str]]:
    return [(p.status, p.reason) for p in report.patches]  # type: ignore[attr-defined]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=_change_set())
def test_overlay_serves_what_the_engine_writes_in_place(tmp_path_factory: object, changes: Dict[str, Optional[bytes]]
                                                        ) -> None:
    work = Path(tmp_path_factory.mktemp("diff"))  # type: ignore[attr-defined]
    image = {rel: f"ORIGINAL = {i}\n".encode() for i, rel in enumerate(FILES)}
    patches = work / "patches"
    patches.mkdir()
    (patches / "0001.patch").write_bytes(git_diff(work, image, changes))
    in_place = make_tree(work / "in-place", dict(image))
    site = make_tree(work / "site", dict(image))
    install_hook(site)
    overlay = work / "overlay"
    overlay.mkdir()
    pattern = (str(patches / "*.patch"),)
    expected = apply_patches(PatchRequest(target=in_place, patterns=pattern))
    got = apply_overlay(OverlayRequest(PatchRequest(target=site, patterns=pattern), overlay, durable=False))
    assert _statuses(got) == _statuses(expected)
    tree = overlay / "current" / "site-packages"
    assert _served(site, tree) == _served(in_place, work / "nothing")
    shutil.rmtree(work)
