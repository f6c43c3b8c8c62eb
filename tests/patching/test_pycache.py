"""Stale bytecode of changed modules is removed, so a patch is never hidden by a pyc."""

from __future__ import annotations

import errno
import importlib.util
import os
import py_compile
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

from kolla_entry.errors import PatchRefused, WriteFailed
from kolla_entry.fs.seam import FileSystem
from kolla_entry.patching.pycache import invalidate, pyc_pattern
from kolla_entry.patching.transaction import FileChange, commit
from tests.helpers import Symlink, make_tree, read_tree


class FailUnlink(FileSystem):
    def __init__(self) -> None:
        self.calls: List[Tuple[str, str]] = []

    def _count(self, operation: str, path: str) -> None:
        self.calls.append((operation, path))
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        ("mod.cpython-311.pyc", True),
        ("mod.cpython-39.opt-1.pyc", True),
        ("mod.cpython-312.opt-2.pyc", True),
        ("mod.pypy39.pyc", True),
        ("mod_x.cpython-311.pyc", False),
        ("mod.x.cpython-311.pyc", False),
        ("module.cpython-311.pyc", False),
        ("mod.cpython-311.pyc.123456", False),
        ("mod.py", False),
    ],
)
def test_pyc_pattern_covers_every_tag_and_opt_level_of_one_module(name: str, matches: bool) -> None:
    assert bool(pyc_pattern("mod").fullmatch(name)) is matches


def test_removes_only_the_pycs_of_changed_modules(tmp_path: Path) -> None:
    make_tree(tmp_path, {
        "pkg/mod.py": b"", "pkg/other.py": b"", "pkg/gone.py": b"", "pkg/data.txt": b"",
        "pkg/__pycache__/mod.cpython-311.pyc": b"1",
        "pkg/__pycache__/mod.cpython-39.opt-1.pyc": b"2",
        "pkg/__pycache__/mod.cpython-311.opt-2.pyc": b"3",
        "pkg/__pycache__/gone.cpython-311.pyc": b"4",
        "pkg/__pycache__/other.cpython-311.pyc": b"keep",
        "pkg/__pycache__/mod_x.cpython-311.pyc": b"keep",
        "pkg/sub/__pycache__/mod.cpython-311.pyc": b"keep",
    })
    (tmp_path / "pkg/gone.py").unlink()  # a deleted module's bytecode goes too
    removed = invalidate(tmp_path, ["pkg/mod.py", "pkg/gone.py", "pkg/data.txt", "nowhere/x.py"])
    assert sorted(removed) == ["pkg/__pycache__/gone.cpython-311.pyc", "pkg/__pycache__/mod.cpython-311.opt-2.pyc",
                       "pkg/__pycache__/mod.cpython-311.pyc", "pkg/__pycache__/mod.cpython-39.opt-1.pyc"]
    assert sorted(os.listdir(tmp_path / "pkg/__pycache__")) == ["mod_x.cpython-311.pyc", "other.cpython-311.pyc"]
    assert (tmp_path / "pkg/sub/__pycache__/mod.cpython-311.pyc").exists()


def test_nothing_to_do_without_pycache(tmp_path: Path) -> None:
    make_tree(tmp_path, {"pkg/mod.py": b""})
    before = read_tree(tmp_path)
    assert invalidate(tmp_path, ["pkg/mod.py"]) == []
    assert read_tree(tmp_path) == before


def test_a_symlinked_pycache_is_refused_not_followed(tmp_path: Path) -> None:
    make_tree(tmp_path, {"root/pkg/mod.py": b"", "elsewhere/mod.cpython-311.pyc": b"keep",
                         "root/pkg/__pycache__": Symlink("../../elsewhere")})
    with pytest.raises(PatchRefused):
        invalidate(tmp_path / "root", ["pkg/mod.py"])
    assert (tmp_path / "elsewhere/mod.cpython-311.pyc").read_bytes() == b"keep"


def test_unsafe_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PatchRefused):
        invalidate(tmp_path, ["../x.py"])


def test_a_failing_unlink_names_the_operation_and_file(tmp_path: Path) -> None:
    make_tree(tmp_path, {"pkg/mod.py": b"", "pkg/__pycache__/mod.cpython-311.pyc": b""})
    with pytest.raises(WriteFailed) as info:
        invalidate(tmp_path, ["pkg/mod.py"], fs=FailUnlink())
    assert info.value.operation == "unlink"
    assert info.value.file == "pkg/__pycache__/mod.cpython-311.pyc"


def _import_value(root: Path) -> str:
    """Import ``hotfix.mod`` in a fresh interpreter and return its VALUE."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the reader must not repair the cache itself
    result = subprocess.run([sys.executable, "-c", "import hotfix.mod as m; print(m.VALUE)"],
                            cwd=root, env=env, capture_output=True, text=True, check=True, timeout=30)
    return result.stdout.strip()


def test_unchecked_hash_pyc_hides_a_patch_until_invalidated(tmp_path: Path) -> None:
    """Research note: an unchecked-hash pyc keeps the old code running; removing it shows the fix."""
    make_tree(tmp_path, {"hotfix/__init__.py": b"", "hotfix/mod.py": b"VALUE = 'old'\n"})
    source = tmp_path / "hotfix/mod.py"
    cached = importlib.util.cache_from_source(str(source))
    py_compile.compile(str(source), cfile=cached,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    assert _import_value(tmp_path) == "old"

    commit(tmp_path, [FileChange("hotfix/mod.py", b"VALUE = 'patched'\n")])
    assert _import_value(tmp_path) == "old"  # the stale pyc wins: this is the bug being prevented

    assert invalidate(tmp_path, ["hotfix/mod.py"]) == [os.path.relpath(cached, tmp_path)]
    assert _import_value(tmp_path) == "patched"
