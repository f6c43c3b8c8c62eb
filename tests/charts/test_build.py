"""charts/build.py (`make charts`): patch vendoring, dependency order and resolution, packaging."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from tests.charts.conftest import CHARTS, LIBRARY, REGION, SERVICES, UMBRELLA, render
from tests.helpers import make_tree

pytestmark = pytest.mark.charts


def _chart_yaml(name: str, *deps: str) -> bytes:
    lines = [f"apiVersion: v2\nname: {name}\nversion: 0.1.0\n"]
    if deps:
        lines.append("dependencies:\n")
        lines += [f"  - name: {dep}\n    version: 0.1.0\n    repository: file://../{dep}\n" for dep in deps]
    return "".join(lines).encode()


def test_build_order_puts_every_chart_after_its_dependencies(build: ModuleType) -> None:
    """The library first, each service before the umbrella, the umbrella before the region."""
    order = build.build_order(CHARTS)
    assert order[0] == LIBRARY
    assert sorted(order) == sorted(build.chart_dirs(CHARTS))
    for service in SERVICES:
        assert order.index(LIBRARY) < order.index(service) < order.index(UMBRELLA) < order.index(REGION)


def test_build_order_names_an_unknown_dependency(build: ModuleType, tmp_path: Path) -> None:
    make_tree(tmp_path, {"app/Chart.yaml": _chart_yaml("app", "missing")})
    with pytest.raises(build.BuildError, match="app depends on missing"):
        build.build_order(tmp_path)


def test_build_order_refuses_a_cycle(build: ModuleType, tmp_path: Path) -> None:
    make_tree(tmp_path, {"a/Chart.yaml": _chart_yaml("a", "b"), "b/Chart.yaml": _chart_yaml("b", "a")})
    with pytest.raises(build.BuildError, match="circular chart dependency: a -> b -> a"):
        build.build_order(tmp_path)


def test_vendor_patches_mirrors_the_repository_folder(build: ModuleType, tmp_path: Path) -> None:
    """New patches are copied byte for byte, a patch gone from patches/<service>/ leaves the chart too."""
    charts, patches = tmp_path / "charts", tmp_path / "patches"
    make_tree(charts, {
        "nova/Chart.yaml": _chart_yaml("nova"),
        "nova/patches/.gitkeep": b"",
        "nova/patches/0000-removed-upstream.patch": b"stale\n",
        "glance/Chart.yaml": _chart_yaml("glance"),
        "glance/patches/.gitkeep": b"",
        "memcached/Chart.yaml": _chart_yaml("memcached"),
    })
    make_tree(patches, {"nova/0001-fix.patch": b"--- a/x\n+++ b/x\n \t\r\n", "nova/README": b"not a patch"})

    vendored = build.vendor_patches(charts, patches)

    assert vendored == {"nova": ["0001-fix.patch"], "glance": []}
    assert sorted(p.name for p in (charts / "nova/patches").iterdir()) == [".gitkeep", "0001-fix.patch"]
    assert (charts / "nova/patches/0001-fix.patch").read_bytes() == b"--- a/x\n+++ b/x\n \t\r\n"
    assert not (charts / "memcached/patches").exists()


def test_stage_copies_sources_without_build_outputs(build: ModuleType, tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", {
        "nova/Chart.yaml": _chart_yaml("nova"),
        "nova/Chart.lock": b"generated",
        "nova/charts/common-0.1.0.tgz": b"archive",
        "nova/patches/.gitkeep": b"",
        "nova/patches/0001-vendored.patch": b"vendored copy",
        "nova/templates/x.yaml": b"kind: ConfigMap",
        "dist/nova-0.1.0.tgz": b"archive",
    })
    staged = build.stage(source, tmp_path / "staged")
    files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
    assert files == ["nova/Chart.yaml", "nova/patches/.gitkeep", "nova/templates/x.yaml"]


def test_built_charts_carry_their_dependencies(build: ModuleType, built_charts: Path) -> None:
    """Every chart with a file:// dependency has it in charts/ after the build."""
    for name, chart_dir in build.chart_dirs(built_charts).items():
        expected = sorted(f"{dep}-0.1.0.tgz" for dep in build.local_dependencies(chart_dir))
        present = sorted(p.name for p in (chart_dir / "charts").glob("*.tgz")) if expected else []
        assert present == expected, name


def test_packaged_region_renders_like_the_source(
    build: ModuleType, built_charts: Path, tmp_path: Path, region: list
) -> None:
    """`make charts` output: one archive per chart, and the region archive alone renders the whole region."""
    archives = build.package_charts(built_charts, tmp_path / "dist")
    assert sorted(a.name for a in archives) == sorted(f"{n}-0.1.0.tgz" for n in build.chart_dirs(built_charts))
    packaged = render(tmp_path / "dist" / f"{REGION}-0.1.0.tgz")
    assert packaged == region


def test_vendor_patches_refuses_a_patch_that_is_not_utf8(build: ModuleType, tmp_path: Path) -> None:
    """Nothing is vendored: the chart keeps what it had, the error names the file."""
    charts, patches = tmp_path / "charts", tmp_path / "patches"
    make_tree(charts, {"nova/Chart.yaml": _chart_yaml("nova"), "nova/patches/0001-old.patch": b"old\n"})
    make_tree(patches, {"nova/0001-new.patch": b"ok\n", "nova/0002-latin1.patch": b"caf\xe9\n"})
    with pytest.raises(build.BuildError, match=r"0002-latin1.patch: not UTF-8 at byte 3"):
        build.vendor_patches(charts, patches)
    assert sorted(p.name for p in (charts / "nova/patches").iterdir()) == ["0001-old.patch"]


def test_vendor_patches_refuses_more_than_a_configmap_holds(build: ModuleType, tmp_path: Path) -> None:
    charts, patches = tmp_path / "charts", tmp_path / "patches"
    make_tree(charts, {"nova/Chart.yaml": _chart_yaml("nova"), "nova/patches/.gitkeep": b""})
    half = b"+" * (build.MAX_PATCH_BYTES // 2 + 1)
    make_tree(patches, {"nova/0001.patch": half, "nova/0002.patch": half})
    with pytest.raises(build.BuildError, match=r"nova: patches total \d+ bytes, more than one ConfigMap holds"):
        build.vendor_patches(charts, patches)
