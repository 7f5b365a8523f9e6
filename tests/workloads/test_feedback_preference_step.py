"""The feedback step for a loop with a preference stage: pairs, corrections and thumbs become
preference records (paired, and unpaired for KTO) that dataprep's schema ``preference`` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune.api.steps import (
    FEEDBACK_FILE,
    PREFERENCE_PAIRS_FILE,
    PREFERENCE_UNPAIRED_FILE,
    DataprepStepSpec,
    FeedbackStepSpec,
)
from kubetune_workloads.__main__ import run_step
from kubetune_workloads.datasetio import open_dataset

from tests.workloads.test_feedback_step import PRODUCER, append, read_jsonl, run_spec

ROWS: list[dict[str, Any]] = [
    # a pair
    {"prompt": "p1", "response": "r1", "chosen": "good answer 1", "rejected": "bad answer 1"},
    # a correction preferred to the response
    {"prompt": "p2", "response": "wrong 2", "correction": "right 2"},
    # thumbs: numeric, boolean and word ratings
    {"prompt": "p3", "response": "fine 3", "rating": 1},
    {"prompt": "p4", "response": "poor 4", "rating": 0},
    {"prompt": "p5", "response": "fine 5", "rating": True},
    {"prompt": "p6", "response": "poor 6", "rating": "thumbs_down"},
    # no signal: no rating, no pair
    {"prompt": "p7", "response": "plain 7"},
    # a pair whose answers are equal teaches nothing
    {"prompt": "p8", "response": "r8", "chosen": "same", "rejected": "same"},
]


def spec(src: Path, out: Path, preference: bool, **source: Any) -> FeedbackStepSpec:
    return FeedbackStepSpec.model_validate(
        {
            "producer": PRODUCER,
            "outputUri": f"file://{out}",
            "mode": "collect",
            "source": {"uri": f"file://{src}", **source},
            "recordSchema": "instruction",
            "preference": preference,
        }
    )


def test_pairs_corrections_and_thumbs_become_preference_records(tmp_path: Path) -> None:
    src = append(tmp_path / "src" / "f.jsonl", list(ROWS)).parent
    result = run_spec(tmp_path, spec(src, tmp_path / "out", True))
    assert result.ok, result.message
    metrics = result.metrics
    assert (metrics["pairedRecords"], metrics["desirableRecords"]) == (2, 2)
    assert metrics["undesirableRecords"] == 2
    pairs = read_jsonl(tmp_path / "out" / PREFERENCE_PAIRS_FILE)
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("p1", "good answer 1", "bad answer 1"),
        ("p2", "right 2", "wrong 2"),
    ]
    assert pairs[0]["feedback_source"] == "f.jsonl:1"
    unpaired = read_jsonl(tmp_path / "out" / PREFERENCE_UNPAIRED_FILE)
    assert [(u["prompt"], u["completion"], u["label"]) for u in unpaired] == [
        ("p1", "good answer 1", True),
        ("p1", "bad answer 1", False),
        ("p2", "right 2", True),
        ("p2", "wrong 2", False),
        ("p3", "fine 3", True),
        ("p4", "poor 4", False),
        ("p5", "fine 5", True),
        ("p6", "poor 6", False),
    ]
    # The supervised records are what they are without a preference stage (p6's thumbs down
    # is not trained on by SFT; KTO uses it, so it counts as used).
    assert len(read_jsonl(tmp_path / "out" / FEEDBACK_FILE)) == 7
    assert metrics["usedRecords"] == 8


def test_min_rating_is_the_thumbs_threshold_and_low_rated_answers_still_count(
    tmp_path: Path,
) -> None:
    rows = [
        {"prompt": f"q{i}", "response": f"answer {i}", "rating": stars}
        for i, stars in enumerate([5, 4, 2, 1])
    ]
    src = append(tmp_path / "src" / "f.jsonl", list(rows)).parent
    result = run_spec(tmp_path, spec(src, tmp_path / "out", True, minRating=4))
    assert result.ok, result.message
    labels = [u["label"] for u in read_jsonl(tmp_path / "out" / PREFERENCE_UNPAIRED_FILE)]
    assert labels == [True, True, False, False]
    # Rated below minRating: not trained on by SFT, but usable by KTO, so counted as used.
    assert len(read_jsonl(tmp_path / "out" / FEEDBACK_FILE)) == 2
    assert (result.metrics["lowRating"], result.metrics["usedRecords"]) == (2, 4)
    count = spec(src, tmp_path / "unused", True, minRating=4).model_copy(update={"mode": "count"})
    assert run_spec(tmp_path, count).metrics["pendingRecords"] == 4


def test_without_a_preference_stage_nothing_changes(tmp_path: Path) -> None:
    src = append(tmp_path / "src" / "f.jsonl", list(ROWS)).parent
    result = run_spec(tmp_path, spec(src, tmp_path / "out", False))
    assert result.ok, result.message
    assert not (tmp_path / "out" / PREFERENCE_PAIRS_FILE).exists()
    assert "pairedRecords" not in result.metrics
    # p6's "thumbs_down" rating is a thumbs label: not trained on (p4's 0 is a number: no
    # minRating, so it is)
    assert (result.metrics["usedRecords"], result.metrics["lowRating"]) == (7, 1)


def test_dataprep_reads_both_preference_files(tmp_path: Path) -> None:
    src = append(tmp_path / "src" / "f.jsonl", list(ROWS)).parent
    assert run_spec(tmp_path, spec(src, tmp_path / "fb", True)).ok
    for name, expected in ((PREFERENCE_PAIRS_FILE, 2), (PREFERENCE_UNPAIRED_FILE, 8)):
        out = tmp_path / name
        step = DataprepStepSpec.model_validate(
            {
                "producer": {"kind": "Dataset", "name": "p", "namespace": "default", "runId": "r"},
                "outputUri": f"file://{out}",
                "spec": {
                    "sources": [{"uri": f"file://{tmp_path / 'fb' / name}"}],
                    "schema": "preference",
                    "split": {"validationFraction": 0.0},
                    "cleaning": {
                        "exactDedup": False,
                        "nearDedup": {"enabled": False},
                        "quality": {"enabled": False},
                    },
                },
            }
        )
        spec_file = tmp_path / f"{name}.json"
        spec_file.write_text(step.to_json())
        result = run_step("dataprep", spec_file)
        assert result.ok, result.message
        train = list(open_dataset(out).records("train"))
        assert len(train) == expected, json.dumps(train)[:500]
