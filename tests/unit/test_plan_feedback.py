"""FeedbackLoop planning: triggers, the stages of a cycle, promotion, clean-up, crash adoption.

A small simulated shell applies each plan (creates the children, deletes, records patches and
the status) so a loop can be driven through whole cycles with nothing but the planner.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes_validate
import pytest
from kubetune.api.kinds import KIND_INFO
from kubetune.api.resources import AnyResource, Dataset, FeedbackLoop, FinetuneJob
from kubetune.api.steps import FeedbackStepSpec, StepResult, parse_step_spec
from kubetune.plan import ObservedJob, ObservedPod, ObservedWorld, OperatorConfig, Plan, plan
from kubetune.plan.naming import LABEL_RUN_ID
from kubetune.schema.crd_validation import validate_against_crd

T0 = datetime(2026, 3, 2, 12, 0, 5, tzinfo=UTC)  # a Monday
CONFIG = OperatorConfig(artifact_store="s3://store")
META = {"namespace": "ml", "generation": 1}
INTERVAL = 600


def done_status(kind: str, uri: str, **extra: Any) -> dict[str, Any]:
    done = "Ready" if kind == "Dataset" else "Succeeded"
    return {
        "phase": done,
        "observedGeneration": 1,
        "outputUri": uri,
        "artifactHash": f"sha256:{abs(hash(uri))}",
        "conditions": [
            {"type": done, "status": "True", "reason": "Completed", "observedGeneration": 1}
        ],
        **extra,
    }


def failed_status(kind: str, reason: str, message: str) -> dict[str, Any]:
    done = "Ready" if kind == "Dataset" else "Succeeded"
    return {
        "phase": "Failed",
        "observedGeneration": 1,
        "message": message,
        "conditions": [
            {"type": done, "status": "False", "reason": reason, "observedGeneration": 1}
        ],
    }


def base_dataset() -> Dataset:
    return Dataset.model_validate(
        {
            "metadata": {"name": "tickets", "uid": "uid-ds", **META},
            "spec": {
                "sources": [{"uri": "s3://raw/tickets.jsonl"}],
                "schema": "instruction",
                "tokenizer": {"train": {"type": "bpe", "vocabSize": 512}, "maxTokens": 256},
                "output": {"uri": "s3://datasets/tickets"},
                "safety": {"pii": {"kinds": ["email"]}},
            },
            "status": done_status("Dataset", "s3://store/ml/dataset/tickets/g1"),
        }
    )


def champion_job(phase: str = "done") -> FinetuneJob:
    status = (
        done_status("FinetuneJob", "s3://models/champ")
        if phase == "done"
        else {"phase": "Running", "observedGeneration": 1}
    )
    return FinetuneJob.model_validate(
        {
            "metadata": {"name": "champ", "uid": "uid-ft", **META},
            "spec": {
                "model": {"base": {"uri": "hf://org/base"}},
                "dataset": {"name": "tickets"},
                "lora": {"r": 4},
            },
            "status": status,
        }
    )


def loop_body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "feedback": {
            "uri": "s3://feedback/app/",
            "fields": {"prompt": "question", "response": "answer"},
            "minRating": 4,
            "weight": 2.0,
            "credentials": {
                "awsAccessKeyId": {"secretKeyRef": {"name": "fb", "key": "id"}},
                "awsSecretAccessKey": {"secretKeyRef": {"name": "fb", "key": "secret"}},
            },
        },
        "baseDataset": {"name": "tickets"},
        "champion": {"kind": "FinetuneJob", "name": "champ"},
        "finetune": {
            "method": "lora",
            "lora": {"r": 8},
            "resources": {"gpus": 1},
            "output": {"uri": "s3://out/challengers"},
        },
        "compression": {"steps": [{"mergeAdapter": {}}, {"quantize": {"bits": 4}}]},
        "evaluation": {
            "prompts": {"dataset": {"name": "tickets"}},
            "metrics": [{"name": "rougeL"}],
            "gates": [{"metric": "rougeL", "maxRegression": 0.0}],
        },
        "triggers": {"minNewRecords": 5, "checkIntervalSeconds": INTERVAL},
        "promotion": {
            "mode": "patch",
            "target": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "server",
                "fieldPath": "spec.template.metadata.annotations.model-uri",
            },
        },
    }
    base.update(spec)
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FeedbackLoop",
        "metadata": {
            "name": "loop",
            "uid": "uid-loop",
            "creationTimestamp": T0.isoformat(),
            **META,
        },
        "spec": base,
    }


def result(step: str, **metrics: float) -> StepResult:
    return StepResult(step=step, ok=True, reason="Done", metrics=metrics)  # type: ignore[arg-type]


class Shell:
    """Applies plans like the operator does, with hooks to finish Jobs and set statuses."""

    def __init__(self, body: dict[str, Any], *others: AnyResource) -> None:
        self.loop = FeedbackLoop.model_validate(body)
        self.resources = {(r.kind, r.name): r for r in (base_dataset(), champion_job(), *others)}
        self.owned: dict[tuple[str, str], dict[str, Any]] = {}
        self.jobs: dict[str, ObservedJob] = {}
        self.manifests: dict[tuple[str, str], dict[str, Any]] = {}
        self.patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.deleted: list[tuple[str, str]] = []
        self.now = T0
        self.last: Plan | None = None

    # --- the world ---------------------------------------------------------------------

    def world(self) -> ObservedWorld:
        owned = {
            key: KIND_INFO[key[0]].model.model_validate(body) for key, body in self.owned.items()
        }
        return ObservedWorld(
            now=self.now,
            resources=dict(self.resources),
            jobs=tuple(self.jobs.values()),
            owned=owned,  # type: ignore[arg-type]
        )

    def step(self) -> Plan:
        result_plan = plan(self.loop, self.world(), CONFIG)
        for ref in result_plan.deletions:
            key = (ref["kind"], ref["metadata"]["name"])
            self.deleted.append(key)
            self.owned.pop(key, None)
            self.manifests.pop(key, None)
            if ref["kind"] == "Job":
                self.jobs.pop(ref["metadata"]["name"], None)
        for child in result_plan.children:
            key = (child["kind"], child["metadata"]["name"])
            if child["apiVersion"].startswith("kubetune.dev/"):
                if key not in self.owned:
                    self.owned[key] = {**child, "metadata": {**child["metadata"], "generation": 1}}
                continue
            self.manifests.setdefault(key, child)
            if child["kind"] == "Job" and child["metadata"]["name"] not in self.jobs:
                name = child["metadata"]["name"]
                self.jobs[name] = ObservedJob(name, child["metadata"]["labels"][LABEL_RUN_ID])
        self.patches += result_plan.patches
        self.events += [(e.type, e.reason, e.message) for e in result_plan.events]
        body = self.loop.body() | {"status": result_plan.status}
        self.loop = FeedbackLoop.model_validate(body)
        self.last = result_plan
        return result_plan

    # --- moving the world ------------------------------------------------------------------

    def job(self, prefix: str) -> ObservedJob:
        found = [j for j in self.jobs.values() if j.name.startswith(prefix)]
        assert len(found) == 1, (prefix, sorted(self.jobs))
        return found[0]

    def step_spec(self, job: ObservedJob) -> FeedbackStepSpec:
        config_map = self.manifests[("ConfigMap", f"{job.name}-spec")]
        spec = parse_step_spec(config_map["data"]["spec.json"])
        assert isinstance(spec, FeedbackStepSpec)
        return spec

    def finish(self, job: ObservedJob, outcome: StepResult) -> None:
        pod = ObservedPod("p", "Succeeded", termination_message=outcome.termination_message())
        self.jobs[job.name] = ObservedJob(
            job.name,
            job.run_id,
            succeeded=1,
            conditions=({"type": "Complete", "status": "True"},),
            start_time=self.now,
            completion_time=self.now,
            pods=(pod,),
        )

    def fail(self, job: ObservedJob, message: str) -> None:
        pod = ObservedPod("p", "Failed", terminated_reason="Error", last_log_line=message)
        self.jobs[job.name] = ObservedJob(
            job.name,
            job.run_id,
            failed=3,
            conditions=({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"},),
            pods=(pod,),
        )

    def set_status(self, kind: str, name: str, status: dict[str, Any]) -> None:
        self.owned[(kind, name)] = {**self.owned[(kind, name)], "status": status}

    def status(self) -> dict[str, Any]:
        assert self.last is not None
        return self.last.status

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status()["conditions"] if c["type"] == type_)

    def count_to(self, pending: int) -> None:
        """Finish the current count Job with ``pending`` records and re-plan."""
        count = next(j for j in self.jobs.values() if "-feedback-s" in j.name and not j.conditions)
        self.finish(count, result("feedback", pendingRecords=pending))
        self.step()

    def run_cycle(self, number: int, passed: bool = True, used: int = 7) -> None:
        """Collect, then every resource of the cycle succeeds; the gates decide."""
        self.finish(self.job(f"loop-feedback-c{number}"), result("feedback", usedRecords=used))
        self.step()
        name = f"loop-c{number}"
        self.set_status("Dataset", name, done_status("Dataset", f"s3://store/ds/{name}"))
        self.set_status("FinetuneJob", name, done_status("FinetuneJob", f"s3://out/ft/{name}"))
        self.set_status("Compression", name, done_status("Compression", f"s3://store/cmp/{name}"))
        evaluation = done_status(
            "Evaluation",
            f"s3://store/ev/{name}",
            passed=passed,
            failedGates=None if passed else ["rougeL maxRegression 0"],
            results={"rougeL": 0.4, "rougeLDelta": 0.05 if passed else -0.02},
        )
        self.set_status("Evaluation", name, evaluation)
        self.step()


def reasons(shell: Shell) -> list[str]:
    return [reason for _type, reason, _msg in shell.events]


# --- waiting and counting ----------------------------------------------------------------


def test_waits_for_the_champion_and_the_base_dataset() -> None:
    shell = Shell(loop_body())
    shell.resources[("FinetuneJob", "champ")] = champion_job("running")
    shell.step()
    assert shell.status()["phase"] == "Waiting"
    assert shell.condition("Ready")["reason"] == "ModelNotReady"
    assert shell.jobs == {} and shell.owned == {}
    del shell.resources[("Dataset", "tickets")]
    shell.resources[("FinetuneJob", "champ")] = champion_job()
    shell.step()
    assert shell.condition("Ready")["reason"] == "DatasetNotFound"
    assert shell.jobs == {}


def test_counts_new_records_and_starts_a_cycle_at_the_threshold() -> None:
    shell = Shell(loop_body())
    first = shell.step()
    assert shell.status()["phase"] == "Ready"
    assert shell.condition("Ready")["status"] == "True"
    count = shell.job("loop-feedback-s0-")
    first_count = count.name
    spec = shell.step_spec(count)
    assert (spec.mode, spec.since_cursor_uri, spec.record_schema) == ("count", None, "instruction")
    assert spec.source.fields.prompt == "question"
    for child in first.children:
        kubernetes_validate.validate(child, "1.32", strict=True)
    job = shell.manifests[("Job", count.name)]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    secret_envs = {e["name"] for e in container["env"] if "valueFrom" in e}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= secret_envs
    assert 0 < (first.requeue_after or 0) <= INTERVAL

    shell.count_to(3)
    assert shell.status()["pendingRecords"] == 3
    assert shell.status()["cycles"] == 0
    assert "3/5 new feedback records" in shell.condition("Cycling")["message"]
    shell.step()
    assert len([j for j in shell.jobs if "-feedback-s" in j]) == 1  # same slot: no new count

    shell.now += timedelta(seconds=INTERVAL)
    shell.step()
    counts = sorted(j for j in shell.jobs if "-feedback-s" in j)
    assert len(counts) == 1  # a new count; the finished one is deleted with its ConfigMap
    assert ("ConfigMap", f"{first_count}-spec") in shell.deleted
    shell.count_to(6)
    assert shell.status()["cycles"] == 1
    assert shell.status()["activeRuns"] == ["c1"]
    assert shell.status()["phase"] == "Running"
    collect = shell.step_spec(shell.job("loop-feedback-c1"))
    assert (collect.mode, collect.since_cursor_uri) == ("collect", None)
    assert collect.output_uri == "s3://store/ml/feedbackloop/loop/c1"
    assert "CycleStarted" in reasons(shell)


def test_a_failed_count_is_reported_and_retried_next_interval() -> None:
    shell = Shell(loop_body())
    shell.step()
    shell.fail(shell.job("loop-feedback-s0-"), "NoCredentialsError: unable to locate credentials")
    shell.step()
    assert "counting feedback failed" in shell.status()["message"]
    assert "NoCredentialsError" in shell.status()["message"]
    shell.now += timedelta(seconds=INTERVAL)
    shell.step()
    counts = [j for j in shell.jobs if "-feedback-s" in j]
    assert len(counts) == 1 and not shell.jobs[counts[0]].conditions  # a new count replaced it


# --- a whole cycle -----------------------------------------------------------------------


def test_a_cycle_creates_its_resources_and_promotes_the_winner() -> None:
    shell = Shell(loop_body())
    shell.step()
    shell.count_to(9)
    shell.finish(shell.job("loop-feedback-c1"), result("feedback", usedRecords=7))
    created = shell.step()
    kinds = [c["kind"] for c in created.children if c["apiVersion"].startswith("kubetune")]
    assert kinds == ["Dataset", "FinetuneJob", "Compression", "Evaluation"]
    for child in created.children:
        if child["apiVersion"].startswith("kubetune"):
            assert validate_against_crd(child) == []
            KIND_INFO[child["kind"]].model.model_validate(child)
            meta = child["metadata"]
            assert meta["name"] == "loop-c1"
            assert meta["labels"]["kubetune.dev/feedback-loop"] == "loop"
            assert meta["labels"]["kubetune.dev/cycle"] == "1"
            assert meta["ownerReferences"][0]["uid"] == "uid-loop"
            assert meta["ownerReferences"][0]["controller"] is True
    dataset = shell.owned[("Dataset", "loop-c1")]["spec"]
    assert dataset["sources"][-1] == {
        "uri": "s3://store/ml/feedbackloop/loop/c1/feedback.jsonl",
        "format": "jsonl",
        "weight": 2.0,
    }
    assert dataset["sources"][0]["uri"] == "s3://raw/tickets.jsonl"
    assert dataset["safety"]["pii"]["kinds"] == ["email"]
    assert "output" not in dataset and "tokenizer" not in dataset
    finetune = shell.owned[("FinetuneJob", "loop-c1")]["spec"]
    assert finetune["model"] == {"from": {"uri": "s3://models/champ"}}
    assert finetune["dataset"] == {"name": "loop-c1"}
    assert finetune["output"] == {"uri": "s3://out/challengers/c1"}
    assert finetune["resources"]["gpus"] == 1
    compression = shell.owned[("Compression", "loop-c1")]["spec"]
    assert compression["model"] == {"kind": "FinetuneJob", "name": "loop-c1"}
    evaluation = shell.owned[("Evaluation", "loop-c1")]["spec"]
    assert evaluation["candidate"] == {"kind": "Compression", "name": "loop-c1"}
    assert evaluation["baseline"] == {"uri": "s3://models/champ"}
    assert shell.condition("Cycling")["reason"] == "PreparingData"

    shell.set_status("Dataset", "loop-c1", done_status("Dataset", "s3://store/ds/c1"))
    shell.step()
    assert shell.condition("Cycling")["reason"] == "Training"
    assert shell.patches == []

    shell.set_status("FinetuneJob", "loop-c1", done_status("FinetuneJob", "s3://out/ft/c1"))
    shell.set_status("Compression", "loop-c1", done_status("Compression", "s3://out/cmp/c1"))
    shell.set_status(
        "Evaluation",
        "loop-c1",
        done_status("Evaluation", "s3://ev", passed=True, results={"rougeL": 0.41}),
    )
    shell.step()
    status = shell.status()
    assert status["champion"] == "s3://out/cmp/c1"
    assert status["championTrainingUri"] == "s3://out/ft/c1"
    assert status["championCycle"] == 1
    assert status["generation"] == 1 and status["activeRuns"] is None
    assert status["phase"] == "Ready"
    record = status["history"][0]
    assert (record["runId"], record["phase"], record["reason"]) == ("c1", "Succeeded", "Promoted")
    assert record["results"] == {"rougeL": 0.41, "records": 7.0}
    assert record["outputUri"] == "s3://out/cmp/c1"
    assert shell.patches == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "server", "namespace": "ml"},
            "spec": {"template": {"metadata": {"annotations": {"model-uri": "s3://out/cmp/c1"}}}},
        }
    ]
    assert "Promoted" in reasons(shell)

    # The next cycle counts since cycle 1 and trains from the new champion.
    count = shell.step_spec(shell.job("loop-feedback-s1-"))
    assert count.since_cursor_uri == "s3://store/ml/feedbackloop/loop/c1/cursor.json"
    shell.count_to(5)
    collect = shell.step_spec(shell.job("loop-feedback-c2"))
    assert collect.since_cursor_uri == "s3://store/ml/feedbackloop/loop/c1/cursor.json"
    shell.finish(shell.job("loop-feedback-c2"), result("feedback", usedRecords=5))
    shell.step()
    assert shell.owned[("FinetuneJob", "loop-c2")]["spec"]["model"] == {
        "from": {"uri": "s3://out/ft/c1"}
    }
    assert shell.owned[("Evaluation", "loop-c2")]["spec"]["baseline"] == {"uri": "s3://out/cmp/c1"}


def test_replanning_an_unchanged_world_creates_and_announces_nothing_new() -> None:
    shell = Shell(loop_body())
    shell.step()
    shell.count_to(9)
    shell.run_cycle(1)
    events = list(shell.events)
    again = shell.step()
    assert again.events == [] and again.patches == [] and again.deletions == []
    assert events == shell.events


def test_a_rejected_challenger_keeps_the_champion_and_its_records_stay_pending() -> None:
    shell = Shell(loop_body(promotion={"mode": "status"}))
    shell.step()
    shell.count_to(9)
    shell.run_cycle(1, passed=False)
    status = shell.status()
    assert status["champion"] == "s3://models/champ"
    assert status["championCycle"] is None
    assert status["history"][0]["reason"] == "Rejected"
    assert "failed gates: rougeL maxRegression 0" in status["history"][0]["message"]
    assert shell.patches == []
    assert "CycleRejected" in reasons(shell)
    # The trigger counts from the rejected cycle (no immediate retrain on the same records)...
    assert shell.step_spec(shell.job("loop-feedback-s1-")).since_cursor_uri.endswith(
        "c1/cursor.json"
    )
    shell.count_to(5)
    # ...but the next cycle trains on everything the champion has not seen.
    assert shell.step_spec(shell.job("loop-feedback-c2")).since_cursor_uri is None


def test_a_failed_resource_fails_the_cycle_not_the_loop() -> None:
    shell = Shell(loop_body())
    shell.step()
    shell.count_to(9)
    shell.finish(shell.job("loop-feedback-c1"), result("feedback", usedRecords=7))
    shell.step()
    shell.set_status("Dataset", "loop-c1", done_status("Dataset", "s3://store/ds/c1"))
    shell.set_status(
        "FinetuneJob", "loop-c1", failed_status("FinetuneJob", "OOMKilled", "out of memory")
    )
    shell.step()
    status = shell.status()
    record = status["history"][0]
    assert (record["phase"], record["reason"]) == ("Failed", "FinetuneJobFailed")
    assert "OOMKilled" in record["message"] and "out of memory" in record["message"]
    assert status["phase"] == "Ready" and status["champion"] == "s3://models/champ"
    assert ("Warning", "CycleFailed") in [(t, r) for t, r, _ in shell.events]


def test_a_failed_collect_fails_the_cycle() -> None:
    shell = Shell(loop_body())
    shell.step()
    shell.count_to(9)
    shell.fail(shell.job("loop-feedback-c1"), "InvalidCursor: cursor.json is not JSON")
    shell.step()
    record = shell.status()["history"][0]
    assert (record["phase"], record["reason"]) == ("Failed", "CollectFailed")
    assert "InvalidCursor" in record["message"]


def test_no_usable_feedback_ends_the_cycle_without_training() -> None:
    shell = Shell(loop_body())
    shell.step()
    shell.count_to(9)
    shell.finish(shell.job("loop-feedback-c1"), result("feedback", usedRecords=0))
    shell.step()
    assert shell.owned == {}
    assert shell.status()["history"][0]["reason"] == "NoNewFeedback"


def test_a_challenger_compared_with_a_replaced_champion_is_stale() -> None:
    shell = Shell(loop_body(maxConcurrentRuns=2))
    shell.step()
    shell.count_to(9)
    shell.finish(shell.job("loop-feedback-c1"), result("feedback", usedRecords=7))
    shell.step()
    shell.now += timedelta(seconds=INTERVAL)
    shell.step()
    shell.count_to(6)  # a second cycle starts while the first trains
    assert shell.status()["activeRuns"] == ["c1", "c2"]
    shell.run_cycle(2)  # c2 finishes first and is promoted
    assert shell.status()["championCycle"] == 2
    for kind in ("Dataset", "FinetuneJob", "Compression"):
        shell.set_status(kind, "loop-c1", done_status(kind, f"s3://x/{kind}/c1"))
    shell.set_status("Evaluation", "loop-c1", done_status("Evaluation", "s3://ev/c1", passed=True))
    shell.step()
    assert shell.status()["history"][0]["reason"] == "Stale"
    assert shell.status()["championCycle"] == 2


# --- schedule, drift, suspend ------------------------------------------------------------


def test_a_schedule_starts_a_cycle_and_skips_times_that_come_while_busy() -> None:
    body = loop_body(triggers={"schedule": "0 * * * *"})
    shell = Shell(body)
    shell.step()
    assert shell.jobs == {}
    assert shell.last is not None and shell.last.requeue_after is not None
    assert shell.last.requeue_after == pytest.approx(3600 - 5, abs=1)
    shell.now = T0.replace(hour=15, minute=0, second=30)  # 13:00, 14:00, 15:00 were missed
    shell.step()
    assert shell.status()["activeRuns"] == ["c1"]
    assert shell.status()["lastScheduleTime"].startswith("2026-03-02T15:00:00")
    shell.now += timedelta(hours=1)
    shell.step()
    assert shell.status()["activeRuns"] == ["c1"]
    assert shell.status()["lastScheduleTime"].startswith("2026-03-02T16:00:00")
    assert "ScheduleSkipped" in reasons(shell)


def test_drift_rescores_the_champion_and_retrains_below_the_threshold() -> None:
    body = loop_body(triggers={"drift": {"metric": "tokenF1", "below": 0.5}})
    shell = Shell(body)
    shell.step()
    checks = [k for k in shell.owned if k[1].startswith("loop-drift-")]
    assert len(checks) == 1
    spec = shell.owned[checks[0]]["spec"]
    assert spec["candidate"] == {"uri": "s3://models/champ"}
    assert "gates" not in spec and "baseline" not in spec
    assert {m["name"] for m in spec["metrics"]} == {"rougeL", "tokenF1"}
    KIND_INFO["Evaluation"].model.model_validate(shell.owned[checks[0]])
    shell.set_status(
        "Evaluation", checks[0][1], done_status("Evaluation", "u", results={"tokenF1": 0.7})
    )
    shell.step()
    assert shell.status()["driftScore"] == 0.7 and shell.status()["cycles"] == 0
    shell.now += timedelta(seconds=INTERVAL)
    shell.step()
    checks = sorted(k for k in shell.owned if k[1].startswith("loop-drift-"))
    assert len(checks) == 1 and checks[0] not in shell.deleted  # the older one was deleted
    shell.set_status(
        "Evaluation", checks[0][1], done_status("Evaluation", "u", results={"tokenF1": 0.3})
    )
    shell.step()
    assert shell.status()["cycles"] == 1
    assert any("champion tokenF1 0.3 is below 0.5" in m for _t, _r, m in shell.events)


def test_suspend_starts_nothing_new() -> None:
    shell = Shell(loop_body(suspend=True))
    shell.step()
    assert shell.jobs == {}
    assert shell.status()["phase"] == "Suspended"
    assert "suspended" in shell.condition("Cycling")["message"]


# --- bookkeeping -------------------------------------------------------------------------


def test_cycles_beyond_the_history_limit_are_deleted() -> None:
    shell = Shell(loop_body(historyLimit=1, promotion={"mode": "status"}))
    shell.step()
    shell.count_to(9)
    shell.run_cycle(1)
    shell.now += timedelta(seconds=INTERVAL)
    shell.step()
    shell.count_to(5)
    shell.run_cycle(2)
    assert [r["runId"] for r in shell.status()["history"]] == ["c2"]
    assert ("FinetuneJob", "loop-c1") in shell.deleted
    assert ("Job", "loop-feedback-c1") in shell.deleted
    assert ("FinetuneJob", "loop-c2") in shell.owned
    assert shell.status()["generation"] == 2


def test_a_cycle_whose_status_write_was_lost_is_adopted() -> None:
    shell = Shell(loop_body())
    shell.step()
    shell.count_to(9)
    # Forget the status written with the cycle start: the collect Job remains.
    shell.loop = FeedbackLoop.model_validate(loop_body())
    shell.step()
    assert shell.status()["activeRuns"] == ["c1"]
    assert shell.status()["cycles"] == 1
    assert len([j for j in shell.jobs if j.startswith("loop-feedback-c")]) == 1


def test_an_evaluation_without_its_verdict_yet_is_not_judged() -> None:
    shell = Shell(loop_body())
    shell.step()
    shell.count_to(9)
    shell.finish(shell.job("loop-feedback-c1"), result("feedback", usedRecords=7))
    shell.step()
    for kind in ("Dataset", "FinetuneJob", "Compression"):
        shell.set_status(kind, "loop-c1", done_status(kind, f"s3://x/{kind}/c1"))
    verdictless = done_status("Evaluation", "s3://ev/c1", completionTime=T0.isoformat())
    shell.set_status("Evaluation", "loop-c1", verdictless)
    shell.step()
    assert shell.status()["activeRuns"] == ["c1"]
    assert "waiting for its gate verdict" in shell.condition("Cycling")["message"]
    shell.now += timedelta(hours=1)
    shell.step()
    record = shell.status()["history"][0]
    assert (record["phase"], record["reason"]) == ("Failed", "EvaluationFailed")


def test_a_new_trigger_annotation_starts_one_cycle_when_one_may_start() -> None:
    body = loop_body(triggers={"schedule": "0 3 * * 1"})
    shell = Shell(body)
    shell.step()
    assert shell.jobs == {}
    annotated = shell.loop.body()
    annotated["metadata"]["annotations"] = {"kubetune.dev/trigger": "2026-03-02T12:30"}
    shell.loop = FeedbackLoop.model_validate(annotated)
    shell.step()
    assert shell.status()["activeRuns"] == ["c1"]
    assert shell.status()["lastManualTrigger"] == "2026-03-02T12:30"
    assert any("kubetune.dev/trigger=2026-03-02T12:30" in m for _t, _r, m in shell.events)
    shell.run_cycle(1)
    shell.step()
    assert shell.status()["cycles"] == 1  # the same value does not start another cycle

    busy = Shell(loop_body(suspend=True))
    suspended = busy.loop.body()
    suspended["metadata"]["annotations"] = {"kubetune.dev/trigger": "now"}
    busy.loop = FeedbackLoop.model_validate(suspended)
    busy.step()
    assert busy.jobs == {} and busy.status()["lastManualTrigger"] is None  # kept for later
    resumed = busy.loop.body()
    resumed["spec"]["suspend"] = False
    busy.loop = FeedbackLoop.model_validate(resumed)
    busy.step()
    assert busy.status()["cycles"] == 1 and busy.status()["lastManualTrigger"] == "now"


# --- human approval ------------------------------------------------------------------------


def annotate(shell: Shell, **annotations: str) -> None:
    body = shell.loop.body()
    body["metadata"]["annotations"] = {f"kubetune.dev/{k}": v for k, v in annotations.items()}
    shell.loop = FeedbackLoop.model_validate(body)


def manual(timeout: int | None = None) -> Shell:
    promotion = {**loop_body()["spec"]["promotion"], "approval": "manual"}
    if timeout is not None:
        promotion["approvalTimeoutSeconds"] = timeout
    shell = Shell(loop_body(promotion=promotion))
    shell.step()
    shell.count_to(9)
    return shell


def finish_evaluation(shell: Shell, number: int) -> None:
    """Run cycle ``number`` to a passed evaluation that completed at ``shell.now``."""
    shell.finish(shell.job(f"loop-feedback-c{number}"), result("feedback", usedRecords=7))
    collect = shell.jobs[f"loop-feedback-c{number}"]
    pod = ObservedPod(
        "p",
        "Succeeded",
        termination_message=StepResult(
            step="feedback",
            ok=True,
            reason="Collected",
            output_uri=f"s3://store/ml/feedbackloop/loop/c{number}",
            metrics={"usedRecords": 7.0},
        ).termination_message(),
    )
    shell.jobs[collect.name] = ObservedJob(
        collect.name,
        collect.run_id,
        succeeded=1,
        conditions=({"type": "Complete", "status": "True"},),
        pods=(pod,),
    )
    shell.step()
    name = f"loop-c{number}"
    for kind in ("Dataset", "FinetuneJob", "Compression"):
        shell.set_status(kind, name, done_status(kind, f"s3://out/{kind.lower()}/{name}"))
    evaluation = done_status(
        "Evaluation",
        f"s3://store/ev/{name}",
        passed=True,
        results={"rougeL": 0.4},
        reportUri=f"s3://store/ev/{name}/report.html",
        completionTime=shell.now.isoformat(),
    )
    shell.set_status("Evaluation", name, evaluation)
    shell.step()


def test_manual_approval_waits_then_the_annotation_promotes() -> None:
    shell = manual()
    finish_evaluation(shell, 1)
    status = shell.status()
    assert status["champion"] == "s3://models/champ" and shell.patches == []
    assert status["activeRuns"] == ["c1"] and status["phase"] == "Running"
    assert shell.condition("Cycling")["reason"] == "AwaitingApproval"
    waiting = shell.condition("AwaitingApproval")
    assert (waiting["status"], waiting["reason"]) == ("True", "GatesPassed")
    assert "kubectl annotate ktfl/loop kubetune.dev/approve=c1" in waiting["message"]
    [request] = status["awaitingApproval"]
    assert request["runId"] == "c1" and request["evaluation"] == "loop-c1"
    assert request["challenger"] == "s3://out/compression/loop-c1"
    assert request["reportUri"] == "s3://store/ev/loop-c1/report.html"
    assert request["feedbackUri"] == "s3://store/ml/feedbackloop/loop/c1/feedback.jsonl"
    assert "deadline" not in request
    assert reasons(shell).count("AwaitingApproval") == 1
    shell.now += timedelta(days=3)
    shell.step()  # waiting announces nothing new and starts no other cycle
    assert reasons(shell).count("AwaitingApproval") == 1 and shell.status()["cycles"] == 1
    annotate(shell, approve="c0")  # another cycle's approval does nothing
    shell.step()
    assert shell.status()["activeRuns"] == ["c1"]
    annotate(shell, approve="c1")
    shell.step()
    status = shell.status()
    assert status["champion"] == "s3://out/compression/loop-c1" and status["championCycle"] == 1
    assert status["history"][0]["reason"] == "Promoted"
    assert "approved" in status["history"][0]["message"]
    assert status["awaitingApproval"] is None
    assert shell.condition("AwaitingApproval")["status"] == "False"
    assert len(shell.patches) == 1 and "Promoted" in reasons(shell)


def test_manual_approval_reject_annotation_rejects() -> None:
    shell = manual()
    finish_evaluation(shell, 1)
    annotate(shell, reject="c1", approve="c1")  # reject wins over a stale approve
    shell.step()
    status = shell.status()
    assert status["champion"] == "s3://models/champ" and shell.patches == []
    assert status["history"][0]["reason"] == "Rejected"
    assert "kubetune.dev/reject=c1" in status["history"][0]["message"]
    assert "CycleRejected" in reasons(shell)


def test_manual_approval_times_out_into_a_rejection() -> None:
    shell = manual(timeout=3600)
    finish_evaluation(shell, 1)
    [request] = shell.status()["awaitingApproval"]
    assert request["deadline"].startswith((shell.now + timedelta(hours=1)).isoformat()[:19])
    assert shell.last is not None and shell.last.requeue_after is not None
    assert shell.last.requeue_after <= 3600
    shell.now += timedelta(minutes=59)
    shell.step()
    assert shell.status()["activeRuns"] == ["c1"]
    shell.now += timedelta(minutes=2)
    shell.step()
    status = shell.status()
    assert status["history"][0]["reason"] == "Rejected"
    assert "not approved within 3600s" in status["history"][0]["message"]
    assert status["champion"] == "s3://models/champ" and shell.patches == []


def test_approval_fields_reach_the_crd() -> None:
    body = loop_body(
        promotion={"mode": "status", "approval": "manual", "approvalTimeoutSeconds": 60}
    )
    assert validate_against_crd(body) == []
    bad = loop_body(promotion={"mode": "status", "approval": "sometimes"})
    assert validate_against_crd(bad) != []
