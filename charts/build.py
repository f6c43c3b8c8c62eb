"""Build the charts: vendor hot-fix patches, resolve local dependencies, package (`make charts`).

There is no `helm` binary on the build machines, so this drives Helm's own Go SDK through the
`helm-python-sdk` binding (import `helm_python`): `dependency_update` is `helm dependency update` and
`package` is `helm package`. Users with the helm CLI get the same result from::

    cp patches/<service>/*.patch charts/<service>/patches/      # for every service chart
    helm dependency update charts/<chart>                       # in the order `build_order` prints
    helm package charts/<chart> -d charts/dist

Everything this writes is a build output and git-ignored (charts/.gitignore): the vendored
`charts/<service>/patches/*.patch`, `charts/<chart>/charts/`, `charts/<chart>/Chart.lock` and `charts/dist/`.
The tests call `stage` first and build a copy in a temporary folder, so the working tree stays clean.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

CHARTS_DIR = Path(__file__).resolve().parent
REPO_DIR = CHARTS_DIR.parent
PATCH_GLOB = "*.patch"
# A ConfigMap holds at most 1 MiB (etcd's object limit); keep room for metadata and YAML quoting.
MAX_PATCH_BYTES = 900 * 1024
# Build outputs never copied by `stage` (a stale vendored patch or subchart must not leak into a build).
_BUILD_OUTPUTS = ("charts", "Chart.lock", "dist", "__pycache__")


class BuildError(Exception):
    """A chart set that cannot be built (unknown or circular local dependency)."""


def chart_dirs(charts_dir: Path) -> Dict[str, Path]:
    """
    Every chart directly under `charts_dir`, by chart name.

    Args:
        charts_dir: the folder holding one folder per chart.

    Returns:
        Chart name (from Chart.yaml) -> chart folder.
    """
    found: Dict[str, Path] = {}
    for chart_yaml in sorted(charts_dir.glob("*/Chart.yaml")):
        meta = yaml.safe_load(chart_yaml.read_text())
        found[str(meta["name"])] = chart_yaml.parent
    return found


def local_dependencies(chart_dir: Path) -> List[str]:
    """
    Names of the dependencies a chart takes from a `file://` repository.

    Args:
        chart_dir: a chart folder.

    Returns:
        Dependency names in Chart.yaml order.
    """
    meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    return [
        str(dep["name"])
        for dep in meta.get("dependencies") or []
        if str(dep.get("repository", "")).startswith("file://")
    ]


def build_order(charts_dir: Path) -> List[str]:
    """
    Chart names in dependency order: every chart after the charts it depends on.

    Args:
        charts_dir: the folder holding one folder per chart.

    Returns:
        Chart names, dependencies first, ties in name order.

    Raises:
        BuildError: a dependency names no chart in `charts_dir`, or dependencies form a cycle.
    """
    charts = chart_dirs(charts_dir)
    deps = {name: local_dependencies(path) for name, path in charts.items()}
    order: List[str] = []
    visiting: List[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name not in charts:
            raise BuildError(f"{visiting[-1]} depends on {name}, which is not a chart in {charts_dir}")
        if name in visiting:
            raise BuildError(f"circular chart dependency: {' -> '.join([*visiting, name])}")
        visiting.append(name)
        for dep in deps[name]:
            visit(dep)
        visiting.pop()
        order.append(name)

    for name in sorted(charts):
        visit(name)
    return order


def vendor_patches(charts_dir: Path, patches_dir: Path) -> Dict[str, List[str]]:
    """
    Copy `patches_dir/<service>/*.patch` into every chart that has a `patches/` folder.

    Patch files already in a chart's folder are removed first, so a patch deleted from the repository
    disappears from the chart (and from its ConfigMap) too. Every patch is checked before anything is
    copied: it must be UTF-8 (ConfigMap `data` is text; Helm's `.AsConfig` would mangle other bytes) and a
    service's patches must fit in one ConfigMap.

    Args:
        charts_dir: the folder holding one folder per chart.
        patches_dir: the repository's patches folder (one folder per service).

    Returns:
        Chart name -> the patch file names now vendored, sorted.

    Raises:
        BuildError: a patch is not UTF-8, or a service's patches are too big for a ConfigMap.
    """
    vendored: Dict[str, List[str]] = {}
    for name, chart_dir in chart_dirs(charts_dir).items():
        target = chart_dir / "patches"
        if not target.is_dir():
            continue
        sources = sorted((patches_dir / name).glob(PATCH_GLOB))
        _check_patches(name, sources)
        for stale in target.glob(PATCH_GLOB):
            stale.unlink()
        for source in sources:
            shutil.copyfile(source, target / source.name)
        vendored[name] = [source.name for source in sources]
    return vendored


def _check_patches(chart: str, sources: List[Path]) -> None:
    """Refuse patches a ConfigMap cannot carry unchanged (see `vendor_patches`)."""
    total = 0
    for source in sources:
        data = source.read_bytes()
        total += len(data)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise BuildError(
                f"{source}: not UTF-8 at byte {err.start}; a ConfigMap carries text only, re-encode the patch"
            ) from err
    if total > MAX_PATCH_BYTES:
        raise BuildError(
            f"{chart}: patches total {total} bytes, more than one ConfigMap holds ({MAX_PATCH_BYTES});"
            " move fixes into the image"
        )


def resolve_dependencies(charts_dir: Path) -> List[str]:
    """
    Run `helm dependency update` on every chart with local dependencies, in dependency order.

    Args:
        charts_dir: the folder holding one folder per chart.

    Returns:
        The names of the charts whose dependencies were resolved.
    """
    import helm_python  # the Go shared library loads only when a build really runs

    charts = chart_dirs(charts_dir)
    resolved: List[str] = []
    for name in build_order(charts_dir):
        chart_dir = charts[name]
        if not local_dependencies(chart_dir):
            continue
        shutil.rmtree(chart_dir / "charts", ignore_errors=True)
        (chart_dir / "Chart.lock").unlink(missing_ok=True)
        helm_python.dependency_update(chart_dir)
        resolved.append(name)
    return resolved


def package_charts(charts_dir: Path, dist_dir: Path) -> List[Path]:
    """
    Package every chart into `dist_dir` (`helm package`); dependencies must be resolved first.

    Args:
        charts_dir: the folder holding one folder per chart.
        dist_dir: where the `.tgz` archives go (created if missing).

    Returns:
        The archive paths, in build order.
    """
    import helm_python

    dist_dir.mkdir(parents=True, exist_ok=True)
    charts = chart_dirs(charts_dir)
    return [
        Path(helm_python.package(charts[name], destination=dist_dir)) for name in build_order(charts_dir)
    ]


def stage(charts_dir: Path, destination: Path) -> Path:
    """
    Copy the chart sources (no build outputs, no vendored patches) to `destination`.

    Args:
        charts_dir: the folder holding one folder per chart.
        destination: a folder that does not exist yet.

    Returns:
        `destination`.
    """

    def ignore(folder: str, names: List[str]) -> List[str]:
        skipped = [name for name in names if name in _BUILD_OUTPUTS]
        if Path(folder).name == "patches":
            skipped += [name for name in names if name.endswith(".patch")]
        return skipped

    shutil.copytree(charts_dir, destination, ignore=ignore)
    return destination


def build(charts_dir: Path, patches_dir: Path, dist_dir: Optional[Path]) -> List[Path]:
    """
    Vendor patches, resolve dependencies and (if `dist_dir` is given) package every chart.

    Args:
        charts_dir: the folder holding one folder per chart; built in place.
        patches_dir: the repository's patches folder.
        dist_dir: where packaged charts go, or None to skip packaging.

    Returns:
        The packaged archives (empty when not packaging).
    """
    vendor_patches(charts_dir, patches_dir)
    resolve_dependencies(charts_dir)
    return package_charts(charts_dir, dist_dir) if dist_dir is not None else []


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    `make charts`: build the repository's charts in place and package them into charts/dist/.

    Args:
        argv: command-line arguments (default: sys.argv[1:]).

    Returns:
        The exit status: 0 built, 1 the chart set cannot be built.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--charts", type=Path, default=CHARTS_DIR, help="chart folder (built in place)")
    parser.add_argument("--patches", type=Path, default=REPO_DIR / "patches", help="patches/<service>/")
    parser.add_argument("--dist", type=Path, default=CHARTS_DIR / "dist", help="packaged charts")
    parser.add_argument("--no-package", action="store_true", help="vendor and resolve only")
    args = parser.parse_args(argv)
    try:
        archives = build(args.charts, args.patches, None if args.no_package else args.dist)
    except BuildError as err:
        print(f"charts: {err}", file=sys.stderr)
        return 1
    for archive in archives:
        print(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
