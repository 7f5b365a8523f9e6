"""Two replicas of the chart's operator (``replicas: 2``, leader election on): exactly one acts;
SIGKILL the leader and the other takes over. The failover time -- from the SIGKILL until the new
leader created the Job of a Dataset applied right after the kill -- is measured five times with
the chart's default Lease timings; the median is printed and written to ``failover.json``
(also to ``$KUBETUNE_INSTALL_REPORT_DIR`` when set). The emulator variant is
tests/install/failover.py, run in the background from the start of the session.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from tests.install import failover
from tests.install.conftest import team_namespace
from tests.install.failover import FAILOVERS, NS, dataset, holder, job_exists
from tests.install.installed import Installed
from tests.install.platform import RELEASE_NS, ha_values, merge, wait_until


def test_one_replica_acts_and_the_other_takes_over(
    failover_scenario: failover.Background, tmp_path: Path
) -> None:
    """See tests/install/failover.py (it ran in the background since the session started)."""
    result = failover_scenario.result(timeout=600)
    leader = result.leaders[0]
    assert result.first_job_by == leader, result.logs
    assert not result.standby_acted, result.logs
    assert result.jobs == [f"ha-{i}-dataprep-g1" for i in range(FAILOVERS + 1)]
    assert len(result.times) == FAILOVERS
    targets = result.write(tmp_path)
    print(
        f"\nfailover: median {result.median:.1f}s of {[round(t, 1) for t in result.times]}"
        f" (leaders {result.leaders}) -> {', '.join(map(str, targets))}"
    )
    assert result.median < 30


@pytest.mark.parametrize(
    "install_platform", [pytest.param("cluster", marks=pytest.mark.cluster)], indirect=True
)
def test_one_replica_acts_and_the_other_takes_over_on_a_cluster(
    installed: Installed, tmp_path: Path
) -> None:
    """The same on a real cluster: ``helm upgrade`` to replicas 2, the leader's pod deleted with
    no grace period (its containers are killed), the takeover timed; then back to 1 replica."""
    platform = installed.platform
    platform.install(merge(installed.values, ha_values(2)))
    platform.wait_rollout()
    team_namespace(platform, NS)
    try:

        def leader_pod() -> str:
            identity = holder(platform)
            names = [p["metadata"]["name"] for p in platform.operator_pods()]
            return next((n for n in names if identity.startswith(n)), "")

        leader = wait_until("a leader", leader_pod, 120)
        times: list[float] = []
        for i in range(1, FAILOVERS + 1):
            killed = time.monotonic()
            platform.kubectl(
                "-n", RELEASE_NS, "delete", "pod", leader, "--grace-period=0", "--force"
            )
            platform.kubectl.apply([dataset(f"ha-{i}")], platform.workdir, f"ha-{i}")
            wait_until(f"failover {i}", job_exists(platform, f"ha-{i}"), 120, interval=0.2)
            times.append(time.monotonic() - killed)
            new = wait_until("the new leader", leader_pod, 60)
            assert new != leader
            platform.wait_rollout()
            leader = new
        result = failover.Result(times=times)
        result.write(tmp_path)
        print(f"\nfailover on the cluster: median {statistics.median(times):.1f}s of {times}")
        assert result.median < 30
    finally:
        platform.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        platform.install(installed.values)
        platform.wait_rollout()
