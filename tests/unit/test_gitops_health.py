"""GitOps health: the Argo CD Lua health checks shipped in docs/gitops.md, run with Lua (lupa)
on status objects the operator's planners write, agree with kstatus (what Flux and cli-utils
compute) on every state of a run."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetune.api.resources import FeedbackLoop, FinetuneJob
from kubetune.api.steps import StepResult
from kubetune.controllers.status import invalid_spec_status
from kubetune.plan import ObservedJob, ObservedPod, ObservedWorld, OperatorConfig, plan

lupa = pytest.importorskip("lupa")

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 1, 1, tzinfo=UTC)
CONFIG = OperatorConfig()
META = {"namespace": "ml", "uid": "uid-1", "generation": 1}
KINDS = ("Dataset", "FinetuneJob", "Compression", "Evaluation", "FeedbackLoop")


@functools.cache
def health_scripts() -> dict[str, str]:
    text = (ROOT / "docs" / "gitops.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    [config_map] = [yaml.safe_load(b) for b in blocks if "argocd-cm" in b]
    prefix = "resource.customizations.health.kubetune.dev_"
    return {k.removeprefix(prefix): v for k, v in config_map["data"].items()}


def argo_health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    check = lua.eval(f"function(obj)\n{health_scripts()[kind]}\nend")
    result = check(lua.table_from(obj, recursive=True))
    return str(result["status"]), str(result["message"])


def kstatus(obj: dict[str, Any]) -> str:
    """sigs.k8s.io/cli-utils kstatus for a custom resource (checkGenericProperties)."""
    meta, status = obj.get("metadata", {}), obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    observed = status.get("observedGeneration")
    if observed is not None and observed != meta.get("generation"):
        return "InProgress"
    for cond in status.get("conditions") or []:
        if cond["type"] == "Reconciling" and cond["status"] == "True":
            return "InProgress"
        if cond["type"] == "Stalled" and cond["status"] == "True":
            return "Failed"
    return "Current"


def finetune(status: dict[str, Any] | None = None, generation: int = 1) -> FinetuneJob:
    return FinetuneJob.model_validate(
        {
            "metadata": {"name": "ft", **META, "generation": generation},
            "spec": {
                "model": {"base": {"uri": "hf://org/base"}},
                "dataset": {"uri": "pvc://d/x"},
                "lora": {"r": 4},
            },
            "status": status,
        }
    )


def body(resource: Any, status: dict[str, Any]) -> dict[str, Any]:
    return {**resource.body(), "status": status}


def job(**kw: Any) -> ObservedJob:
    return ObservedJob(name="ft-finetune-g1", run_id="g1", start_time=NOW, **kw)


def planned(*jobs: ObservedJob, resource: Any = None, **world: Any) -> dict[str, Any]:
    resource = resource or finetune()
    result = plan(resource, ObservedWorld(now=NOW, jobs=jobs, **world), CONFIG)
    return body(resource, result.status)


def result(**kw: Any) -> str:
    return StepResult(step="finetune", ok=True, reason="Completed", **kw).termination_message()


def _states() -> dict[str, tuple[str, dict[str, Any], str, str]]:
    running_pod = ObservedPod("p", "Running", start_time=NOW)
    done_pod = ObservedPod("p", "Succeeded", termination_message=result(outputUri="pvc://m/1"))
    complete = ({"type": "Complete", "status": "True"},)
    failed = ({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"},)
    succeeded = planned(
        job(succeeded=1, conditions=complete, completion_time=NOW, pods=(done_pod,))
    )
    newer = {**succeeded, "metadata": {**succeeded["metadata"], "generation": 2}}
    invalid = invalid_spec_status(
        {"kind": "FinetuneJob", "metadata": {"generation": 1}}, "spec.lora.r: bad", NOW
    )
    loop = FeedbackLoop.model_validate(
        {
            "metadata": {"name": "loop", **META},
            "spec": {
                "feedback": {"uri": "s3://fb/"},
                "baseDataset": {"name": "data"},
                "champion": {"uri": "s3://models/v1"},
                "finetune": {"lora": {"r": 4}},
                "evaluation": {
                    "prompts": {"inline": [{"prompt": "x"}]},
                    "metrics": [{"name": "length"}],
                    "gates": [{"metric": "length", "max": 100}],
                },
                "triggers": {"minNewRecords": 100},
            },
        }
    )
    loop_status = plan(loop, ObservedWorld(now=NOW), CONFIG).status
    suspended = finetune().model_copy(deep=True)
    suspended.spec.suspend = True
    return {
        # name: (kind, object, kstatus, Argo CD health)
        "pending": ("FinetuneJob", planned(), "InProgress", "Progressing"),
        "running": (
            "FinetuneJob",
            planned(job(active=1, pods=(running_pod,))),
            "InProgress",
            "Progressing",
        ),
        "succeeded": ("FinetuneJob", succeeded, "Current", "Healthy"),
        "failed": (
            "FinetuneJob",
            planned(job(failed=3, conditions=failed, completion_time=NOW + timedelta(1))),
            "Failed",
            "Degraded",
        ),
        "invalid-spec": ("FinetuneJob", body(finetune(), invalid), "Failed", "Degraded"),
        "new-generation": ("FinetuneJob", newer, "InProgress", "Progressing"),
        "suspended": ("FinetuneJob", planned(resource=suspended), "Current", "Suspended"),
        "loop-waiting": ("FeedbackLoop", body(loop, loop_status), "InProgress", "Progressing"),
    }


STATES = _states()


def test_every_kind_has_a_health_check() -> None:
    assert set(health_scripts()) == set(KINDS)


@pytest.mark.parametrize("name", sorted(STATES))
def test_argo_health_and_kstatus_of_each_state(name: str) -> None:
    kind, obj, expected_kstatus, expected_health = STATES[name]
    assert obj["status"]["observedGeneration"] >= 1
    assert kstatus(obj) == expected_kstatus
    health, message = argo_health(kind, obj)
    assert health == expected_health, message
    assert message


@pytest.mark.parametrize("kind", KINDS)
def test_no_status_yet_is_progressing(kind: str) -> None:
    assert argo_health(kind, {"metadata": {"name": "x", "generation": 1}})[0] == "Progressing"


def test_ready_mirrors_success_for_kubectl_wait() -> None:
    _kind, obj, _, _ = STATES["succeeded"]
    conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conditions["Ready"] == "True" and conditions["Succeeded"] == "True"
    assert conditions["Reconciling"] == "False" and conditions["Stalled"] == "False"
    running = {c["type"]: c["status"] for c in STATES["running"][1]["status"]["conditions"]}
    assert running["Ready"] == "False" and running["Reconciling"] == "True"


def test_failed_evaluation_gates_are_degraded() -> None:
    obj = {
        "metadata": {"name": "e", "generation": 1},
        "status": {
            "phase": "Succeeded",
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Completed"},
                {"type": "Passed", "status": "False", "reason": "GatesFailed", "message": "x"},
            ],
        },
    }
    assert argo_health("Evaluation", obj) == ("Degraded", "GatesFailed: x")
