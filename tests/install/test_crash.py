"""SIGKILL of ``kubetune operator`` at three precise points of a pipeline, then a restart.

The operator runs with the exact command, args and env of the chart's Deployment, with only a
kubeconfig (``KUBECONFIG``), as a separate process, against a fresh emulator where the chart's
CRDs, namespace, ServiceAccount and RBAC were applied with kubectl; the pipeline runs in the
same namespace as the reference run (spec and artifact hashes include it). The emulator holds
the one request each point is about until the process is dead (:mod:`tests.install.hooks`):

1. **before a Job create**: the POST of the Dataset's Job is held and then dropped (503):
   the ConfigMap exists, the Job does not;
2. **between a Job create and the status write**: the POST of the FinetuneJob's Job is
   stored and its answer held: the Job exists, the status does not say so;
3. **during a FeedbackLoop promotion**: the PATCH of the promotion target is held and
   dropped: the cycle passed its gates, nothing is promoted yet.

After each kill the operator is started again (the Lease of the dead process expires first:
the values shorten it to 4 s here; the HA test measures failover with the chart's defaults).
The run must end exactly as the uninterrupted reference run: one Job per run, one promotion,
and the same statuses once times and machine speed are left out.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.install import pipeline
from tests.install.conftest import team_namespace
from tests.install.hooks import RequestHooks
from tests.install.installed import PipelineRun, apply_pipeline, install_values, wait_pipeline
from tests.install.operator_proc import OperatorProcess, deployment_command
from tests.install.platform import RELEASE_NS, EmulatedCluster, merge, render_chart

pytestmark = pytest.mark.parametrize("install_platform", ["emulator"], indirect=True)
NS = pipeline.TEAM_NS  # as the reference run: hashes of specs and artifacts hold the namespace
SHORT_LEASE = {"leaderElection": {"leaseDuration": 4, "renewDeadline": 3, "retryPeriod": 1}}


def labels(body: Any) -> dict[str, str]:
    return dict(((body or {}).get("metadata") or {}).get("labels") or {})


def test_sigkill_at_three_points_ends_like_an_uninterrupted_run(
    reference: PipelineRun, bare_cluster: EmulatedCluster, tmp_path: Path
) -> None:
    platform = bare_cluster
    emu = platform.emu
    team_namespace(platform, NS)
    rendered = render_chart(merge(install_values(), SHORT_LEASE), workdir=tmp_path)
    argv, env = deployment_command(rendered, "kubetune-5d8c7b9f4-x7k2p", RELEASE_NS)
    home = tmp_path / "home"
    home.mkdir()
    env |= {"KUBECONFIG": str(platform.kubeconfig), "HOME": str(home)}
    hooks = RequestHooks.install(emu)
    points = [
        (
            "before the Dataset's Job is created",
            hooks.hold(
                "POST",
                "jobs.batch",
                namespace=NS,
                when="before",
                match=lambda b: labels(b).get("kubetune.dev/kind") == "Dataset",
            ),
        ),
        (
            "after the FinetuneJob's Job is created, before its status says so",
            hooks.hold(
                "POST",
                "jobs.batch",
                namespace=NS,
                when="after",
                match=lambda b: labels(b).get("kubetune.dev/kind") == "FinetuneJob",
            ),
        ),
        (
            "during the FeedbackLoop's promotion patch",
            hooks.hold("PATCH", "deployments.apps", namespace=NS, name=pipeline.TARGET),
        ),
    ]
    kills: list[dict[str, Any]] = []
    port = int(emu.url.rsplit(":", 1)[1])
    with OperatorProcess(argv, env, tmp_path, port, name="operator") as operator:
        started = time.monotonic()
        try:
            apply_pipeline(platform, NS)
            for point, hold in points:
                body = hold.wait_reached(timeout=240)
                operator.kill()
                assert not operator.alive
                if point.startswith("before"):
                    assert emu.get("jobs.batch", NS, body["metadata"]["name"]) is None
                hold.release(fail=True)
                kills.append({"point": point, "at": round(time.monotonic() - started, 1)})
                operator.start()
            run = wait_pipeline(platform, NS, started)
        except BaseException:
            print(operator.logs()[-6000:])
            raise
        finally:
            hooks.release_all()
    print(f"\nkilled at: {json.dumps(kills)}; done in {run.seconds:.0f}s")
    assert operator.starts == 4
    logs = operator.logs()
    assert "Traceback" not in logs, logs[-6000:]
    # each start logged in with the kubeconfig alone
    assert logs.count(f"kubetune operator: kubeconfig {platform.kubeconfig}") == 4, logs[-6000:]

    # one Job per run, and the same runs as the uninterrupted one (the loop's periodic
    # feedback scans excepted: how many there are depends on time)
    runs, expected = run.runs(), reference.runs()
    assert all(count == 1 for count in runs.values()), runs

    def cycles(found: dict[tuple[str, str, str], int]) -> set[tuple[str, str, str]]:
        return {key for key in found if not key[2].startswith("s")}

    assert cycles(runs) == cycles(expected)
    # one promotion: the dropped PATCH changed nothing, the next one set the champion
    loop = run.statuses[f"FeedbackLoop/{pipeline.LOOP}"]
    assert [h["reason"] for h in loop["history"]] == ["Promoted"]
    annotations = run.target["spec"]["template"]["metadata"]["annotations"]
    assert annotations[pipeline.ANNOTATION] == loop["champion"]
    assert run.target["metadata"]["generation"] == reference.target["metadata"]["generation"]

    ours, theirs = run.normalized(), reference.normalized()
    assert ours.keys() == theirs.keys()
    differing = {key: (ours[key], theirs[key]) for key in ours if ours[key] != theirs[key]}
    assert not differing, (
        "statuses differ after the kills (this run, the reference):\n"
        + "\n".join(f"{key}:\n  {a}\n  {b}" for key, (a, b) in differing.items())
    )
