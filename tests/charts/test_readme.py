"""
Every chart's README.md documents its values in one table, `| Key | Default | Description |`, kept in step with
its values.yaml both ways: no key missing, no row naming a key that no longer exists.

Depth: every leaf of values.yaml, as a dotted key (`components.api.replicas`); a list, an empty map and a scalar
are leaves. Free-form maps are one row each and not entered: `conf` (config files), `scripts`, `secrets` (any of
them, the region's `openstack.<chart>.secrets` too) and, in every chart but the umbrella and the region, the
`global` defaults (the umbrella's README documents `global` leaf by leaf). A README may add rows below a free-form
map (a notable `conf` entry), as long as they exist.

The library chart has no values of its own: its table must name exactly the fields its helpers read, the
component fields (`.c.<field>` in templates/*.tpl) as `components.<name>.<field>` and the top-level keys
(`.Values.<key>`, `$v.<key>`) as first segments, and every row's last segment must be read by some helper.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Set

import pytest
import yaml

from tests.charts.conftest import CHARTS, INFRA, LIBRARY, REGION, SERVICES, UMBRELLA

pytestmark = pytest.mark.charts

HEADER = "| Key | Default | Description |"
FREE_FORM = {"conf", "scripts", "secrets"}
# Charts whose `global` is their own subject, documented leaf by leaf; elsewhere it is the defaults block.
GLOBAL_OWNERS = {UMBRELLA, REGION}
CHARTS_WITH_VALUES = [*SERVICES, *INFRA, UMBRELLA, REGION]
ROW_KEY = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def table_keys(readme: str) -> List[str]:
    """The first-column keys of the values table (the rows after HEADER up to the first non-row line)."""
    lines = readme.splitlines()
    assert lines.count(HEADER) == 1, f"one values table with the header {HEADER!r} expected"
    keys = []
    for line in lines[lines.index(HEADER) + 2:]:
        if not line.startswith("|"):
            break
        match = ROW_KEY.match(line)
        assert match, f"a row without a `key` in its first cell: {line!r}"
        keys.append(match.group(1))
    return keys


def value_keys(values: Mapping[str, Any], chart: str, prefix: str = "") -> List[str]:
    """Every key the table must name, down to the depth the module docstring sets."""
    keys = []
    for name, value in values.items():
        key = f"{prefix}{name}"
        free = name in FREE_FORM or (key == "global" and chart not in GLOBAL_OWNERS)
        if isinstance(value, dict) and value and not free:
            keys.extend(value_keys(value, chart, key + "."))
        else:
            keys.append(key)
    return keys


def resolves(values: Any, parts: List[str]) -> bool:
    """Whether a dotted key names something in values; a map key may itself hold dots (`conf.nova.conf`)."""
    if not parts:
        return True
    if not isinstance(values, dict):
        return False
    return any(
        ".".join(parts[:cut]) in values and resolves(values[".".join(parts[:cut])], parts[cut:])
        for cut in range(1, len(parts) + 1)
    )


def _readme(chart: str) -> str:
    path = CHARTS / chart / "README.md"
    assert path.is_file(), f"charts/{chart}/README.md is missing"
    return path.read_text()


def _values(chart: str) -> Dict[str, Any]:
    return dict(yaml.safe_load((CHARTS / chart / "values.yaml").read_text()) or {})


@pytest.mark.parametrize("chart", CHARTS_WITH_VALUES)
def test_every_values_key_has_a_row(chart: str) -> None:
    documented = set(table_keys(_readme(chart)))
    missing = [key for key in value_keys(_values(chart), chart) if key not in documented]
    assert not missing, f"charts/{chart}/README.md lacks rows for {missing}"


@pytest.mark.parametrize("chart", CHARTS_WITH_VALUES)
def test_every_row_names_an_existing_key_once(chart: str) -> None:
    keys = table_keys(_readme(chart))
    values = _values(chart)
    stale = [key for key in keys if not resolves(values, key.split("."))]
    assert not stale, f"charts/{chart}/README.md documents keys values.yaml no longer has: {stale}"
    assert len(keys) == len(set(keys)), f"charts/{chart}/README.md names a key twice"


def _library_reads() -> str:
    return "\n".join(path.read_text() for path in sorted((CHARTS / LIBRARY / "templates").glob("*.tpl")))


def test_the_library_table_names_exactly_the_fields_its_helpers_read() -> None:
    keys = table_keys(_readme(LIBRARY))
    templates = _library_reads()
    component_fields = set(re.findall(r"\.c\.(\w+)", templates))
    documented_fields = {key.split(".")[2] for key in keys if key.startswith("components.<name>.")}
    assert component_fields - documented_fields == set(), "component fields the helpers read but the table lacks"
    top_level = set(re.findall(r"(?:\.Values|\$v)\.(\w+)", templates)) - {"x"}  # {{ .Values.global.x }}: a comment
    assert top_level - {key.split(".")[0] for key in keys} == set(), "top-level values the table lacks"
    unread = [key for key in keys if not re.search(rf"\.{re.escape(key.split('.')[-1].removesuffix('[]'))}\b",
                                                    templates)]
    assert not unread, f"charts/common/README.md names keys no helper reads: {unread}"


def test_charts_readme_links_every_chart_readme() -> None:
    overview = (CHARTS / "README.md").read_text()
    charts: Set[str] = {path.parent.name for path in CHARTS.glob("*/Chart.yaml")}
    assert charts == {*CHARTS_WITH_VALUES, LIBRARY}
    unlinked = sorted(chart for chart in charts if f"]({chart}/README.md)" not in overview)
    assert not unlinked, f"charts/README.md does not link {unlinked}"


def test_the_table_check_catches_a_missing_and_a_stale_row() -> None:
    """The parser and the depth rule see a removed row and a row for a removed key (the test can fail)."""
    values = {"service": "x", "components": {"api": {"replicas": 2}}, "conf": {"x.conf": {"DEFAULT": {}}},
              "global": {"region": "r"}}
    readme = "\n".join([HEADER, "|---|---|---|", "| `service` | `x` | . |", "| `conf.x.conf` | | . |",
                        "| `components.api.workers` | `2` | . |", "", "| `not.a.row` | | |"])
    keys = table_keys(readme)
    assert keys == ["service", "conf.x.conf", "components.api.workers"]
    assert value_keys(values, "nova") == ["service", "components.api.replicas", "conf", "global"]
    assert value_keys(values, UMBRELLA)[-1] == "global.region"
    assert resolves(values, "conf.x.conf.DEFAULT".split("."))
    assert not resolves(values, "components.api.workers".split("."))
