"""Schema preference through the dataprep step: pairs and unpaired (KTO) records, PII redacted
in every part, dedup on prompt + chosen, identical pairs dropped and counted; the artifact
trains with objective preference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubetune_workloads.dataprep import run
from kubetune_workloads.datasetio import open_dataset
from test_dataprep_run import make_step, write_jsonl

EMAIL = "jane.doe@example.com"


def _pairs(n: int) -> list[dict[str, Any]]:
    topics = ["password reset", "shared links", "storage quota", "sync conflicts", "billing"]
    return [
        {
            "question": f"Ticket {i}: how do I fix {topics[i % 5]} on account {i * 7919 % 1000}?",
            "good": f"Open Settings, choose {topics[i % 5]} and follow step {i} of the guide.",
            "bad": f"I cannot help with {topics[i % 5]}, ask someone else about case {i}.",
        }
        for i in range(n)
    ]


def test_pairs_are_cleaned_deduplicated_and_counted(tmp_path: Path) -> None:
    rows = _pairs(40)
    rows[0]["question"] += f" Write to {EMAIL}."
    rows[1]["good"] += f" Or mail {EMAIL}."
    rows[2]["bad"] += f" Contact {EMAIL}."
    rows.append({**rows[5], "bad": "A different rejected answer to the same pair."})  # dup
    rows.append({**rows[6], "bad": rows[6]["good"]})  # chosen == rejected
    source = write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "ds"
    fields = {"prompt": "question", "chosen": "good", "rejected": "bad"}
    result = run(
        make_step(out, [{"uri": f"file://{source}", "fields": fields}], schema="preference")
    )
    assert result.ok
    counts = result.details["stageCounts"]  # type: ignore[index]
    assert counts["schema.chosen_equals_rejected"] == 1
    assert counts["exact_dedup.duplicate"] == 1
    dataset = open_dataset(out)
    assert dataset.schema == "preference"
    records = dataset.records("train") + dataset.records("validation")
    assert len(records) == 40 and all(set(r) >= {"prompt", "chosen", "rejected"} for r in records)
    text = json.dumps(records)
    assert EMAIL not in text and text.count("<EMAIL>") == 3


def test_unpaired_feedback_with_labels_to_parquet(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = []
    for i, pair in enumerate(_pairs(20)):
        convo = [{"from": "human", "value": pair["question"]}]
        rows.append({"conversations": convo, "completion": pair["good"], "label": "desirable"})
        rows.append({"conversations": convo, "completion": pair["bad"], "label": i % 2 == 0})
    rows.append({"prompt": "Is this labelled?", "completion": "No.", "label": "maybe"})
    source = write_jsonl(tmp_path / "thumbs.jsonl", rows)
    out = tmp_path / "ds"
    step = make_step(
        out,
        [{"uri": f"file://{source}", "fields": {"messages": "conversations"}}],
        schema="preference",
        outputFormat="parquet",
    )
    result = run(step)
    assert result.ok
    assert result.details["stageCounts"]["schema.wrong_type"] == 1  # type: ignore[index]
    records = open_dataset(out).records("train") + open_dataset(out).records("validation")
    assert len(records) == 40
    assert {type(r["label"]) for r in records} == {bool}
    assert sum(r["label"] for r in records) == 30
    assert all(r["messages"][0]["role"] == "user" for r in records)


def test_a_prepared_preference_dataset_trains_with_dpo(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from kubetune_workloads.finetune import run as finetune
    from test_finetune_support import save_base, step_spec

    source = write_jsonl(tmp_path / "pairs.jsonl", _pairs(30))
    fields = {"prompt": "question", "chosen": "good", "rejected": "bad"}
    data = tmp_path / "ds"
    assert run(
        make_step(data, [{"uri": f"file://{source}", "fields": fields}], schema="preference")
    ).ok
    base = save_base(tmp_path / "base")
    spec = {
        "objective": "preference",
        "method": "lora",
        "lora": {"r": 4},
        "preference": {"algorithm": "dpo"},
        "hyperparameters": {"maxSteps": 4, "batchSize": 4},
    }
    result = finetune(step_spec(tmp_path / "out", f"file://{data}", base, spec=spec))
    assert result.ok and "evalRewardAccuracy" in result.metrics
