"""
Files the image declares unpatchable (copied elsewhere at build time, issue #16): a patch changing one is a
``conflict`` naming the file and why, in place; overlay mode's own tests are in tests/overlay/test_apply.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from kolla_entry.errors import EnvironmentProblem
from kolla_entry.patching.engine import PatchRequest, apply_patches, check_patches
from kolla_entry.patching.unpatchable import DECLARATION_NAME, load
from tests.helpers import configmap_dir, git_diff, make_tree, read_tree

IMAGE = {"app/__init__.py": b"", "app/views.py": b"X = 1\n", "app/static/app.js": b"old();\n"}
WHY = "collected into STATIC_ROOT by collectstatic"


def _request(tmp_path: Path, declaration: bytes | None) -> PatchRequest:
    target = tmp_path / "site-packages"
    image = dict(IMAGE)
    if declaration is not None:
        image[DECLARATION_NAME] = declaration
    make_tree(target, image)
    static = git_diff(tmp_path / "git1", IMAGE, {**IMAGE, "app/static/app.js": b"new();\n"})
    views = git_diff(tmp_path / "git2", IMAGE, {**IMAGE, "app/views.py": b"X = 2\n"})
    configmap_dir(tmp_path, "app-patches", {"0001-static.patch": static, "0002-views.patch": views})
    return PatchRequest(target=target, patterns=(f"{tmp_path}/*-patches/*.patch",))


def _declared() -> bytes:
    return json.dumps({WHY: ["app/static/app.js"]}).encode()


def test_a_declared_file_makes_its_patch_a_conflict_and_nothing_is_written(tmp_path: Path) -> None:
    request = _request(tmp_path, _declared())
    before = read_tree(request.target)
    report = apply_patches(request)
    assert [p.status for p in report.patches] == ["conflict", "applicable"]
    assert read_tree(request.target) == before
    line = report.failure_lines()[0]
    assert "0001-static.patch" in line and "app/static/app.js" in line and WHY in line
    assert "apply this fix in the image instead" in line


def test_skip_applies_the_rest_of_the_series(tmp_path: Path) -> None:
    request = _request(tmp_path, _declared())
    report = apply_patches(replace(request, on_conflict="skip"))
    assert [p.status for p in report.patches] == ["conflict", "applied"]
    assert (request.target / "app" / "views.py").read_bytes() == b"X = 2\n"
    assert (request.target / "app" / "static" / "app.js").read_bytes() == b"old();\n"


def test_without_a_declaration_the_same_patch_applies(tmp_path: Path) -> None:
    assert [p.status for p in check_patches(_request(tmp_path, None)).patches] == ["applicable", "applicable"]


@pytest.mark.parametrize("declaration", [b"{not json", b'["app/static/app.js"]', b'{"why": "app/static/app.js"}'],
                         ids=["not-json", "a-list", "files-not-a-list"])
def test_a_malformed_declaration_is_an_environment_problem_naming_it(tmp_path: Path, declaration: bytes) -> None:
    target = tmp_path / "site-packages"
    make_tree(target, {DECLARATION_NAME: declaration})
    with pytest.raises(EnvironmentProblem, match="unpatchable files") as caught:
        load(target)
    assert DECLARATION_NAME in str(caught.value)
