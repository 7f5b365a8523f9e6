"""Thumbs up/down posted to the real collector reach a loop with a 1-5 rating scale intact: the
collector keeps the label, the loop's feedback step (collect and count, through the workload
entry point) trains on the ups and drops the downs whatever its ``minRating``, and a preference
stage labels the ups desirable and the downs undesirable."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from kubetune.api.steps import FEEDBACK_FILE, PREFERENCE_UNPAIRED_FILE, FeedbackStepSpec, StepResult
from kubetune_workloads.__main__ import run_step

from tests.helpers.collector import TOKEN, CollectorProcess

PRODUCER = {"kind": "FeedbackLoop", "name": "support", "namespace": "default", "runId": "c1"}
POSTED: list[dict[str, Any]] = [
    {"id": "up-1", "prompt": "q up 1", "response": "good 1", "thumbs": "up"},
    {"id": "up-2", "prompt": "q up 2", "response": "good 2", "thumbs": "up", "rating": 1},
    {"id": "down-1", "prompt": "q down 1", "response": "bad 1", "thumbs": "down"},
    {"id": "down-2", "prompt": "q down 2", "response": "bad 2", "thumbs": "down", "rating": 5},
    {"id": "stars-5", "prompt": "q stars 5", "response": "fine 5", "rating": 5},
    {"id": "stars-1", "prompt": "q stars 1", "response": "poor 1", "rating": 1},
    # an OpenAI pair with a thumbs up, as a gateway logs it
    {
        "id": "oa-up",
        "request": {"messages": [{"role": "user", "content": "q oa"}]},
        "response": {"choices": [{"message": {"content": "good oa"}}]},
        "thumbs": "up",
    },
]
# a line an older collector wrote (thumbs squashed to 1/0): read as before, a number; and a
# line an application wrote by hand with a thumbs word as its rating: a label, like thumbs
OLD_LINES = [
    {"id": "old-up", "prompt": "q old", "response": "old answer", "rating": 1},
    {"id": "word-down", "prompt": "q word", "response": "word answer", "rating": "thumbs_down"},
]


def post_all(process: CollectorProcess) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{process.url}/v1/feedback/default/support",
        data="".join(json.dumps(r) + "\n" for r in POSTED).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def step(tmp_path: Path, uri: Path, out: Path, mode: str, **source: Any) -> StepResult:
    spec = FeedbackStepSpec.model_validate(
        {
            "producer": PRODUCER,
            "outputUri": f"file://{out}",
            "mode": mode,
            "source": {"uri": f"file://{uri}", **source},
            "recordSchema": "instruction",
            "preference": True,
        }
    )
    spec_file = tmp_path / f"{out.name}-{mode}.json"
    spec_file.write_text(spec.to_json())
    return run_step("feedback", spec_file)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_thumbs_are_a_label_the_loop_reads_whatever_its_min_rating(tmp_path: Path) -> None:
    process = CollectorProcess(tmp_path)
    process.start()
    try:
        assert post_all(process) == {"accepted": len(POSTED), "duplicates": 0}
    finally:
        process.stop()
    prefix = process.store / "default" / "support"
    lines = {
        row["id"]: row
        for segment in prefix.rglob("*.jsonl")
        for row in map(json.loads, segment.read_text().splitlines())
    }
    assert lines["up-1"]["thumbs"] == "up" and "rating" not in lines["up-1"]
    assert (lines["down-2"]["thumbs"], lines["down-2"]["rating"]) == ("down", 5)
    old = prefix / "older" / "segment.jsonl"
    old.parent.mkdir()
    old.write_text("".join(json.dumps(r) + "\n" for r in OLD_LINES))

    result = step(tmp_path, prefix, tmp_path / "c1", "collect", minRating=3)
    assert result.ok, result.message
    trained = {r["instruction"]: r["output"] for r in read_jsonl(tmp_path / "c1" / FEEDBACK_FILE)}
    # ups (even beside a low rating) are trained on; downs (even beside a 5) are not
    assert trained == {
        "q up 1": "good 1",
        "q up 2": "good 2",
        "q stars 5": "fine 5",
        "q oa": "good oa",
    }
    # down-1, down-2, stars-1, old-up (a 1 as before), word-down
    assert result.metrics["lowRating"] == 5
    labels = {
        u["prompt"]: u["label"] for u in read_jsonl(tmp_path / "c1" / PREFERENCE_UNPAIRED_FILE)
    }
    assert labels == {
        "q up 1": True,
        "q up 2": True,
        "q down 1": False,
        "q down 2": False,
        "q stars 5": True,
        "q stars 1": False,
        "q oa": True,
        "q old": False,
        "q word": False,
    }
    assert (result.metrics["desirableRecords"], result.metrics["undesirableRecords"]) == (4, 5)

    # without minRating a thumbs down is still not trained on; count agrees with collect
    unset = step(tmp_path, prefix, tmp_path / "c2", "collect")
    assert unset.ok, unset.message
    prompts = {r["instruction"] for r in read_jsonl(tmp_path / "c2" / FEEDBACK_FILE)}
    assert not {"q down 1", "q down 2", "q word"} & prompts
    assert {"q up 1", "q up 2", "q stars 1", "q old"} <= prompts  # numbers as before
    count = step(tmp_path, prefix, tmp_path / "unused", "count", minRating=3)
    assert count.ok and count.metrics["pendingRecords"] == result.metrics["usedRecords"]
