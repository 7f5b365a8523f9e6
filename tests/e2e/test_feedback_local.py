"""A FeedbackLoop under `kubetune run`: a cycle, promotion, nothing new, then cycle c2.

The loop is the example in examples/feedback-local with its feedback file, shrunk to run in
about a minute: a tiny from-scratch champion on a 40-record Dataset, a few training steps per
cycle, and a gate any challenger passes, so promotion is deterministic.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_local_run import kubetune, state, status_of

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "feedback-local"
LOOP = "support-assistant-loop"
# the example's store is data/feedback/; the loop reads only its own folder, STORE/NS/LOOP
LOOP_FOLDER = Path("data") / "feedback" / "default" / LOOP
FEEDBACK = EXAMPLE / LOOP_FOLDER / "batch-1.jsonl"
TARGET = "Deployment/support-assistant-server"
USABLE_IN_BATCH = 52  # what the generator's docstring promises: 60 records, 8 low-rated


def generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "generate_feedback", EXAMPLE / "data" / "generate_feedback.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_manifests(root: Path) -> Path:
    """The example's loop over a tiny champion, in ``root``; returns the manifest directory."""
    manifests = root / "m"
    (manifests / LOOP_FOLDER).mkdir(parents=True)
    shutil.copy(FEEDBACK, manifests / LOOP_FOLDER / FEEDBACK.name)
    # another loop's feedback in the same store, which this loop must not read
    other = manifests / "data" / "feedback" / "default" / "other-loop"
    other.mkdir(parents=True)
    shutil.copy(FEEDBACK, other / FEEDBACK.name)
    feedback = [json.loads(line) for line in FEEDBACK.read_text().splitlines()]
    tickets = [
        {"instruction": r["prompt"], "input": "", "output": r["correction"] or r["response"]}
        for r in feedback[:40]
    ]
    (manifests / "data" / "tickets.jsonl").write_text(
        "".join(json.dumps(t) + "\n" for t in tickets)
    )
    loop = yaml.safe_load((EXAMPLE / "feedback-loop.yaml").read_text())
    spec = loop["spec"]
    assert spec["feedback"]["uri"].rstrip("/") == f"file://{LOOP_FOLDER.as_posix()}"
    spec["promotion"]["approval"] = "auto"  # the example asks a person; tests choose
    spec["baseDataset"] = {"name": "tickets"}
    spec["champion"] = {"kind": "FinetuneJob", "name": "tune"}
    spec["finetune"] = {
        "objective": "instruction",
        "method": "full",
        "hyperparameters": {"maxSteps": 4, "batchSize": 4, "maxSeqLength": 128, "seed": 7},
    }
    spec["evaluation"] = {
        "prompts": {"dataset": {"name": "tickets"}, "limit": 4},
        "metrics": [{"name": "rougeL"}, {"name": "offensiveRate"}],
        "generation": {"maxNewTokens": 8},
        "bootstrapSamples": 10,
        "gates": [{"metric": "rougeL", "maxRegression": 1.0}],  # any challenger passes
    }
    pipeline = f"""
apiVersion: kubetune.dev/v1alpha1
kind: Dataset
metadata: {{name: tickets}}
spec:
  sources: [{{uri: "file://data/tickets.jsonl"}}]
  schema: instruction
  cleaning: {{exactDedup: false, nearDedup: {{enabled: false}}, quality: {{enabled: false}}}}
  tokenizer: {{train: {{type: char}}}}
  split: {{validationFraction: 0.1, seed: 7}}
---
apiVersion: kubetune.dev/v1alpha1
kind: FinetuneJob
metadata: {{name: tune}}
spec:
  model: {{architecture: {{family: llama, layers: 2, hiddenSize: 64, heads: 4,
                            contextLength: 256}}}}
  dataset: {{name: tickets}}
  objective: instruction
  method: full
  hyperparameters: {{maxSteps: 10, batchSize: 4, maxSeqLength: 128, seed: 7}}
---
{yaml.safe_dump(loop, sort_keys=False)}"""
    (manifests / "pipeline.yaml").write_text(pipeline)
    return manifests


def run(manifests: Path, workdir: Path) -> str:
    result = kubetune("run", "-f", str(manifests), "--workdir", str(workdir), timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def resources(workdir: Path) -> dict[str, Any]:
    found: dict[str, Any] = state(workdir)["resources"]
    return found


@pytest.mark.slow
def test_feedback_loop_cycles_promotes_and_waits_for_new_records(tmp_path: Path) -> None:
    manifests = tiny_manifests(tmp_path)
    workdir = tmp_path / "work"

    # 1. The champion is trained, the feedback counted, and cycle c1 runs and is promoted.
    out = run(manifests, workdir)
    loop = status_of(workdir, f"FeedbackLoop/{LOOP}")
    assert loop["phase"] == "Ready", loop
    assert loop["cycles"] == 1 and loop["generation"] == 1
    assert loop["pendingRecords"] == 0
    (c1,) = loop["history"]
    assert (c1["runId"], c1["reason"]) == ("c1", "Promoted"), c1
    assert c1["results"]["records"] == USABLE_IN_BATCH
    c1_model = status_of(workdir, f"FinetuneJob/{LOOP}-c1")["outputUri"]
    assert loop["champion"] == c1_model and loop["championCycle"] == 1
    stored = resources(workdir)
    for kind in ("Dataset", "FinetuneJob", "Evaluation"):
        body = stored[f"{kind}/{LOOP}-c1"]["body"]
        (owner,) = body["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("FeedbackLoop", LOOP, True)
        assert body["metadata"]["labels"]["kubetune.dev/cycle"] == "1"
    tune = status_of(workdir, "FinetuneJob/tune")["outputUri"]
    challenger = stored[f"FinetuneJob/{LOOP}-c1"]["body"]["spec"]
    assert challenger["model"]["from"]["uri"] == tune
    assert status_of(workdir, f"Dataset/{LOOP}-c1")["records"] > 40  # base + feedback
    evaluation = status_of(workdir, f"Evaluation/{LOOP}-c1")
    assert evaluation["passed"] is True
    # The promotion target is outside the store: recorded and reported, not applied.
    patched = state(workdir)["patched"][TARGET]
    assert patched["spec"]["template"]["metadata"]["annotations"]["model-uri"] == c1_model
    assert f"would patch {TARGET}" in out and "(no cluster)" in out
    assert f"champion: {c1_model} (cycle c1)" in out

    # 2. Nothing new: the rerun counts the feedback again and starts nothing else.
    before = state(workdir)["executions"]
    out = run(manifests, workdir)
    after = state(workdir)["executions"]
    new = set(after) - set(before)
    assert all(name.startswith(f"{LOOP}-feedback-s1-") for name in new), new
    assert status_of(workdir, f"FeedbackLoop/{LOOP}")["cycles"] == 1
    assert not any(key.endswith("-c2") for key in resources(workdir))
    assert "would patch" not in out

    # 3. New feedback arrives: the next run starts cycle c2 from the c1 champion.
    batch = [json.dumps(r) + "\n" for r in generator().records(2)]
    (manifests / LOOP_FOLDER / "batch-2.jsonl").write_text("".join(batch))
    out = run(manifests, workdir)
    loop = status_of(workdir, f"FeedbackLoop/{LOOP}")
    assert loop["cycles"] == 2 and loop["generation"] == 2, loop
    assert [h["runId"] for h in loop["history"]] == ["c2", "c1"]
    assert loop["history"][0]["results"]["records"] == USABLE_IN_BATCH
    c2 = resources(workdir)[f"FinetuneJob/{LOOP}-c2"]["body"]["spec"]
    assert c2["model"]["from"]["uri"] == c1_model
    c2_model = status_of(workdir, f"FinetuneJob/{LOOP}-c2")["outputUri"]
    assert loop["champion"] == c2_model and loop["championCycle"] == 2
    annotations = state(workdir)["patched"][TARGET]["spec"]["template"]["metadata"]
    assert annotations["annotations"]["model-uri"] == c2_model

    status = kubetune("status", "--workdir", str(workdir))
    assert status.returncode == 0
    assert "OWNER" in status.stdout and f"FeedbackLoop/{LOOP}" in status.stdout
    assert f"{TARGET} (no cluster, recorded only)" in status.stdout

    # 4. Run a cycle by hand: a new trigger annotation, with no new feedback, starts c3, which
    #    collects nothing and ends without training; the same value does not run it again.
    pipeline = manifests / "pipeline.yaml"
    docs = list(yaml.safe_load_all(pipeline.read_text()))
    docs[-1]["metadata"]["annotations"] = {"kubetune.dev/trigger": "by-hand-1"}
    pipeline.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    run(manifests, workdir)
    loop = status_of(workdir, f"FeedbackLoop/{LOOP}")
    assert (loop["cycles"], loop["lastManualTrigger"]) == (3, "by-hand-1"), loop
    assert (loop["history"][0]["runId"], loop["history"][0]["reason"]) == ("c3", "NoNewFeedback")
    assert loop["champion"] == c2_model
    run(manifests, workdir)
    assert status_of(workdir, f"FeedbackLoop/{LOOP}")["cycles"] == 3


def set_promotion(manifests: Path, **promotion: Any) -> None:
    pipeline = manifests / "pipeline.yaml"
    docs = list(yaml.safe_load_all(pipeline.read_text()))
    docs[-1]["spec"]["promotion"].update(promotion)
    pipeline.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def add_batch(manifests: Path, number: int) -> None:
    batch = [json.dumps(r) + "\n" for r in generator().records(number)]
    (manifests / LOOP_FOLDER / f"batch-{number}.jsonl").write_text("".join(batch))


@pytest.mark.slow
def test_manual_approval_approve_reject_and_timeout_under_kubetune_run(tmp_path: Path) -> None:
    manifests = tiny_manifests(tmp_path)
    set_promotion(manifests, approval="manual")
    workdir = tmp_path / "work"

    # 1. c1 passes its gates and waits: the run ends (exit 0) with the loop awaiting approval.
    out = run(manifests, workdir)
    loop = status_of(workdir, f"FeedbackLoop/{LOOP}")
    assert loop["activeRuns"] == ["c1"] and loop.get("championCycle") is None, loop
    (request,) = loop["awaitingApproval"]
    assert request["runId"] == "c1" and request["reportUri"].endswith("report.html")
    assert Path(request["feedbackUri"].removeprefix("file://")).is_file()
    hint = f"kubetune approve {LOOP} c1 --workdir {shlex.quote(str(workdir.resolve()))}"
    assert f"c1 awaits approval: `{hint}`" in out, out[-3000:]
    assert TARGET not in state(workdir)["patched"]
    events = [e.get("reason") for e in state(workdir)["events"]]
    assert "AwaitingApproval" in events
    assert kubetune("approve", LOOP, "c2", "--workdir", str(workdir)).returncode == 1
    approved = kubetune("approve", LOOP, "c1", "--workdir", str(workdir))
    assert approved.returncode == 0, approved.stderr
    run(manifests, workdir)  # the manifest does not carry the annotation: it stays
    loop = status_of(workdir, f"FeedbackLoop/{LOOP}")
    assert (loop["history"][0]["runId"], loop["history"][0]["reason"]) == ("c1", "Promoted")
    assert loop["championCycle"] == 1 and not loop.get("awaitingApproval")
    assert TARGET in state(workdir)["patched"]

    # 2. New feedback: c2 waits and is rejected; the champion stays.
    add_batch(manifests, 2)
    run(manifests, workdir)
    assert status_of(workdir, f"FeedbackLoop/{LOOP}")["awaitingApproval"][0]["runId"] == "c2"
    rejected = kubetune("approve", LOOP, "c2", "--reject", "--workdir", str(workdir))
    assert rejected.returncode == 0, rejected.stderr
    run(manifests, workdir)
    loop = status_of(workdir, f"FeedbackLoop/{LOOP}")
    assert (loop["history"][0]["runId"], loop["history"][0]["reason"]) == ("c2", "Rejected")
    assert "kubetune.dev/reject=c2" in loop["history"][0]["message"]
    assert loop["championCycle"] == 1

    # 3. With a timeout nobody meets, c3 is rejected once it has passed.
    set_promotion(manifests, approvalTimeoutSeconds=1)
    add_batch(manifests, 3)
    run(manifests, workdir)
    time.sleep(1.5)
    run(manifests, workdir)
    loop = status_of(workdir, f"FeedbackLoop/{LOOP}")
    assert (loop["history"][0]["runId"], loop["history"][0]["reason"]) == ("c3", "Rejected")
    assert "not approved within 1s" in loop["history"][0]["message"]
    assert loop["championCycle"] == 1 and loop["phase"] == "Ready"
