"""
The import hook in a real interpreter: a venv whose site-packages is the image, a real overlay built by
``apply_overlay``, and the service's view checked in a subprocess (issue #16).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.overlay.kit import Box, make_box

IMAGE = {
    "pkg/__init__.py": b"NAME = 'image'\n",
    "pkg/mod.py": b"def f():\n    return 1\n\n\ndef g():\n    return 2\n",
    "pkg/gone.py": b"GONE = True\n",
    "pkg/data.json": b'{"v": 1}\n',
    "pkg/templates/page.html": b"<p>unchanged</p>\n",
    "pkg/sub/__init__.py": b"",
    "pkg/sub/deep.py": b"def h():\n    return 'image'\n",
    "ns/portion.py": b"WHO = 'image'\n",
    "ns/other.py": b"OTHER = 1\n",
    "toplevel.py": b"TOP = 'image'\n",
    "oldtop.py": b"OLD = 1\n",
}
FIX = {
    "pkg/__init__.py": b"NAME = 'patched'\n",
    "pkg/mod.py": b"def f():\n    raise ValueError('fixed')\n\n\ndef g():\n    return 2\n",
    "pkg/gone.py": None,
    "pkg/data.json": b'{"v": 2}\n',
    "pkg/sub/deep.py": b"def h():\n    return 'patched'\n",
    "pkg/sub/new.py": b"NEW = 1\n",
    "ns/portion.py": b"WHO = 'patched'\n",
    "toplevel.py": b"TOP = 'patched'\n",
    "oldtop.py": None,
}


def _box(tmp_path: Path) -> Box:
    box = make_box(tmp_path, IMAGE)
    box.add_patch(IMAGE, FIX)
    assert box.apply().written
    return box


def _service(box: Box, code: str) -> dict:
    done = box.python_run(code + "\nimport json, sys\nprint(json.dumps(out))")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_patched_modules_are_imported_from_the_overlay(tmp_path: Path) -> None:
    box = _box(tmp_path)
    out = _service(box, "import pkg, pkg.mod, pkg.sub.deep, pkg.sub.new, toplevel\n"
                        "out = [pkg.NAME, pkg.mod.__file__, pkg.sub.deep.h(), pkg.sub.new.NEW, toplevel.TOP]")
    tree = str(box.overlay / "current")
    assert out[0] == "patched"
    assert out[1].startswith(str(box.overlay / "gen-")) and out[1].endswith("/site-packages/pkg/mod.py")
    assert out[2:] == ["patched", 1, "patched"]
    assert Path(out[1]).read_bytes() == FIX["pkg/mod.py"]
    assert Path(tree).is_symlink()


def test_the_image_put_first_on_sys_path_still_imports_the_overlay(tmp_path: Path) -> None:
    """horizon's wsgi.py inserts its site-packages (resolved) at sys.path[0]: the fix must still be served."""
    box = _box(tmp_path)
    out = _service(box, "import os, sys\n"
                        f"sys.path.insert(0, os.path.realpath({str(box.site)!r}))\n"
                        "import pkg, pkg.mod, toplevel, ns.portion, ns.other\n"
                        "out = [pkg.NAME, pkg.mod.__file__, toplevel.TOP, ns.portion.WHO, ns.other.OTHER]")
    assert out[0] == "patched" and out[1].startswith(str(box.overlay / "gen-")) and out[2] == "patched"
    # A namespace package keeps every portion (the image's too); sys.path order decides within it.
    assert out[4] == 1


def test_traceback_points_at_the_overlay_line(tmp_path: Path) -> None:
    box = _box(tmp_path)
    done = box.python_run("import pkg.mod\npkg.mod.f()")
    assert done.returncode == 1
    frame = [line for line in done.stderr.splitlines() if "pkg/mod.py" in line][-1]
    assert "/overlay/gen-" in frame and "line 2, in f" in frame
    assert "raise ValueError('fixed')" in done.stderr


def test_inspect_getsource_shows_the_fix(tmp_path: Path) -> None:
    box = _box(tmp_path)
    out = _service(box, "import inspect, pkg.mod\nout = inspect.getsource(pkg.mod.f)")
    assert "fixed" in out


def test_deleted_modules_are_gone(tmp_path: Path) -> None:
    box = _box(tmp_path)
    out = _service(box, "out = []\n"
                        "for name in ('pkg.gone', 'oldtop'):\n"
                        "    try:\n"
                        "        __import__(name)\n"
                        "        out.append('imported')\n"
                        "    except ModuleNotFoundError as err:\n"
                        "        out.append(err.name)")
    assert out == ["pkg.gone", "oldtop"]


def test_data_files_through_get_data_resources_and_dirname(tmp_path: Path) -> None:
    box = _box(tmp_path)
    out = _service(box, "import os, pkg, importlib.resources as res\n"
                        "here = os.path.dirname(pkg.__file__)\n"
                        "out = [pkg.__spec__.loader.get_data(os.path.join(here, 'data.json')).decode(),\n"
                        "       res.files('pkg').joinpath('data.json').read_text(),\n"
                        "       open(os.path.join(here, 'templates', 'page.html')).read(),\n"
                        "       sorted(n for n in os.listdir(here) if n != '__pycache__')]")
    assert out[0] == out[1] == '{"v": 2}\n'
    assert out[2] == "<p>unchanged</p>\n"
    # The package folder as the fix leaves it: gone.py deleted, everything else there.
    assert out[3] == ["__init__.py", "data.json", "mod.py", "sub", "templates"]


def test_namespace_package_portion_is_patched(tmp_path: Path) -> None:
    box = _box(tmp_path)
    out = _service(box, "import ns.portion, ns.other\nout = [ns.portion.WHO, ns.other.OTHER, len(ns.__path__)]")
    assert out[:2] == ["patched", 1]


def test_without_the_variable_the_image_is_untouched_and_the_hook_not_imported(tmp_path: Path) -> None:
    box = _box(tmp_path)
    done = box.python_run("import sys, pkg, pkg.mod\nprint(pkg.NAME, pkg.mod.__file__, "
                          "'kolla_entry_overlay' in sys.modules)", overlay=False)
    assert done.returncode == 0, done.stderr
    name, where, hooked = done.stdout.split()
    assert (name, hooked) == ("image", "False")
    assert where == str(box.site / "pkg" / "mod.py")


def test_an_overlay_made_for_another_site_packages_is_not_used(tmp_path: Path) -> None:
    box = _box(tmp_path)
    current = box.overlay / "current"
    (current / "target").write_text("/somewhere/else\n")
    done = box.python_run("import pkg\nprint(pkg.NAME)")
    assert done.stdout.strip() == "image"
    assert "made for /somewhere/else" in done.stderr


def test_no_current_generation_serves_the_image(tmp_path: Path) -> None:
    box = make_box(tmp_path, IMAGE)
    done = box.python_run("import pkg\nprint(pkg.NAME)")
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "image", "")


def test_an_unreadable_overlay_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    box = _box(tmp_path)
    generation = (box.overlay / "current").resolve()
    os.rename(generation / "target", generation / "target.moved")
    os.mkdir(generation / "target")  # reading it fails with EISDIR, as any unreadable file would
    done = box.python_run("import pkg\nprint(pkg.NAME)")
    assert (done.returncode, done.stdout.strip()) == (0, "image")
    assert done.stderr.startswith("kolla-entry overlay: cannot read"), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_the_overlay_is_activated_once_per_interpreter(tmp_path: Path) -> None:
    box = _box(tmp_path)
    out = _service(box, "import sys\nout = [sum('/overlay/gen-' in p for p in sys.path),\n"
                        "       sum(type(f).__name__ == 'HideDeleted' for f in sys.meta_path)]")
    assert out == [1, 1]


def test_a_module_deleted_from_a_namespace_package_is_gone(tmp_path: Path) -> None:
    image = {"ns/a.py": b"A = 1\n", "ns/b.py": b"B = 1\n"}
    box = make_box(tmp_path, image)
    box.add_patch(image, {"ns/a.py": b"A = 2\n", "ns/b.py": None})
    box.apply()
    # The image's ns/ is a second portion of the namespace package: the finder must hide its b.py.
    out = _service(box, "import ns.a\nout = [ns.a.A, len(ns.__path__)]\n"
                        "try:\n    import ns.b\n    out.append('imported')\n"
                        "except ModuleNotFoundError as err:\n    out.append(err.name)")
    assert out == [2, 2, "ns.b"]
