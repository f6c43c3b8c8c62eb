"""Every chart lints clean with Helm's linter in strict mode, for Kubernetes 1.30, and renders, on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

from tests.charts.conftest import (
    CHARTS,
    INFRA,
    LIBRARY,
    REGION,
    SERVICES,
    UMBRELLA,
    helm_chart,
    render,
    umbrella_globals,
)

pytestmark = pytest.mark.charts

WARNING = 2


def _lint(chart: Path, values: Any, with_subcharts: bool) -> None:
    report = helm_chart.lint(chart, values, strict=True, with_subcharts=with_subcharts, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert report["errors"] == [] and problems == []
    assert report["total_charts_linted"] >= 1


@pytest.mark.parametrize("name", [LIBRARY, *INFRA, *SERVICES, UMBRELLA, REGION])
def test_chart_lints_clean_in_strict_mode_on_its_own(built_charts: Path, name: str) -> None:
    """
    `helm lint --strict charts/<chart>` with no -f, as chart-testing runs it: every subchart carries
    defaults for the `global` values it reads; the umbrella and the region lint their subcharts too.
    """
    _lint(built_charts / name, None, with_subcharts=name in {LIBRARY, UMBRELLA, REGION})


@pytest.mark.parametrize("name", [*INFRA, *SERVICES])
def test_subchart_lints_clean_with_the_umbrella_globals(built_charts: Path, name: str) -> None:
    """As the umbrella installs it (`-f charts/openstack/values.yaml`)."""
    _lint(built_charts / name, umbrella_globals(), with_subcharts=False)


@pytest.mark.parametrize("name", [*INFRA, *SERVICES])
def test_chart_renders_on_its_own(built_charts: Path, name: str) -> None:
    """`helm template charts/<chart>` with no -f: the chart's objects, its workloads among them."""
    kinds = {obj["kind"] for obj in render(built_charts / name)}
    assert kinds & {"Deployment", "DaemonSet", "StatefulSet"}


@pytest.mark.parametrize("name", [*INFRA, *SERVICES])
def test_global_defaults_equal_the_umbrella_globals(name: str) -> None:
    """A subchart's `global` defaults are the umbrella's values for the same keys, never a drifted copy."""
    own: Dict[str, Any] = yaml.safe_load((CHARTS / name / "values.yaml").read_text()).get("global") or {}
    umbrella = umbrella_globals()["global"]
    assert own, f"{name} has no global defaults"
    assert {key: own[key] for key in own} == {key: umbrella.get(key) for key in own}



CI_VALUE_SETS = sorted(CHARTS.glob("*/ci/*-values.yaml"))


def test_there_are_ci_value_sets() -> None:
    assert CI_VALUE_SETS


@pytest.mark.parametrize("values_file", CI_VALUE_SETS, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_ci_value_set_lints_and_renders(built_charts: Path, values_file: Path) -> None:
    """chart-testing's extra value sets (`ci/*-values.yaml`), each linted as `ct lint` does, then rendered."""
    chart = built_charts / values_file.parents[1].name
    values = yaml.safe_load(values_file.read_text())
    _lint(chart, values, with_subcharts=False)
    assert render(chart, values)
