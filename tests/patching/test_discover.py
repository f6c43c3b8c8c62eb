"""Finding patch files (kubelet ConfigMap layout) and the target site-packages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kolla_entry.errors import EnvironmentProblem
from kolla_entry.patching.discover import discover, patterns_from, resolve_target
from tests.helpers import configmap_dir, make_tree


def test_configmap_layout_is_followed_and_dot_entries_ignored(tmp_path: Path) -> None:
    """Keys are symlinks through ..data; the hidden timestamped folder never yields a patch twice."""
    configmap_dir(tmp_path, "nova-patches", {"0002-b.patch": b"b", "0001-a.patch": b"a", "notes.txt": b"x"})
    configmap_dir(tmp_path, "barbican-patches", {"0001-z.patch": b"z"})
    found = discover([f"{tmp_path}/*-patches/*.patch"])
    assert [str(s.path.relative_to(tmp_path)) for s in found] == [
        "barbican-patches/0001-z.patch",
        "nova-patches/0001-a.patch",
        "nova-patches/0002-b.patch",
    ]
    assert found[1].path.read_bytes() == b"a"


def test_hidden_files_and_folders_are_not_patches(tmp_path: Path) -> None:
    make_tree(tmp_path, {"x-patches/.hidden.patch": b"h", ".y-patches/a.patch": b"a", "x-patches/ok.patch": b"o"})
    found = discover([f"{tmp_path}/*-patches/*.patch"])
    assert [s.path.name for s in found] == ["ok.patch"]


def test_missing_patches_folder_is_nothing_to_do(tmp_path: Path) -> None:
    assert discover([f"{tmp_path}/nope-patches/*.patch", f"{tmp_path}/*-patches/*.patch"]) == []


def test_same_file_through_two_patterns_is_used_once(tmp_path: Path) -> None:
    make_tree(tmp_path, {"k-patches/a.patch": b"a"})
    found = discover([f"{tmp_path}/k-patches/*.patch", f"{tmp_path}/*-patches/a.patch"])
    assert len(found) == 1


def _unreadable_discover(folder: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        "from kolla_entry.patching.discover import discover\n"
        "from kolla_entry.errors import EnvironmentProblem\n"
        "try:\n"
        f"    discover([{str(folder.parent / '*-patches' / '*.patch')!r}])\n"
        "except EnvironmentProblem as err:\n"
        "    print(err); sys.exit(2)\n"
    )
    # Root reads any folder: without the DAC capabilities it is bound by the mode bits like anyone.
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], check=False)


def test_unreadable_patches_folder_is_an_environment_error(tmp_path: Path) -> None:
    folder = tmp_path / "x-patches"
    folder.mkdir()
    (folder / "a.patch").write_bytes(b"a")
    tmp_path.chmod(0o755)
    folder.chmod(0o000)
    try:
        done = _unreadable_discover(folder)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert "cannot read the patches folder" in done.stdout
    assert str(folder) in done.stdout


def test_patterns_from_options_then_environment_then_default() -> None:
    assert patterns_from(["/a/*.patch"], {"KOLLA_ENTRY_PATCHES": "/b/*.patch"}, "/d") == ("/a/*.patch",)
    assert patterns_from([], {"KOLLA_ENTRY_PATCHES": "/b/*.patch:/c/*.patch"}, "/d") == ("/b/*.patch", "/c/*.patch")
    assert patterns_from([], {}, "/d") == ("/d",)


def test_target_explicit_then_environment(tmp_path: Path) -> None:
    assert resolve_target(str(tmp_path), {}) == str(tmp_path)
    assert resolve_target(None, {"KOLLA_ENTRY_TARGET": str(tmp_path)}) == str(tmp_path)
    with pytest.raises(EnvironmentProblem, match="does not exist"):
        resolve_target(str(tmp_path / "nope"), {})


def test_target_kolla_stable_symlink(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    os.symlink("python3.11", venv / "lib" / "python3")
    assert resolve_target(None, {}, venv=str(venv)) == str(venv / "lib" / "python3" / "site-packages")


def test_target_single_versioned_site_packages(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "lib" / "python3.12" / "site-packages").mkdir(parents=True)
    assert resolve_target(None, {}, venv=str(venv)) == str(venv / "lib" / "python3.12" / "site-packages")


def test_target_asks_the_venv_interpreter(tmp_path: Path) -> None:
    """With two candidate folders, the venv's own python decides."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv / "lib" / "python3.99" / "site-packages").mkdir(parents=True)
    found = resolve_target(None, {}, venv=str(venv))
    assert Path(found).parent.name == f"python{sys.version_info[0]}.{sys.version_info[1]}"


def test_no_target_is_an_environment_error(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentProblem, match="--target"):
        resolve_target(None, {}, venv=str(tmp_path / "novenv"))
