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


@pytest.mark.parametrize("on_conflict", ["fail", "skip"])
def test_with_the_compile_check_in_workers_a_refused_patch_and_a_broken_one_are_both_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_conflict: str) -> None:
    """
    An apply plans while its workers still compile (issue #13); when a patch is refused, the reports of
    the others must still say which one does not compile, so that case waits for the verdict.
    """
    from kolla_entry.patching import compilecheck

    monkeypatch.setattr(compilecheck, "_usable_cpus", lambda: 2)
    big = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(12000)).encode()
    image = {**IMAGE, **{f"app/m{i}.py": big + b"V = 1\n" for i in range(3)}}
    assert 3 * len(big) > compilecheck.PARALLEL_BYTES  # so the check runs in workers
    target = make_tree(tmp_path / "site-packages", {**image, DECLARATION_NAME: _declared()})
    fixes = {"app/static/app.js": b"new();\n", "app/m0.py": big + b"V = 2\n", "app/m1.py": big + b"V = (2\n",
             "app/m2.py": big + b"V = 3\n"}
    patches = {f"000{n}.patch": git_diff(tmp_path / f"git{n}", image, {**image, rel: new})
               for n, (rel, new) in enumerate(fixes.items())}
    configmap_dir(tmp_path, "app-patches", patches)
    before = read_tree(target)
    report = apply_patches(PatchRequest(target=target, patterns=(f"{tmp_path}/app-patches/*.patch",),
                                        on_conflict=on_conflict))
    statuses = [p.status for p in report.patches]
    assert statuses[0] == "conflict" and WHY in report.patches[0].reason
    assert statuses[2] == "conflict" and "would not compile" in report.patches[2].reason
    if on_conflict == "fail":
        assert statuses == ["conflict", "applicable", "conflict", "applicable"]
        assert read_tree(target) == before
        return
    assert statuses == ["conflict", "applied", "conflict", "applied"]
    assert sorted(report.import_ready) == ["app/m0.py", "app/m2.py"]
    assert (target / "app/m2.py").read_bytes().endswith(b"V = 3\n")
