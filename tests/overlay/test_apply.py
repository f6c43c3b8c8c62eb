"""
Overlay mode through the library (issue #16): the same statuses as in place, the image never written,
reuse of an unchanged overlay, rebuild from scratch when anything changed, what an overlay cannot serve.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kolla_entry.errors import EnvironmentProblem
from kolla_entry.overlay import select
from kolla_entry.patching.engine import PatchRequest, check_patches
from kolla_entry.patching.unpatchable import DECLARATION_NAME
from tests.helpers import read_tree
from tests.overlay.kit import Box, make_box

IMAGE = {
    "pkg/__init__.py": b"",
    "pkg/a.py": b"A = 1\n",
    "pkg/b.py": b"B = 1\n",
    "pkg/data.txt": b"one\n",
}


TAG = sys.implementation.cache_tag


def _generation(box: Box) -> str:
    return os.readlink(box.overlay / "current")


def _box(tmp_path: Path) -> Box:
    box = make_box(tmp_path, IMAGE)
    box.add_patch(IMAGE, {"pkg/a.py": b"A = 2\n"})
    return box


def test_the_image_is_never_written(tmp_path: Path) -> None:
    box = _box(tmp_path)
    before = read_tree(box.site)
    report = box.apply()
    assert report.written and report.counts() == {"applied": 1}
    assert read_tree(box.site) == before
    assert (box.overlay / "current" / "site-packages" / "pkg" / "a.py").read_bytes() == b"A = 2\n"


def test_statuses_are_the_engines_own(tmp_path: Path) -> None:
    box = _box(tmp_path)
    box.add_patch({"other/x.py": b"x\n"}, {"other/x.py": b"y\n"})
    box.add_patch({"pkg/b.py": b"B = 9\n"}, {"pkg/b.py": b"B = 10\n"})
    in_place = check_patches(box.request().patch)
    overlay = box.check()
    assert [(p.patch, p.status, p.reason) for p in overlay.patches] == \
        [(p.patch, p.status, p.reason) for p in in_place.patches]
    assert [p.status for p in overlay.patches] == ["applicable", "skipped", "conflict"]
    assert not (box.overlay / "current").exists()


def test_an_unchanged_restart_reuses_the_overlay(tmp_path: Path) -> None:
    box = _box(tmp_path)
    box.apply()
    first = _generation(box)
    with capture_logs() as logs:
        report = box.apply()
    assert _generation(box) == first
    assert not report.written and report.counts() == {"already-applied": 1}
    assert [e["event"] for e in logs if e["event"].startswith("overlay_")] == ["overlay_reused"]
    assert not any(e["event"].startswith("file_") for e in logs)  # nothing planned again


@pytest.mark.parametrize("change", ["image_file", "image_sibling", "new_package", "patch", "options",
                                    "overlay_file", "overlay_link"])
def test_anything_changed_rebuilds_from_scratch(tmp_path: Path, change: str) -> None:
    box = _box(tmp_path)
    box.apply()
    first = _generation(box)
    tree = box.overlay / first / "site-packages"
    options = {}
    if change == "image_file":
        (box.site / "pkg" / "a.py").write_bytes(b"A = 1\n\n")
    elif change == "image_sibling":
        (box.site / "pkg" / "c.py").write_bytes(b"C = 1\n")
    elif change == "new_package":
        (box.site / "newdist-1.0.dist-info").mkdir()
    elif change == "patch":
        box.add_patch(IMAGE, {"pkg/b.py": b"B = 2\n"})
    elif change == "options":
        options = {"fuzz": 1}
    elif change == "overlay_file":
        (tree / "pkg" / "a.py").write_bytes(b"A = 666\n")
    elif change == "overlay_link":
        os.unlink(tree / "pkg" / "b.py")
        os.symlink("/etc/hostname", tree / "pkg" / "b.py")
    with capture_logs() as logs:
        report = box.apply(**options)
    assert report.written
    assert _generation(box) != first
    assert not (box.overlay / first).exists()
    assert [e["event"] for e in logs if e["event"].startswith("overlay_")] == ["overlay_stale", "overlay_built"]
    served = box.overlay / "current" / "site-packages" / "pkg"
    assert (served / "a.py").read_bytes() == (b"A = 2\n\n" if change == "image_file" else b"A = 2\n")
    if change == "patch":
        assert (served / "b.py").read_bytes() == b"B = 2\n"
    else:
        assert os.readlink(served / "b.py") == str(box.site.resolve() / "pkg" / "b.py")


def test_a_changed_image_file_makes_the_patch_conflict_instead_of_mixing(tmp_path: Path) -> None:
    box = _box(tmp_path)
    box.apply()
    (box.site / "pkg" / "a.py").write_bytes(b"A = 100\n")
    report = box.apply()
    assert report.counts() == {"conflict": 1}
    assert not report.written


def test_removing_every_patch_clears_the_overlay(tmp_path: Path) -> None:
    box = _box(tmp_path)
    box.apply()
    for patch in box.patches.iterdir():
        patch.unlink()
    report = box.apply()
    assert report.patches == ()
    assert sorted(os.listdir(box.overlay)) == []


def test_a_failed_series_keeps_the_current_generation(tmp_path: Path) -> None:
    box = _box(tmp_path)
    box.apply()
    first = _generation(box)
    box.add_patch({"pkg/b.py": b"B = 9\n"}, {"pkg/b.py": b"B = 10\n"})
    report = box.apply()
    assert report.failed and not report.written
    assert _generation(box) == first


def test_skip_serves_the_rest(tmp_path: Path) -> None:
    box = _box(tmp_path)
    box.add_patch({"pkg/b.py": b"B = 9\n"}, {"pkg/b.py": b"B = 10\n"})
    report = box.apply(on_conflict="skip")
    assert [p.status for p in report.patches] == ["applied", "conflict"]
    assert report.written
    again = box.apply(on_conflict="skip")
    assert [p.status for p in again.patches] == ["already-applied", "conflict"]
    assert again.failure_lines() == report.failure_lines()


@pytest.mark.parametrize(("path", "why"), [
    ("pkg-1.0.dist-info/entry_points.txt", "package metadata"),
    ("extra.pth", ".pth file"),
    ("README.txt", "not a module"),
])
def test_what_an_overlay_cannot_serve_is_a_conflict_naming_the_file(tmp_path: Path, path: str, why: str) -> None:
    image = {**IMAGE, path: b"old\n"}
    box = make_box(tmp_path, image)
    box.add_patch(image, {"pkg/a.py": b"A = 2\n", path: b"new\n"})
    box.add_patch(image, {"pkg/b.py": b"B = 2\n"}, name="0002-fine.patch")
    report = box.apply()
    assert [p.status for p in report.patches] == ["conflict", "applicable"]
    line = report.failure_lines()[0]
    assert path in line and why in line and "overlay mode" in line
    assert not (box.overlay / "current").exists()
    skipped = box.apply(on_conflict="skip")
    assert [p.status for p in skipped.patches] == ["conflict", "applied"]
    served = box.overlay / "current" / "site-packages" / "pkg"
    assert (served / "b.py").read_bytes() == b"B = 2\n"
    assert (served / "a.py").is_symlink()
    # The series planned again without the refused patch keeps its compiled code: b.py gets its pyc.
    assert skipped.import_ready == ("pkg/b.py",) and (served / "__pycache__" / f"b.{TAG}.pyc").is_file()


def test_a_file_the_image_declares_unpatchable_is_a_conflict_and_its_declaration_is_part_of_the_image(
        tmp_path: Path) -> None:
    declaration = {"pkg/data.txt": "collected elsewhere at build time"}
    image = {**IMAGE, DECLARATION_NAME: json.dumps({why: [rel] for rel, why in declaration.items()}).encode()}
    box = make_box(tmp_path, image)
    box.add_patch(IMAGE, {"pkg/data.txt": b"two\n"})
    box.add_patch(IMAGE, {"pkg/a.py": b"A = 2\n"})
    report = box.apply(on_conflict="skip")
    assert [p.status for p in report.patches] == ["conflict", "applied"]
    line = report.failure_lines()[0]
    assert "pkg/data.txt" in line and "collected elsewhere at build time" in line
    # An image rebuilt with another declaration is another image: the generation is built again.
    (box.site / DECLARATION_NAME).write_text(json.dumps({"other": ["pkg/b.py"]}))
    with capture_logs() as logs:
        again = box.apply(on_conflict="skip")
    assert [p.status for p in again.patches] == ["applied", "applied"]
    assert "overlay_stale" in [e["event"] for e in logs]


def test_an_image_without_the_hook_is_refused(tmp_path: Path) -> None:
    box = make_box(tmp_path, IMAGE, hook=False)
    box.add_patch(IMAGE, {"pkg/a.py": b"A = 2\n"})
    with pytest.raises(EnvironmentProblem, match=r"no overlay import hook.*install-overlay-hook"):
        box.apply()
    assert os.listdir(box.overlay) == []


def test_a_missing_overlay_folder_is_refused(tmp_path: Path) -> None:
    box = _box(tmp_path)
    box.overlay.rmdir()
    with pytest.raises(EnvironmentProblem, match="overlay folder does not exist"):
        box.apply()


def test_a_deleted_package_folder_is_left_out(tmp_path: Path) -> None:
    image = {**IMAGE, "pkg/old/__init__.py": b"", "pkg/old/x.py": b"X = 1\n"}
    box = make_box(tmp_path, image)
    box.add_patch(image, {"pkg/old/__init__.py": None, "pkg/old/x.py": None})
    box.apply()
    served = box.overlay / "current" / "site-packages" / "pkg"
    assert sorted(os.listdir(served)) == ["__init__.py", "a.py", "b.py", "data.txt"]
    assert (box.overlay / "current" / "hidden").read_text() == "pkg.old\npkg.old.x\n"


def test_bytecode_of_changed_modules_is_not_linked(tmp_path: Path) -> None:
    box = _box(tmp_path)
    cache = box.site / "pkg" / "__pycache__"
    cache.mkdir()
    for name in (f"a.{TAG}.pyc", f"a.{TAG}.opt-1.pyc", f"b.{TAG}.pyc"):
        (cache / name).write_bytes(b"pyc")
    box.apply()
    served = box.overlay / "current" / "site-packages" / "pkg" / "__pycache__"
    assert sorted(os.listdir(served)) == [f"a.{TAG}.pyc", f"b.{TAG}.pyc"]
    # a's is the overlay's own (see tests/overlay/test_bytecode.py), b's the image's.
    assert not (served / f"a.{TAG}.pyc").is_symlink() and (served / f"a.{TAG}.pyc").read_bytes() != b"pyc"
    assert os.readlink(served / f"b.{TAG}.pyc") == str(cache / f"b.{TAG}.pyc")


def test_bytecode_the_service_wrote_is_dropped_on_reuse(tmp_path: Path) -> None:
    box = _box(tmp_path)
    box.apply()
    first = _generation(box)
    ours = box.overlay / first / "site-packages" / "pkg" / "__pycache__"
    assert os.listdir(ours) == [f"a.{TAG}.pyc"]
    # The image has no bytecode for pkg/__init__.py, linked into the overlay: the service writes it there.
    assert box.python_run("import pkg.a").returncode == 0
    assert sorted(os.listdir(ours)) == [f"__init__.{TAG}.pyc", f"a.{TAG}.pyc"]
    box.apply()
    assert _generation(box) == first
    assert os.listdir(ours) == [f"a.{TAG}.pyc"]


class TestSelect:
    def test_explicit_then_environment(self, tmp_path: Path) -> None:
        env = {"KOLLA_ENTRY_OVERLAY": "/from/env"}
        assert select.choose_overlay("/explicit", env, None) == "/explicit"
        assert select.choose_overlay(None, env, None) == "/from/env"

    def test_a_writable_target_patches_in_place(self, tmp_path: Path) -> None:
        (tmp_path / "overlay").mkdir()
        assert select.choose_overlay(None, {}, tmp_path, default=str(tmp_path / "overlay")) is None

    def test_a_read_only_target_with_the_folder_mounted_uses_it(self, tmp_path: Path) -> None:
        target = tmp_path / "site"
        target.mkdir()
        # root can write anything: a path below a file is not writable for anyone.
        (tmp_path / "file").write_bytes(b"")
        unwritable = tmp_path / "file" / "site"
        default = tmp_path / "overlay"
        assert select.choose_overlay(None, {}, unwritable, default=str(default)) is None
        default.mkdir()
        assert select.choose_overlay(None, {}, unwritable, default=str(default)) == str(default)


def test_check_patches_in_place_is_unchanged_by_an_overlay_folder(tmp_path: Path) -> None:
    box = _box(tmp_path)
    report = check_patches(PatchRequest(target=box.site, patterns=(str(box.patches / "*.patch"),)))
    assert report.counts() == {"applicable": 1}


def test_a_foreign_current_is_never_removed(tmp_path: Path) -> None:
    box = make_box(tmp_path, IMAGE)
    (box.overlay / "current").write_bytes(b"not ours")
    with pytest.raises(EnvironmentProblem, match="not a symlink"):
        box.apply()
    assert (box.overlay / "current").read_bytes() == b"not ours"
    (box.overlay / "current").unlink()
    os.symlink("/etc", box.overlay / "current")
    with pytest.raises(EnvironmentProblem, match="not a generation"):
        box.apply()
    assert os.readlink(box.overlay / "current") == "/etc"


def test_state_and_status_name_the_overlay_generation(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    box = _box(tmp_path)
    state_file = tmp_path / "state.json"
    box.apply(state_file=state_file)
    section = json.loads(state_file.read_text())["patches"]
    assert (section["overlay"], section["generation"]) == (str(box.overlay), _generation(box))
    assert section["patches"][0]["status"] == "applied"
    shown = subprocess.run([sys.executable, "-m", "kolla_entry", "status", "--state-file", str(state_file)],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert f"overlay: {box.overlay}  generation: {_generation(box)}" in shown


def test_links_planted_in_the_overlay_never_make_a_restart_touch_anything_outside(tmp_path: Path) -> None:
    box = _box(tmp_path)
    box.apply()
    first = _generation(box)
    outside = tmp_path / "outside"
    (outside / "__pycache__").mkdir(parents=True)
    (outside / "__pycache__" / "victim.pyc").write_bytes(b"keep me")
    (outside / "victim.py").write_bytes(b"keep me")
    tree = box.overlay / first / "site-packages"
    os.rename(tree / "pkg", tmp_path / "moved-pkg")
    os.symlink(outside, tree / "pkg")
    report = box.apply()
    assert report.written and _generation(box) != first
    assert sorted(os.listdir(outside)) == ["__pycache__", "victim.py"]
    assert os.listdir(outside / "__pycache__") == ["victim.pyc"]


def test_a_fifo_in_the_overlay_does_not_hang_a_restart(tmp_path: Path) -> None:
    box = _box(tmp_path)
    box.apply()
    first = _generation(box)
    served = box.overlay / first / "site-packages" / "pkg" / "a.py"
    served.unlink()
    os.mkfifo(served)
    assert box.apply().written and _generation(box) != first


def test_a_generation_others_may_write_is_rebuilt(tmp_path: Path) -> None:
    box = _box(tmp_path)
    box.apply()
    first = _generation(box)
    os.chmod(box.overlay / first, 0o775)
    with capture_logs() as logs:
        report = box.apply()
    assert report.written and _generation(box) != first
    assert any(e["event"] == "overlay_stale" and e["reason"] == "group or others may write it" for e in logs)
