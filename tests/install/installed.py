"""The chart installed once for the tier, and one uninterrupted pipeline run in it.

:func:`install` is what the platform team does (values with a promotion grant for the
pipeline's target Deployment); :func:`run_pipeline` is what a team does afterwards: claims and
seed data in its namespace, ``kubectl apply`` of the pipeline, ``kubectl wait`` on each
resource's done condition, and the FeedbackLoop's first promotion. The result (statuses,
Jobs, the promotion target) is what the SIGKILL test's interrupted run must end equal to.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from tests.install import pipeline
from tests.install.platform import RELEASE_NS, Platform

WAIT_SECONDS = 240


def install_values() -> dict[str, Any]:
    """The values a platform team would set: a patch grant for the promotion target."""
    return {
        "promotionTargets": [
            {"apiGroup": "apps", "resource": "deployments", "resourceNames": [pipeline.TARGET]}
        ]
    }


@dataclass
class Installed:
    platform: Platform
    values: dict[str, Any]
    rendered: list[dict[str, Any]]
    install_seconds: float


def install(platform: Platform) -> Installed:
    started = time.monotonic()
    values = install_values()
    rendered = platform.install(values)
    platform.wait_rollout()
    return Installed(platform, values, rendered, time.monotonic() - started)


@dataclass
class PipelineRun:
    namespace: str
    statuses: dict[str, dict[str, Any]]  # "Kind/name" -> status
    jobs: list[dict[str, Any]]
    target: dict[str, Any]
    seconds: float
    waits: dict[str, float] = field(default_factory=dict)

    def normalized(self) -> dict[str, Any]:
        """Statuses without times or machine speed, the namespace written as <ns>."""
        text = json.dumps(
            {k: pipeline.normalized(v, k.split("/")[0]) for k, v in self.statuses.items()}
        )
        return dict(json.loads(text.replace(f"/{self.namespace}/", "/<ns>/")))

    def runs(self) -> dict[tuple[str, str, str], int]:
        """Jobs per (kind, name, run-id) label."""
        counts: dict[tuple[str, str, str], int] = {}
        for job in self.jobs:
            labels = job["metadata"].get("labels") or {}
            key = (
                labels.get("kubetune.dev/kind", "?"),
                labels.get("kubetune.dev/name", "?"),
                labels.get("kubetune.dev/run-id", "?"),
            )
            counts[key] = counts.get(key, 0) + 1
        return counts


def apply_pipeline(platform: Platform, namespace: str) -> None:
    platform.kubectl.apply(pipeline.resources(namespace), platform.workdir, f"pipeline-{namespace}")


def wait_pipeline(platform: Platform, namespace: str, started: float) -> PipelineRun:
    """``kubectl wait`` on each resource's done condition, then the loop's promotion."""
    waits: dict[str, float] = {}
    try:
        for _kind, plural, name, condition in pipeline.RESOURCES:
            platform.kubectl.wait(
                f"{plural}/{name}", f"condition={condition}", namespace, timeout=WAIT_SECONDS
            )
            waits[f"{plural}/{name}"] = time.monotonic() - started
        platform.kubectl.wait(
            f"feedbackloops/{pipeline.LOOP}",
            "jsonpath={.status.generation}=1",
            namespace,
            timeout=WAIT_SECONDS,
        )
        waits["promotion"] = time.monotonic() - started
        # settled: the scan after the cycle has counted what is left (nothing)
        platform.kubectl.wait(
            f"feedbackloops/{pipeline.LOOP}",
            "jsonpath={.status.pendingRecords}=0",
            namespace,
            timeout=WAIT_SECONDS,
        )
        waits["settled"] = time.monotonic() - started
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe_state(platform, namespace)}") from None
    return collect(platform, namespace, time.monotonic() - started, waits)


def collect(
    platform: Platform, namespace: str, seconds: float, waits: dict[str, float] | None = None
) -> PipelineRun:
    kubectl = platform.kubectl
    statuses: dict[str, dict[str, Any]] = {}
    for kind, plural, _name, _cond in pipeline.RESOURCES:
        for item in kubectl.json("get", plural, "-n", namespace)["items"]:
            statuses[f"{kind}/{item['metadata']['name']}"] = item.get("status") or {}
    jobs = kubectl.json("get", "jobs", "-n", namespace)["items"]
    target = kubectl.get("deployments", pipeline.TARGET, namespace) or {}
    return PipelineRun(namespace, statuses, jobs, target, seconds, waits or {})


def run_pipeline(platform: Platform, namespace: str) -> PipelineRun:
    started = time.monotonic()
    apply_pipeline(platform, namespace)
    return wait_pipeline(platform, namespace, started)


def describe_state(platform: Platform, namespace: str) -> str:
    """What a person would look at when a wait times out."""
    kubectl = platform.kubectl
    parts = [
        kubectl("get", "kubetune,jobs,pods", "-n", namespace, "-o", "wide", check=False),
    ]
    for kind, plural, name, _ in pipeline.RESOURCES:
        found = kubectl.get(plural, name, namespace)
        parts.append(f"{kind}/{name}: {json.dumps((found or {}).get('status'))[:1500]}")
    with contextlib.suppress(Exception):
        for pod in platform.operator_pods():
            parts.append(
                f"operator {pod['metadata']['name']}:\n"
                + platform.pod_logs(RELEASE_NS, pod["metadata"]["name"])[-4000:]
            )
    return "\n".join(parts)
