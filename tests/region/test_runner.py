"""
The region runner's reading of the rendered region (tests/region/run.py): which pods it runs where, and the
Service names it gives them. The run itself is `make region-test`.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from tests.region.run import Pod, Region, render_region

pytestmark = pytest.mark.charts
VALUES = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Region:
    return Region(render_region([VALUES / "values.yaml"], tmp_path_factory.mktemp("region")))


def owners(pods: List[Pod]) -> List[str]:
    return sorted(p.owner for p in pods)


def test_only_the_core_charts_run_with_one_replica_each(region: Region) -> None:
    assert {p.chart for p in region.pods} == {"keystone", "glance", "placement", "nova", "neutron", "mariadb",
                                              "rabbitmq", "memcached"}
    workloads = [p for p in region.pods if p.kind != "Job"]
    assert len(owners(workloads)) == len(set(owners(workloads)))


def test_every_job_is_one_pod_and_every_service_registers(region: Region) -> None:
    jobs = [p.owner.rsplit("-", 1)[0] for p in region.pods if p.kind == "Job"]
    for chart in ("glance", "placement", "nova", "neutron"):
        assert f"{chart}-db-sync" in jobs and f"{chart}-register" in jobs
    assert "keystone-bootstrap" in jobs


def test_nova_compute_runs_on_the_fake_hypervisor_with_the_hosts_network(region: Region) -> None:
    (compute,) = [p for p in region.pods if p.labels.get("app.kubernetes.io/component") == "compute"]
    assert compute.node.name == "node-fake1" and compute.host_network
    others = [p for p in region.pods if p is not compute]
    assert all(p.node.name == "node-control" and not p.host_network for p in others)


def test_the_agents_need_a_network_node_and_are_off(region: Region) -> None:
    assert not [p for p in region.pods if p.kind == "DaemonSet"]


def test_every_service_name_resolves_to_its_pod_in_four_forms(region: Region) -> None:
    hosts = dict(region.hosts)
    api = region.pod("keystone-api")
    for form in ("keystone-api", "keystone-api.openstack", "keystone-api.openstack.svc",
                 "keystone-api.openstack.svc.cluster.local"):
        assert hosts[form] == api.ip
    assert hosts["mariadb"] == region.pod("mariadb").ip
    addresses = [p.ip for p in region.pods if not p.host_network]
    assert len(addresses) == len(set(addresses))
