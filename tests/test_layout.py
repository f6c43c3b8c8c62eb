"""
The package layout is the architecture (issue #11): two pipelines and the seam they share.

``fs`` (the only doors to the filesystem) imports neither pipeline; ``patching`` may use ``fs``;
``overlay`` (issue #16) may use ``patching`` and ``fs``; ``start`` (the ``run`` command) may use ``overlay``,
``patching`` and ``fs``; ``cli`` sits on top. The shared
top-level modules (``log``, ``errors``, ``constants``) import no subpackage. Read from the import
statements of every module, including the ones inside functions (lazy imports count as edges).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import kolla_entry

PACKAGE = Path(kolla_entry.__file__).parent

#: Which part may import which: the layer order of the package.
ALLOWED: Dict[str, Set[str]] = {
    "shared": set(),
    "fs": {"shared"},
    "patching": {"fs", "shared"},
    "overlay": {"patching", "fs", "shared"},
    "start": {"overlay", "patching", "fs", "shared"},
    "cli": {"start", "overlay", "patching", "fs", "shared"},
    "root": {"start", "patching", "cli", "shared"},
}
SUBPACKAGES = ("fs", "patching", "overlay", "start", "cli")


def part_of(module: str) -> str:
    """The layer a ``kolla_entry...`` module belongs to."""
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    if parts[1] in SUBPACKAGES:
        return parts[1]
    if parts[1] == "__main__":
        return "cli"
    return "shared"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Set[str]:
    """Every ``kolla_entry`` module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("kolla_entry"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kolla_entry"):
            assert node.level == 0, f"{path}: relative import"
            # `from kolla_entry.patching import journal` imports the submodule too; `from kolla_entry import
            # log` imports only the submodule (the root package's __init__ is lazy).
            if node.module != "kolla_entry":
                found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def edges() -> List[Tuple[str, str]]:
    result = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for target in imports_of(path):
            if part_of(source) != part_of(target):
                result.append((source, target))
    return result


def test_layers_only_import_downwards() -> None:
    wrong = [f"{source} -> {target}" for source, target in edges()
             if part_of(target) not in ALLOWED[part_of(source)]]
    assert wrong == []


def test_the_check_sees_real_edges() -> None:
    # The graph is not empty: the pod start really uses the patch engine and the seam.
    found = {(part_of(s), part_of(t)) for s, t in edges()}
    assert {("start", "patching"), ("start", "fs"), ("patching", "fs"), ("cli", "start")} <= found


def test_an_upward_import_is_reported() -> None:
    assert "patching" not in ALLOWED[part_of("kolla_entry.fs.seam")]
    assert part_of("kolla_entry.start.runner") not in ALLOWED[part_of("kolla_entry.patching.plan")]


def test_no_prefixed_satellite_modules() -> None:
    satellites = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("_*.py")
                  if p.name not in ("__init__.py", "__main__.py")]
    assert satellites == []


def test_top_level_keeps_only_shared_modules() -> None:
    top = sorted(p.name for p in PACKAGE.iterdir() if not p.name.startswith((".", "__pycache__")))
    assert top == ["__init__.py", "__main__.py", "cli", "constants.py", "errors.py", "fs", "log.py",
                   "overlay", "patching", "py.typed", "start"]
