"""Every chart lints clean with Helm's linter in strict mode, for Kubernetes 1.30."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.charts.conftest import INFRA, LIBRARY, REGION, SERVICES, UMBRELLA, helm_chart, umbrella_globals

pytestmark = pytest.mark.charts

WARNING = 2


@pytest.mark.parametrize("name", [LIBRARY, *INFRA, *SERVICES, UMBRELLA, REGION])
def test_chart_lints_clean_in_strict_mode(built_charts: Path, name: str) -> None:
    """
    Subcharts are linted with the umbrella's globals, as the umbrella installs them
    (`helm lint --strict charts/<chart> -f charts/openstack/values.yaml`); the umbrella and the region
    with their own values, subcharts included.
    """
    standalone = name in {LIBRARY, UMBRELLA, REGION}
    report = helm_chart.lint(
        built_charts / name,
        None if standalone else umbrella_globals(),
        strict=True,
        with_subcharts=standalone,
        kube_version="v1.30.0",
    )
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert report["errors"] == [] and problems == []
    assert report["total_charts_linted"] >= 1
