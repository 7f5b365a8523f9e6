"""Pure helpers of the controllers: API discovery of arbitrary kinds, the owner lookup behind
``ObservedWorld.owned``, and the FeedbackLoop's metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from kubetune.controllers import evaluation, feedback, finetune, metrics
from kubetune.controllers.cache import kubetune_owner
from kubetune.controllers.discovery import (
    ApiResource,
    Discovery,
    UnknownKind,
    discovery_url,
    find_resource,
)
from kubetune.controllers.kube import describe, object_url

APPS_V1 = {
    "kind": "APIResourceList",
    "groupVersion": "apps/v1",
    "resources": [
        {"name": "deployments/scale", "kind": "Scale", "namespaced": True},
        {"name": "deployments/status", "kind": "Deployment", "namespaced": True},
        {"name": "deployments", "kind": "Deployment", "namespaced": True},
        {"name": "controllerrevisions", "kind": "ControllerRevision", "namespaced": True},
    ],
}
CLUSTER_V1 = {
    "kind": "APIResourceList",
    "groupVersion": "serving.example/v1",
    "resources": [{"name": "routers", "kind": "Router", "namespaced": False}],
}


class Fetcher:
    """Serves discovery documents by URL and counts the reads."""

    def __init__(self, documents: Mapping[str, Mapping[str, Any]]) -> None:
        self.documents = documents
        self.reads: list[str] = []

    async def __call__(self, url: str) -> Mapping[str, Any] | None:
        self.reads.append(url)
        return self.documents.get(url)


def test_discovery_url_of_core_and_grouped_versions() -> None:
    assert discovery_url("v1") == "/api/v1"
    assert discovery_url("apps/v1") == "/apis/apps/v1"
    for bad in ("", "apps/", "/v1", "a/b/c"):
        with pytest.raises(ValueError, match="invalid apiVersion"):
            discovery_url(bad)


def test_find_resource_skips_subresources_and_other_kinds() -> None:
    found = find_resource("apps/v1", "Deployment", APPS_V1)
    assert found == ApiResource("apps/v1", "Deployment", "deployments", namespaced=True)
    assert find_resource("apps/v1", "StatefulSet", APPS_V1) is None
    assert find_resource("apps/v1", "Deployment", {"resources": []}) is None


def test_resource_urls_for_namespaced_and_cluster_scoped_kinds() -> None:
    deployments = ApiResource("apps/v1", "Deployment", "deployments")
    assert deployments.url("prod", "web") == "/apis/apps/v1/namespaces/prod/deployments/web"
    assert deployments.url("prod") == "/apis/apps/v1/namespaces/prod/deployments"
    with pytest.raises(ValueError, match="namespaced"):
        deployments.url(None, "web")
    router = ApiResource("serving.example/v1", "Router", "routers", namespaced=False)
    assert router.url("ignored", "r1") == "/apis/serving.example/v1/routers/r1"
    assert object_url("v1", "ConfigMap", "ns", "cm") == "/api/v1/namespaces/ns/configmaps/cm"
    with pytest.raises(ValueError, match="does not manage apps/v1 Deployment"):
        object_url("apps/v1", "Deployment", "ns", "web")


def test_discovery_resolves_once_and_caches_what_it_found() -> None:
    discovery = Discovery()
    fetch = Fetcher({"/apis/apps/v1": APPS_V1, "/apis/serving.example/v1": CLUSTER_V1})

    async def scenario() -> list[ApiResource]:
        return [
            await discovery.resolve("apps/v1", "Deployment", fetch),
            await discovery.resolve("apps/v1", "Deployment", fetch),
            await discovery.resolve("serving.example/v1", "Router", fetch),
            await discovery.resolve("batch/v1", "Job", fetch),  # the operator's own: no read
        ]

    deployment, again, router, job = asyncio.run(scenario())
    assert deployment == again and deployment.plural == "deployments"
    assert router.namespaced is False
    assert job.plural == "jobs"
    assert fetch.reads == ["/apis/apps/v1", "/apis/serving.example/v1"]


def test_discovery_says_which_part_is_not_served_and_retries_later() -> None:
    discovery = Discovery()
    fetch = Fetcher({"/apis/apps/v1": APPS_V1})
    with pytest.raises(UnknownKind, match=r"serves no kind StatefulSet in apps/v1"):
        asyncio.run(discovery.resolve("apps/v1", "StatefulSet", fetch))
    with pytest.raises(UnknownKind, match=r"does not serve serving\.kserve\.io/v1beta1"):
        asyncio.run(discovery.resolve("serving.kserve.io/v1beta1", "InferenceService", fetch))
    # Not cached: a CRD installed later is found by the next attempt.
    fetch.documents = {"/apis/serving.kserve.io/v1beta1": CLUSTER_V1 | {"resources": []}}
    with pytest.raises(UnknownKind):
        asyncio.run(discovery.resolve("serving.kserve.io/v1beta1", "InferenceService", fetch))
    assert fetch.reads.count("/apis/serving.kserve.io/v1beta1") == 2


def test_describe_names_an_object_for_logs_and_events() -> None:
    patch = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    assert describe(patch) == "apps/v1 Deployment web"
    patch["metadata"]["namespace"] = "prod"
    assert describe(patch) == "apps/v1 Deployment prod/web"


def _owned_by(api_version: str, kind: str, controller: bool = True) -> dict[str, Any]:
    ref = {"apiVersion": api_version, "kind": kind, "name": "loop", "uid": "u-1"}
    return {
        "metadata": {
            "name": "loop-c1",
            "namespace": "ml",
            "ownerReferences": [ref | {"controller": controller}],
        }
    }


def test_kubetune_owner_is_the_controlling_kubetune_resource_only() -> None:
    owner = kubetune_owner(_owned_by("kubetune.dev/v1alpha1", "FeedbackLoop"))
    assert owner == (("ml", "FeedbackLoop", "loop"), "u-1")
    assert kubetune_owner(_owned_by("kubetune.dev/v1alpha1", "FeedbackLoop", False)) is None
    assert kubetune_owner(_owned_by("apps/v1", "Deployment")) is None
    assert kubetune_owner(_owned_by("kubetune.dev/v1alpha1", "Unknown")) is None
    assert kubetune_owner({"metadata": {"name": "x"}}) is None


def _sample(name: str, loop: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"namespace": "unit", "name": loop})


def test_feedback_metrics_count_promotions_on_champion_cycle_changes() -> None:
    loop = "metrics-loop"
    feedback.observe_status("unit", loop, {"pendingRecords": 12, "cycles": 0}, {})
    assert _sample("kubetune_feedback_pending_records", loop) == 12
    assert _sample("kubetune_feedback_cycles", loop) == 0
    assert _sample("kubetune_feedback_promotions_total", loop) == 0
    running = {"pendingRecords": 0, "cycles": 1}
    feedback.observe_status("unit", loop, running, {"pendingRecords": 12, "cycles": 0})
    promoted = {"pendingRecords": 3, "cycles": 1, "championCycle": 1}
    feedback.observe_status("unit", loop, promoted, running)
    feedback.observe_status("unit", loop, promoted | {"pendingRecords": 5}, promoted)
    assert _sample("kubetune_feedback_promotions_total", loop) == 1
    assert _sample("kubetune_feedback_pending_records", loop) == 5
    feedback.observe_status("unit", loop, promoted | {"championCycle": 2}, promoted)
    assert _sample("kubetune_feedback_promotions_total", loop) == 2
    metrics.forget_resource("FeedbackLoop", "unit", loop, feedback.CONTROLLER.series)
    assert _sample("kubetune_feedback_promotions_total", loop) is None
    assert _sample("kubetune_feedback_cycles", loop) is None


def test_deleting_a_resource_drops_only_its_own_kinds_series() -> None:
    name = "same-name"
    finetune.observe_status("unit", name, {"progress": {"loss": 0.5}}, {})
    evaluation.observe_status("unit", name, {"results": {"bleu": 0.3, "rouge": 0.4}}, {})
    metrics.forget_resource("FinetuneJob", "unit", name, finetune.CONTROLLER.series)
    assert _sample("kubetune_training_loss", name) is None
    score = {"namespace": "unit", "name": name, "metric": "rouge"}
    assert metrics.REGISTRY.get_sample_value("kubetune_evaluation_score", score) == 0.4
    metrics.forget_resource("Evaluation", "unit", name, evaluation.CONTROLLER.series)
    assert metrics.REGISTRY.get_sample_value("kubetune_evaluation_score", score) is None


def test_a_reset_of_the_champion_is_not_a_promotion() -> None:
    assert feedback.promoted({"championCycle": 3}, {"championCycle": 2})
    assert not feedback.promoted({"championCycle": None}, {"championCycle": 2})
    assert not feedback.promoted({"championCycle": 2}, {"championCycle": 2})


def test_configure_prefixes_kopf_bookkeeping_with_the_project() -> None:
    import kopf
    from kubetune.controllers.registry import FINALIZER, configure

    settings = kopf.OperatorSettings()
    configure(settings)
    assert settings.persistence.finalizer == FINALIZER == "kubetune.dev/finalizer"
