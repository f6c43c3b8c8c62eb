"""
Bytecode in overlay mode (issues #13 and #16): each patched or created module of a generation has the
pyc Python uses for the overlay's file, from the compile check's code, in the image's invalidation
mode; a reuse keeps it valid; the image's pyc of a patched module is never what runs.

Checked the way ``tests/patching/test_pycache.py`` does: a real service interpreter imports through the
real hook with ``SourceLoader.source_to_code`` spied on, so any compilation at import shows.
"""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import py_compile
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest
from structlog.testing import capture_logs

from kolla_entry.overlay.layout import plan_layout
from kolla_entry.patching.bytecode import Pyc
from kolla_entry.patching.transaction import FileChange
from tests.helpers import bytecode_mode, bytecode_of
from tests.overlay.kit import Box, make_box

TAG = sys.implementation.cache_tag
OLD = b"VALUE = 'old'\n"
NEW = b"VALUE = 'patched'\n"
MODES = {"timestamp": py_compile.PycInvalidationMode.TIMESTAMP,
         "checked-hash": py_compile.PycInvalidationMode.CHECKED_HASH,
         "unchecked-hash": py_compile.PycInvalidationMode.UNCHECKED_HASH}
IMAGE = {"pkg/__init__.py": b"", "pkg/mod.py": OLD, "pkg/gone.py": b"GONE = 1\n", "pkg/keep.py": b"KEEP = 1\n",
         "top.py": OLD}
AFTER: Dict[str, Optional[bytes]] = {"pkg/mod.py": NEW, "pkg/gone.py": None, "pkg/new.py": NEW, "top.py": NEW}

#: Imports the modules as a service process would and says, per module, whether it was compiled.
_PROBE = """
import importlib._bootstrap_external as ext, json
compiled = []
original = ext.SourceLoader.source_to_code
def spy(self, data, path, **kwargs):
    compiled.append(str(path))
    return original(self, data, path, **kwargs)
ext.SourceLoader.source_to_code = spy
import pkg.mod, pkg.new, top
try:
    import pkg.gone
    gone = "importable"
except ModuleNotFoundError:
    gone = "gone"
print(json.dumps({"values": [pkg.mod.VALUE, pkg.new.VALUE, top.VALUE], "gone": gone,
                  "files": [pkg.mod.__file__, pkg.new.__file__, top.__file__],
                  "compiled": sorted(p.rsplit("/", 1)[-1] for p in compiled if not p.endswith("__init__.py"))}))
"""


def _compile_image(box: Box, mode: str) -> None:
    """The image build's compileall, in ``mode``, with -O variants too."""
    for rel in IMAGE:
        source = str(box.site / rel)
        py_compile.compile(source, invalidation_mode=MODES[mode], doraise=True)
        py_compile.compile(source, cfile=importlib.util.cache_from_source(source, optimization=1),
                           invalidation_mode=MODES[mode], optimize=1, doraise=True)


def _box(tmp_path: Path, mode: Optional[str]) -> Box:
    box = make_box(tmp_path, dict(IMAGE))
    if mode is not None:
        _compile_image(box, mode)
    box.add_patch(dict(IMAGE), AFTER)
    return box


def _tree(box: Box) -> Path:
    return Path(os.path.realpath(box.overlay / "current")) / "site-packages"


def _service(box: Box) -> Dict[str, object]:
    done = box.python_run(_PROBE)
    assert done.returncode == 0, done.stderr
    result: Dict[str, object] = json.loads(done.stdout)
    return result


def _assert_served_from_bytecode(box: Box, mode: str) -> None:
    tree = _tree(box)
    for rel in ("pkg/mod.py", "pkg/new.py", "top.py"):
        assert bytecode_mode(tree, rel) == mode, rel
        assert not bytecode_of(tree, rel).is_symlink()
    # No -O variant of a changed module, nor anything of the deleted one, is served.
    assert sorted(os.listdir(tree / "pkg" / "__pycache__")) == sorted(
        [f"mod.{TAG}.pyc", f"new.{TAG}.pyc"] + ([f"__init__.{TAG}.pyc", f"__init__.{TAG}.opt-1.pyc",
                                                   f"keep.{TAG}.pyc", f"keep.{TAG}.opt-1.pyc"]
                                                  if (box.site / "pkg" / "__pycache__").exists() else []))
    seen = _service(box)
    assert seen["values"] == ["patched", "patched", "patched"] and seen["gone"] == "gone"
    assert all(str(f).startswith(str(box.overlay)) for f in seen["files"])  # type: ignore[attr-defined]
    assert seen["compiled"] == [], "the service compiled a patched module instead of loading its pyc"


@pytest.mark.parametrize("mode", [*sorted(MODES), None])
def test_the_service_loads_each_patched_module_from_the_overlays_pyc_also_after_a_reuse(
        tmp_path: Path, mode: Optional[str]) -> None:
    box = _box(tmp_path, mode)
    with capture_logs() as logs:
        report = box.apply()
    assert report.written and sorted(report.import_ready) == ["pkg/mod.py", "pkg/new.py", "top.py"]
    assert [(e["modules"], e["of"]) for e in logs if e["event"] == "modules_import_ready"] == [(3, 3)]
    # An unchecked-hash image pyc of pkg/mod.py would run 'old': the served value shows it is not used.
    _assert_served_from_bytecode(box, mode or "timestamp")
    first = os.readlink(box.overlay / "current")
    with capture_logs() as logs:
        again = box.apply()
    assert not again.written and os.readlink(box.overlay / "current") == first
    assert any(e["event"] == "overlay_reused" for e in logs)
    _assert_served_from_bytecode(box, mode or "timestamp")


def test_the_probe_sees_a_compilation(tmp_path: Path) -> None:
    """The probe can fail: an overlay module whose mtime no longer fits its timestamp pyc is compiled."""
    box = _box(tmp_path, "timestamp")
    box.apply()
    module = _tree(box) / "pkg" / "mod.py"
    os.utime(module, (module.stat().st_atime, module.stat().st_mtime + 10))
    assert _service(box)["compiled"] == ["mod.py"]


def test_a_module_whose_mtime_changed_is_rebuilt_with_fitting_bytecode(tmp_path: Path) -> None:
    box = _box(tmp_path, "timestamp")
    box.apply()
    first = os.readlink(box.overlay / "current")
    module = _tree(box) / "pkg" / "mod.py"
    os.utime(module, (module.stat().st_atime, module.stat().st_mtime + 10))
    with capture_logs() as logs:
        report = box.apply()
    assert report.written and os.readlink(box.overlay / "current") != first
    assert any(e["event"] == "overlay_stale" and "bytecode" in e["reason"] for e in logs)
    _assert_served_from_bytecode(box, "timestamp")


def test_a_pyc_changed_in_the_overlay_is_never_reused(tmp_path: Path) -> None:
    """An unchecked-hash pyc runs without a look at its source: one the service rewrote must not survive."""
    box = _box(tmp_path, "unchecked-hash")
    box.apply()
    first = os.readlink(box.overlay / "current")
    pyc = bytecode_of(_tree(box), "pkg/mod.py")
    evil = marshal.dumps(compile(b"VALUE = 'evil'\n", str(_tree(box) / "pkg/mod.py"), "exec"))
    pyc.write_bytes(pyc.read_bytes()[:16] + evil)
    assert _service(box)["values"] == ["evil", "patched", "patched"]  # what the check guards against
    report = box.apply()
    assert report.written and os.readlink(box.overlay / "current") != first
    _assert_served_from_bytecode(box, "unchecked-hash")


def test_an_image_of_another_python_gets_no_bytecode_and_a_warning(tmp_path: Path) -> None:
    # Only pkg/ is patched: the site-packages root holds the hook's bytecode, of this very Python.
    box = make_box(tmp_path, dict(IMAGE))
    (box.site / "pkg" / "__pycache__").mkdir()
    (box.site / "pkg" / "__pycache__" / "mod.cpython-39.pyc").write_bytes(b"old")
    box.add_patch(dict(IMAGE), {"pkg/mod.py": NEW, "pkg/new.py": NEW})
    with capture_logs() as logs:
        report = box.apply()
    assert report.written and report.import_ready == ()
    assert any(e["event"] == "bytecode_not_written" and "cpython-39" in e["reason"] for e in logs)
    assert [(e["modules"], e["of"]) for e in logs if e["event"] == "modules_import_ready"] == [(0, 2)]
    assert os.listdir(_tree(box) / "pkg" / "__pycache__") == []
    done = box.python_run(_PROBE.replace("import pkg.mod, pkg.new, top", "import pkg.mod, pkg.new, top; "
                                         "top.VALUE = 'patched'"))
    seen = json.loads(done.stdout)
    assert seen["values"] == ["patched", "patched", "patched"]
    assert {"mod.py", "new.py"} <= set(seen["compiled"])  # each service process compiles them
    assert box.apply().written is False  # and the generation is reused as it is


def test_the_state_file_shows_import_ready_per_file_as_in_place(tmp_path: Path) -> None:
    box = _box(tmp_path, "checked-hash")
    state_file = tmp_path / "state.json"
    box.apply(state_file=state_file)
    section = json.loads(state_file.read_text())["patches"]
    assert section["import_ready"] == 3
    files = {f["path"]: f.get("bytecode") for p in section["patches"] for f in p["files"]}
    assert files == {"pkg/mod.py": "import-ready", "pkg/gone.py": None, "pkg/new.py": "import-ready",
                     "top.py": "import-ready"}


def test_a_pyc_is_placed_beside_the_overlays_copy_of_its_module() -> None:
    """The pycache plan names the image's physical folder (through an in-image folder link); the overlay mirrors
    the path the patch names, and a top-level module's pyc gets a __pycache__ at the root of the tree."""
    def pyc(path: str, source: str) -> FileChange:
        return FileChange(path, None, bytecode=Pyc(source, b"code", b"\0\0\r\n", "timestamp"))

    listings = {"": ["pkg", "top.py"], "pkg": ["__init__.py", "link", "real"], "pkg/link": ["mod.py", "other.py"]}
    layout = plan_layout([FileChange("pkg/link/mod.py", NEW), FileChange("top.py", NEW)], "/image",
                         lambda folder: listings.get(folder),
                         [pyc(f"pkg/real/__pycache__/mod.{TAG}.pyc", "pkg/link/mod.py"),
                          pyc(f"__pycache__/top.{TAG}.pyc", "top.py"),
                          pyc(f"pkg/__pycache__/gone.{TAG}.pyc", "pkg/gone.py")])
    assert [c.path for c in layout.bytecode] == [f"__pycache__/top.{TAG}.pyc", f"pkg/link/__pycache__/mod.{TAG}.pyc"]
    assert {"__pycache__", "pkg/link/__pycache__"} <= set(layout.dirs)
