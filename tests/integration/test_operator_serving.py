"""spec.publish.kserve driven through the real operator and the API emulator, which serves an
InferenceService CRD built from KServe's published Python SDK (tests/helpers/kserve_schema.py,
``make tools`` unpacks the SDK; admission from the CRD alone).
The test plays KServe's controller: it writes the InferenceService's status (Ready, url,
traffic) as KServe would.

* a FinetuneJob's LoRA adapter: the InferenceService is created once the model is complete,
  accepted by the CRD without a pruned field, and its url reaches ``status.publish``;
* without KServe's CRD the target reports ``KServeNotInstalled`` (condition, Warning event), the
  operator keeps running, and installing the CRD later creates the InferenceService;
* a FeedbackLoop's promotion: the champion's InferenceService first gives the new model a
  canary share, then all traffic after the soak; the abort annotation returns traffic (and the
  champion) to the previous model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner

from tests.emulator import Emulator, Kubelet, start_emulator
from tests.emulator.resources import load_crd_files
from tests.helpers import kserve
from tests.helpers.clock import Clock
from tests.integration.conftest import (
    DATASETS,
    EVALUATIONS,
    FEEDBACKLOOPS,
    FINETUNEJOBS,
    NS,
    ROOT,
    condition,
    finetune,
    operator_registry,
    ready_dataset,
    run_operator_registry,
    status_of,
    step_result,
    succeeded_finetune,
    wait_event,
    wait_job,
    wait_phase,
)

ISVCS = "inferenceservices.serving.kserve.io"
CRDS = "customresourcedefinitions.apiextensions.k8s.io"
ADAPTER_URI = "s3://kubetune-test/assistant"
LOOP = "loop"
CYCLE = f"{LOOP}-c1"
SERVICE = "support"
CHAMPION_URI = "s3://kubetune-test/assistant"  # conftest's succeeded FinetuneJob
CHALLENGER_URI = "s3://out/loop-c1"
SOAK = 300


def kserve_crd() -> dict[str, Any]:
    return kserve.crd()


@pytest.fixture()
def kserve_emu() -> Iterator[Emulator]:
    """The emulator serving kubetune's CRDs and KServe's InferenceService CRD."""
    with start_emulator([*load_crd_files(ROOT / "crds"), kserve_crd()]) as emulator:
        yield emulator


@pytest.fixture()
def clock() -> Clock:
    return Clock()


Operator = Callable[[Emulator], AbstractContextManager[KopfRunner]]


@pytest.fixture()
def run_operator(clock: Clock, tmp_path: Path) -> Operator:
    def start(emu: Emulator) -> AbstractContextManager[KopfRunner]:
        return run_operator_registry(emu, operator_registry(emu, tmp_path, clock=clock))

    return start


def play_kserve(
    emu: Emulator, name: str, traffic: list[dict[str, Any]], ready: bool = True
) -> None:
    """What KServe's controller writes once it has reconciled the InferenceService."""
    isvc = emu.get(ISVCS, NS, name)
    assert isvc is not None
    emu.patch_status(
        ISVCS,
        NS,
        name,
        {
            "observedGeneration": isvc["metadata"]["generation"],
            "url": f"http://{name}.{NS}.example.com",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "components": {"predictor": {"traffic": traffic}},
        },
    )


def kserve_entry(status: dict[str, Any]) -> dict[str, Any]:
    return next((e for e in status.get("publish") or [] if e["target"] == "kserve"), {})


def wait_entry(
    emu: Emulator, resource: str, name: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    found = emu.wait_for(
        resource, NS, name, lambda o: check(kserve_entry(o.get("status") or {})), timeout=15
    )
    return dict(found["status"])


def poke(emu: Emulator, resource: str, name: str, value: str) -> None:
    emu.patch(resource, NS, name, {"metadata": {"annotations": {"test/poke": value}}})


# --- a FinetuneJob --------------------------------------------------------------------------------


def test_a_finished_adapter_is_served_and_its_url_reaches_the_status(
    kserve_emu: Emulator, run_operator: Operator
) -> None:
    emu, kubelet = kserve_emu, Kubelet(kserve_emu)
    target = {"name": SERVICE, "resources": {"cpu": "2", "memory": "8Gi", "gpus": 1}}
    with run_operator(emu):
        ready_dataset(emu, kubelet)
        emu.create(FINETUNEJOBS, finetune(publish={"kserve": target}), admit=True)
        wait_job(emu, "assistant-finetune-g1")
        status = wait_entry(emu, FINETUNEJOBS, "assistant", lambda e: e.get("phase") == "Pending")
        assert emu.get(ISVCS, NS, SERVICE) is None  # nothing is served before the model is done
        kubelet.succeed(NS, "assistant-finetune-g1", step_result("finetune", outputUri=ADAPTER_URI))
        isvc = emu.wait_for(ISVCS, NS, SERVICE, timeout=15)
        uid = emu.get(FINETUNEJOBS, NS, "assistant")["metadata"]["uid"]  # type: ignore[index]
        [owner] = isvc["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"]) == ("FinetuneJob", uid)
        predictor = isvc["spec"]["predictor"]
        assert [s["uri"] for s in predictor["storageUris"]] == ["hf://org/tiny-llama", ADAPTER_URI]
        assert f"{SERVICE}=/mnt/models/adapters/{SERVICE}" in predictor["model"]["args"]
        assert emu.warnings(ISVCS) == []  # the CRD pruned nothing
        wait_entry(emu, FINETUNEJOBS, "assistant", lambda e: e.get("phase") == "Publishing")

        play_kserve(emu, SERVICE, [{"revisionName": f"{SERVICE}-predictor-00001", "percent": 100}])
        status = wait_entry(emu, FINETUNEJOBS, "assistant", lambda e: e.get("phase") == "Published")
        entry = kserve_entry(status)
        assert entry["url"] == f"http://{SERVICE}.{NS}.example.com"
        assert entry["traffic"] == [{"revision": f"{SERVICE}-predictor-00001", "percent": 100}]
        assert condition(status, "Serving")["status"] == "True"
        assert status["phase"] == "Succeeded"
    assert len(emu.requests("POST", ISVCS)) == 1  # created once, then left alone
    assert emu.requests("PATCH", ISVCS) == []


def test_without_kserve_the_target_says_so_and_installing_it_later_serves_the_model(
    emu: Emulator, kubelet: Kubelet, run_operator: Operator
) -> None:
    with run_operator(emu):
        succeeded_finetune_with(emu, kubelet, {"kserve": {"name": SERVICE}})
        wait_phase(emu, FINETUNEJOBS, "assistant", "Succeeded")
        status = wait_entry(emu, FINETUNEJOBS, "assistant", lambda e: e.get("phase") == "Failed")
        serving = condition(status, "Serving")
        assert (serving["status"], serving["reason"]) == ("False", "KServeNotInstalled")
        assert "serving.kserve.io/v1beta1" in kserve_entry(status)["message"]
        assert status["phase"] == "Succeeded"  # the model itself is fine
        assert wait_event(emu, "assistant", "KServeNotInstalled")[0] == "Warning"

        emu.create(CRDS, kserve_crd())
        poke(emu, FINETUNEJOBS, "assistant", "after-install")
        isvc = emu.wait_for(ISVCS, NS, SERVICE, timeout=15)
        assert isvc["spec"]["predictor"]["storageUris"][1]["uri"] == ADAPTER_URI
        status = wait_entry(
            emu, FINETUNEJOBS, "assistant", lambda e: e.get("phase") == "Publishing"
        )
        assert condition(status, "Serving")["reason"] == "ServiceNotReady"


def succeeded_finetune_with(emu: Emulator, kubelet: Kubelet, publish: dict[str, Any]) -> None:
    ready_dataset(emu, kubelet)
    emu.create(FINETUNEJOBS, finetune(publish=publish), admit=True)
    wait_job(emu, "assistant-finetune-g1")
    kubelet.succeed(NS, "assistant-finetune-g1", step_result("finetune", outputUri=ADAPTER_URI))


# --- a FeedbackLoop's promotion -------------------------------------------------------------------


def loop_manifest() -> dict[str, Any]:
    gpu = {"gpus": 1}
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FeedbackLoop",
        "metadata": {"name": LOOP, "namespace": NS},
        "spec": {
            "feedback": {"uri": "s3://feedback/app/"},
            "baseDataset": {"name": "tickets"},
            "champion": {"kind": "FinetuneJob", "name": "assistant"},
            "finetune": {"method": "full", "resources": gpu},
            "evaluation": {
                "prompts": {"uri": "s3://raw/eval.jsonl"},
                "metrics": [{"name": "rougeL"}],
                "gates": [{"metric": "rougeL", "maxRegression": 0.0}],
                "resources": gpu,
            },
            "triggers": {"minNewRecords": 5, "checkIntervalSeconds": 30},
            "promotion": {
                "publish": {
                    "kserve": {
                        "name": SERVICE,
                        "canary": {"trafficPercent": 20, "soakSeconds": SOAK},
                    }
                }
            },
        },
    }


def loop_status(emu: Emulator) -> dict[str, Any]:
    return status_of(emu, FEEDBACKLOOPS, LOOP)


def wait_loop(emu: Emulator, check: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    found = emu.wait_for(
        FEEDBACKLOOPS, NS, LOOP, lambda o: check(o.get("status") or {}), timeout=15
    )
    return dict(found["status"])


def served(emu: Emulator) -> tuple[str, Any]:
    predictor = emu.get(ISVCS, NS, SERVICE)["spec"]["predictor"]  # type: ignore[index]
    return predictor["model"]["storageUri"], predictor.get("canaryTrafficPercent")


def promote_with_canary(emu: Emulator, kubelet: Kubelet) -> None:
    """The champion served, then cycle c1 promoted: its model becomes the canary."""
    succeeded_finetune(emu, kubelet)
    emu.create(FEEDBACKLOOPS, loop_manifest(), admit=True)
    emu.wait_for(ISVCS, NS, SERVICE, timeout=15)
    assert served(emu) == (CHAMPION_URI, None)
    play_kserve(emu, SERVICE, [{"revisionName": "r1", "percent": 100, "latestRevision": True}])
    wait_loop(emu, lambda s: kserve_entry(s).get("phase") == "Published")
    start_cycle(emu, kubelet)
    results = {
        DATASETS: step_result("dataprep", outputUri="s3://out/loop-c1-data"),
        FINETUNEJOBS: step_result("finetune", outputUri=CHALLENGER_URI, metrics={"loss": 1}),
        EVALUATIONS: step_result("evaluate", metrics={"rougeL": 0.6}, passed=True),
    }
    steps = ((DATASETS, "dataprep"), (FINETUNEJOBS, "finetune"), (EVALUATIONS, "evaluate"))
    for resource, step in steps:
        job = f"{CYCLE}-{step}-g1"
        wait_job(emu, job)
        kubelet.succeed(NS, job, results[resource])
    status = wait_loop(emu, lambda s: (s.get("rollout") or {}).get("phase") == "Canary")
    assert (status["champion"], status["championCycle"]) == (CHALLENGER_URI, 1)
    assert emu.warnings(ISVCS) == []


def start_cycle(emu: Emulator, kubelet: Kubelet) -> None:
    """Enough feedback at the first count: cycle c1 collects, then its resources appear."""
    emu.wait_for(FEEDBACKLOOPS, NS, LOOP, lambda _: _count_jobs(emu), timeout=15)
    job = _count_jobs(emu)[0]
    kubelet.succeed(NS, job, step_result("feedback", metrics={"pendingRecords": 9}))
    collect = f"{LOOP}-feedback-c1"
    wait_job(emu, collect)
    kubelet.succeed(NS, collect, step_result("feedback", metrics={"usedRecords": 9}))
    for resource in (DATASETS, FINETUNEJOBS, EVALUATIONS):
        emu.wait_for(resource, NS, CYCLE, timeout=15)


def _count_jobs(emu: Emulator) -> list[str]:
    labels = f"kubetune.dev/kind=FeedbackLoop,kubetune.dev/name={LOOP}"
    jobs = emu.objects("jobs.batch", NS, labels=labels)
    return [
        j["metadata"]["name"]
        for j in jobs
        if j["metadata"]["labels"]["kubetune.dev/run-id"].startswith("s")
    ]


def test_a_promotion_is_a_canary_then_all_traffic_after_the_soak(
    kserve_emu: Emulator, run_operator: Operator, clock: Clock
) -> None:
    emu, kubelet = kserve_emu, Kubelet(kserve_emu)
    with run_operator(emu):
        promote_with_canary(emu, kubelet)
        assert served(emu) == (CHALLENGER_URI, 20)
        assert "abort-rollout=c1" in wait_event(emu, LOOP, "CanaryStarted")[2]
        play_kserve(
            emu,
            SERVICE,
            [
                {"revisionName": "r1", "percent": 80, "tag": "prev"},
                {"revisionName": "r2", "percent": 20, "latestRevision": True},
            ],
        )
        status = wait_loop(emu, lambda s: len(kserve_entry(s).get("traffic") or []) == 2)
        assert [t["percent"] for t in kserve_entry(status)["traffic"]] == [80, 20]
        assert "canary" in kserve_entry(status)["message"]

        clock.advance(SOAK)
        poke(emu, FEEDBACKLOOPS, LOOP, "soaked")
        status = wait_loop(emu, lambda s: (s.get("rollout") or {}).get("phase") == "RolledOut")
        assert served(emu) == (CHALLENGER_URI, None)
        assert wait_event(emu, LOOP, "RolledOut")[0] == "Normal"
        assert status["champion"] == CHALLENGER_URI


def test_the_abort_annotation_returns_traffic_and_the_champion_to_the_previous_model(
    kserve_emu: Emulator, run_operator: Operator, clock: Clock
) -> None:
    emu, kubelet = kserve_emu, Kubelet(kserve_emu)
    with run_operator(emu):
        promote_with_canary(emu, kubelet)
        emu.patch(
            FEEDBACKLOOPS,
            NS,
            LOOP,
            {"metadata": {"annotations": {"kubetune.dev/abort-rollout": "c1"}}},
        )
        status = wait_loop(emu, lambda s: (s.get("rollout") or {}).get("phase") == "RolledBack")
        assert served(emu) == (CHAMPION_URI, 0)  # every request back on the rolled-out revision
        assert (status["champion"], status.get("championCycle")) == (CHAMPION_URI, None)
        [record] = status["history"]
        assert (record["runId"], record["reason"]) == ("c1", "RolledBack")
        assert "abort-rollout=c1" in wait_event(emu, LOOP, "RolloutAborted")[2]
