"""The install tier's backends and its marker rule.

Tests that can run against a real cluster are parametrized over ``install_platform``: ``emulator``
(the API emulator and the kubelet stand-in; always part of ``make test``) and ``cluster``
(marked ``cluster``; ``make test-cluster`` runs ``pytest tests/install -m cluster`` with
KUBECONFIG set). The cluster variants are deselected unless ``-m`` selects the ``cluster``
marker, so ``make test`` never touches whatever cluster a developer's KUBECONFIG points to;
selected without KUBECONFIG, they are skipped (the tier's only skip).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.install import failover, pipeline
from tests.install.installed import (
    Installed,
    PipelineRun,
    install,
    install_values,
    run_pipeline,
)
from tests.install.platform import (
    RELEASE_NS,
    EmulatedCluster,
    Platform,
    emulated_cluster,
    real_cluster,
)

HERE = Path(__file__).resolve().parent

for _name in ("celpy", "celpy.NameContainer", "celpy.Evaluator", "celpy.celpy.evaluation"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def _cluster_selected(config: pytest.Config) -> bool:
    return "cluster" in (config.getoption("markexpr", default="") or "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = _cluster_selected(config)
    kept, deselected = [], []
    for item in items:
        if HERE not in Path(str(item.fspath)).resolve().parents:
            kept.append(item)
            continue
        if item.get_closest_marker("cluster") is None:
            kept.append(item)
        elif not selected:
            deselected.append(item)  # not a skip: `make test` runs the emulator variants only
        else:
            if not os.environ.get("KUBECONFIG"):
                item.add_marker(pytest.mark.skip(reason="KUBECONFIG is not set"))
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


PLATFORMS = ["emulator", pytest.param("cluster", marks=pytest.mark.cluster)]


@pytest.fixture(scope="package")
def install_platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """The cluster the chart is installed into, once for the package (see ``installed``)."""
    kind = getattr(request, "param", "emulator")
    workdir = tmp_path_factory.mktemp(f"install-{kind}")
    if kind == "emulator":
        with emulated_cluster(workdir) as cluster:
            yield cluster
        return
    real = real_cluster(workdir)
    try:
        yield real
    finally:  # leave the cluster as it was: the teams' namespaces, then the release
        for namespace in (pipeline.TEAM_NS, failover.NS):
            real.kubectl.run("delete", "namespace", namespace, "--ignore-not-found", check=False)
        real.uninstall()


@pytest.fixture(scope="package")
def installed(install_platform: Platform) -> Installed:
    """The chart installed (helm template + kubectl apply, or helm install) and rolled out."""
    return install(install_platform)


@pytest.fixture(scope="package")
def reference(installed: Installed) -> PipelineRun:
    """One uninterrupted run of the pipeline in namespace ``ml``, by the installed operator."""
    namespace = team_namespace(installed.platform, pipeline.TEAM_NS)
    return run_pipeline(installed.platform, namespace)


HA_TEST = "test_ha.py::test_one_replica_acts_and_the_other_takes_over"


@pytest.fixture(scope="package", autouse=True)
def failover_scenario(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[failover.Background | None]:
    """The HA failover scenario, started with this package's first test when its test is
    selected: it mostly waits for Leases to expire, so it runs while the CPU-bound pipeline
    tests run. Package-scoped like the other emulator fixtures, so that the emulators stop in
    the reverse order of their start (kmock patches aiohttp's resolver per server)."""
    if not any(item.nodeid.endswith(HA_TEST) for item in request.session.items):
        yield None
        return
    background = failover.Background(tmp_path_factory.mktemp("failover")).start()
    try:
        yield background
    finally:
        background.close()


@pytest.fixture()
def bare_cluster(tmp_path: Path) -> Iterator[EmulatedCluster]:
    """A fresh emulator with the chart's CRDs, namespace, ServiceAccount and RBAC applied with
    kubectl -- no Deployment: the tests start ``kubetune operator`` themselves -- and the
    kubelet stand-in for the workloads."""
    with emulated_cluster(tmp_path / "cluster") as cluster:
        cluster.install(install_values(), skip_kinds=("Deployment",))
        yield cluster


def team_namespace(platform: Platform, name: str) -> str:
    """A namespace for a team's resources, with its claims, seed data and promotion target."""
    kubectl = platform.kubectl
    kubectl.apply(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}],
        platform.workdir,
        f"namespace-{name}",
    )
    kubectl.apply(pipeline.storage(name), platform.workdir, f"storage-{name}")
    kubectl.apply([pipeline.seed_job(name)], platform.workdir, f"seed-{name}")
    kubectl.wait("job/seed-data", "condition=Complete", name, timeout=120)
    return name


def is_emulated(platform: Platform) -> EmulatedCluster:
    assert isinstance(platform, EmulatedCluster), "this check needs the emulator"
    return platform


__all__ = ["PLATFORMS", "RELEASE_NS", "is_emulated", "team_namespace"]
