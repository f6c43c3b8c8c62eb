"""
Fixtures for the chart tests: the charts are built once per session into a temporary folder (patches
vendored from the repository's patches/, local dependencies resolved by Helm's own SDK), and the example
region is rendered once; tests read those values and never write into the working tree.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHARTS = REPO / "charts"
PATCHES = REPO / "patches"
REGION = "europe-example-region"
UMBRELLA = "openstack"
LIBRARY = "common"
SERVICES = ("barbican", "cinder", "designate", "glance", "horizon", "ironic", "keystone", "manila", "neutron", "nova",
            "placement")
INFRA = ("mariadb", "memcached", "postgres", "rabbitmq")
RELEASE = "region"
NAMESPACE = "openstack"

helm_chart = pytest.importorskip("helm_python.chart", reason="helm-python-sdk (test extras) is not installed")


def load_build_module() -> ModuleType:
    """charts/build.py is a script, not a package module: load it by path."""
    spec = importlib.util.spec_from_file_location("charts_build", CHARTS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_charts(dest: Path) -> Path:
    """A built copy of charts/ at ``dest``: patches vendored from patches/, dependencies resolved (no packaging)."""
    build = load_build_module()
    shutil.rmtree(dest, ignore_errors=True)
    charts = Path(build.stage(CHARTS, dest))
    build.build(charts, PATCHES, None)
    return charts


def render(chart_dir: Path, values: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """Render a chart with the real Helm engine; returns the Kubernetes objects (NOTES.txt left out)."""
    with helm_chart.Chart.load(chart_dir) as chart:
        manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    objects: List[Dict[str, Any]] = []
    for path in sorted(manifests):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(manifests[path]) if doc)
    return objects


def pod_templates(objects: List[Dict[str, Any]]) -> Iterator[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """(object, pod template) for every workload and Job."""
    for obj in objects:
        if obj["kind"] in {"Deployment", "DaemonSet", "StatefulSet", "Job"}:
            yield obj, obj["spec"]["template"]


def chart_of(obj: Dict[str, Any]) -> str:
    """The chart an object comes from (its app.kubernetes.io/name label)."""
    return str(obj["metadata"]["labels"]["app.kubernetes.io/name"])


def umbrella_globals() -> Dict[str, Any]:
    """What the umbrella hands a subchart: its `global` (subcharts are linted and rendered with it)."""
    values = yaml.safe_load((CHARTS / UMBRELLA / "values.yaml").read_text())
    return {"global": values["global"]}


@pytest.fixture(scope="session")
def build() -> ModuleType:
    return load_build_module()


@pytest.fixture(scope="session")
def built_charts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built copy of charts/: patches vendored, dependencies resolved (no packaging)."""
    return build_charts(tmp_path_factory.mktemp("built") / "charts")


@pytest.fixture(scope="session")
def umbrella_values() -> Dict[str, Any]:
    return umbrella_globals()


@pytest.fixture(scope="session")
def region_values() -> Dict[str, Any]:
    return dict(yaml.safe_load((CHARTS / REGION / "values.yaml").read_text()))


@pytest.fixture(scope="session")
def region(built_charts: Path) -> List[Dict[str, Any]]:
    """The example region as Helm renders it with its own values."""
    return render(built_charts / REGION)


@pytest.fixture
def chart_copy(built_charts: Path, tmp_path: Path) -> Iterator[Path]:
    """A private, writable copy of the built keystone chart (dependencies included)."""
    copy = Path(shutil.copytree(built_charts / "keystone", tmp_path / "keystone"))
    yield copy
