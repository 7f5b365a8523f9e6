"""A FeedbackLoop's preference stage (``spec.training.preference``): which algorithm on which
data the planner chooses from what a cycle collected, the children it renders, the cycle's
stages and record, and bad combinations refused by the CRD rules and `kubetune validate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetune.api.resources import FeedbackLoop
from kubetune.cli import app
from kubetune.schema.crd_validation import validate_against_crd
from typer.testing import CliRunner

from tests.unit.test_plan_feedback import Shell, done_status, loop_body, result

PREFERENCE = {"preference": {"algorithm": "auto", "beta": 0.2}}


def start_cycle(shell: Shell, **collected: float) -> None:
    """Count enough records, start c1 and finish its collect Job with ``collected``."""
    shell.step()
    shell.count_to(6)
    collect = shell.job("loop-feedback-c1")
    assert shell.step_spec(collect).preference is True
    shell.finish(collect, result("feedback", usedRecords=7, **collected))
    shell.step()


def owned(shell: Shell) -> dict[tuple[str, str], dict[str, Any]]:
    return {key: body for key, body in shell.owned.items() if key[1].startswith("loop-c1")}


def valid(body: dict[str, Any]) -> None:
    errors = validate_against_crd(body)
    assert not errors, errors


def test_pairs_train_dpo_after_sft_and_the_record_shows_it() -> None:
    shell = Shell(loop_body(training=PREFERENCE))
    start_cycle(shell, pairedRecords=3, desirableRecords=2, undesirableRecords=1)
    assert sorted(owned(shell)) == [
        ("Compression", "loop-c1"),
        ("Dataset", "loop-c1"),
        ("Dataset", "loop-c1-pref"),
        ("Evaluation", "loop-c1"),
        ("FinetuneJob", "loop-c1"),
        ("FinetuneJob", "loop-c1-pref"),
    ]
    for body in owned(shell).values():
        valid(body)
    data = shell.owned[("Dataset", "loop-c1-pref")]
    assert data["metadata"]["labels"]["kubetune.dev/cycle-stage"] == "preference"
    assert data["spec"]["schema"] == "preference"
    (source,) = data["spec"]["sources"]  # the base Dataset is supervised: not mixed in
    assert source["uri"] == "s3://store/ml/feedbackloop/loop/c1/preference-pairs.jsonl"
    assert data["spec"]["safety"]["pii"]["kinds"] == ["email"]  # cleaned as the base Dataset
    tuned = shell.owned[("FinetuneJob", "loop-c1-pref")]["spec"]
    assert tuned["objective"] == "preference"
    assert tuned["preference"]["algorithm"] == "dpo" and tuned["preference"]["beta"] == 0.2
    assert tuned["model"] == {"from": {"kind": "FinetuneJob", "name": "loop-c1"}}
    assert tuned["dataset"] == {"name": "loop-c1-pref"} and tuned["method"] == "lora"
    assert tuned["hyperparameters"]["packing"] is False
    sft = shell.owned[("FinetuneJob", "loop-c1")]["spec"]
    assert sft["output"] == {"uri": "s3://out/challengers/c1"}
    assert tuned["output"] == {"uri": "s3://out/challengers/c1-pref"}  # not over the SFT model
    compression = shell.owned[("Compression", "loop-c1")]["spec"]
    assert compression["model"] == {"kind": "FinetuneJob", "name": "loop-c1-pref"}
    assert "preference: dpo after SFT on 3 pairs" in shell.condition("Cycling")["message"]

    shell.set_status("Dataset", "loop-c1", done_status("Dataset", "s3://store/ds/sft"))
    shell.set_status("FinetuneJob", "loop-c1", done_status("FinetuneJob", "s3://out/sft"))
    shell.step()
    assert shell.condition("Cycling")["reason"] == "PreparingPreferences"
    shell.set_status("Dataset", "loop-c1-pref", done_status("Dataset", "s3://store/ds/pref"))
    shell.step()
    assert shell.condition("Cycling")["reason"] == "PreferenceTuning"
    assert "FinetuneJob loop-c1-pref (dpo)" in shell.condition("Cycling")["message"]
    rewards = {"rewardAccuracy": 0.75, "rewardMargin": 0.4, "trainLoss": 0.5}
    tuned_status = done_status("FinetuneJob", "s3://out/pref", results=rewards)
    shell.set_status("FinetuneJob", "loop-c1-pref", tuned_status)
    shell.set_status("Compression", "loop-c1", done_status("Compression", "s3://store/cmp"))
    evaluation = done_status("Evaluation", "s3://ev", passed=True, results={"winRate": 0.8})
    shell.set_status("Evaluation", "loop-c1", evaluation)
    shell.step()
    status = shell.status()
    (record,) = status["history"]
    assert record["reason"] == "Promoted"
    assert "(trained: dpo after SFT on 3 pairs)" in record["message"]
    assert record["results"] == {
        "winRate": 0.8,
        "records": 7,
        "pairedRecords": 3,
        "desirableRecords": 2,
        "undesirableRecords": 1,
        "rewardAccuracy": 0.75,
        "rewardMargin": 0.4,
    }
    # The next cycle trains from the preference-tuned model (before compression).
    assert status["champion"] == "s3://store/cmp"
    assert status["championTrainingUri"] == "s3://out/pref"


def test_thumbs_only_feedback_trains_kto_on_the_unpaired_records() -> None:
    shell = Shell(loop_body(training=PREFERENCE, compression=None))
    start_cycle(shell, pairedRecords=0, desirableRecords=4, undesirableRecords=3)
    tuned = shell.owned[("FinetuneJob", "loop-c1-pref")]["spec"]
    assert tuned["preference"]["algorithm"] == "kto"
    (source,) = shell.owned[("Dataset", "loop-c1-pref")]["spec"]["sources"]
    assert source["uri"].endswith("/c1/preference-unpaired.jsonl")
    evaluation = shell.owned[("Evaluation", "loop-c1")]["spec"]
    assert evaluation["candidate"] == {"kind": "FinetuneJob", "name": "loop-c1-pref"}
    assert "kto after SFT on 7 unpaired records" in shell.condition("Cycling")["message"]
    for body in owned(shell).values():
        valid(body)


def test_no_pairs_and_no_ratings_train_the_supervised_stage_only() -> None:
    shell = Shell(loop_body(training=PREFERENCE))
    start_cycle(shell, pairedRecords=0, desirableRecords=0, undesirableRecords=0)
    assert sorted(k for k, _ in owned(shell)) == [
        "Compression",
        "Dataset",
        "Evaluation",
        "FinetuneJob",
    ]
    assert shell.owned[("Compression", "loop-c1")]["spec"]["model"]["name"] == "loop-c1"
    assert "no preference stage" in shell.condition("Cycling")["message"]


def test_a_paired_algorithm_without_pairs_skips_the_stage_and_kto_uses_split_pairs() -> None:
    ipo = {"preference": {"algorithm": "ipo"}}
    shell = Shell(loop_body(training=ipo))
    start_cycle(shell, pairedRecords=0, desirableRecords=5, undesirableRecords=5)
    assert ("FinetuneJob", "loop-c1-pref") not in shell.owned
    assert "ipo needs pairs and the cycle collected none" in shell.condition("Cycling")["message"]

    kto = {"preference": {"algorithm": "kto", "desirableWeight": 1.5}}
    shell = Shell(loop_body(training=kto))
    start_cycle(shell, pairedRecords=2, desirableRecords=1, undesirableRecords=0)
    tuned = shell.owned[("FinetuneJob", "loop-c1-pref")]["spec"]
    assert tuned["preference"]["algorithm"] == "kto"
    assert tuned["preference"]["desirableWeight"] == 1.5
    assert "kto after SFT on 5 unpaired records" in shell.condition("Cycling")["message"]


def test_instead_of_sft_trains_only_the_preference_stage_from_the_champion() -> None:
    training = {"preference": {"stage": "instead-of-sft", "hyperparameters": {"maxSteps": 3}}}
    shell = Shell(loop_body(training=training, compression=None))
    start_cycle(shell, pairedRecords=4, desirableRecords=0, undesirableRecords=0)
    assert sorted(owned(shell)) == [
        ("Dataset", "loop-c1-pref"),
        ("Evaluation", "loop-c1"),
        ("FinetuneJob", "loop-c1-pref"),
    ]
    assert shell.condition("Cycling")["reason"] == "PreparingPreferences"
    tuned = shell.owned[("FinetuneJob", "loop-c1-pref")]["spec"]
    assert tuned["model"] == {"from": {"uri": "s3://models/champ"}}
    assert tuned["hyperparameters"]["maxSteps"] == 3


def test_instead_of_sft_with_no_preference_feedback_ends_the_cycle() -> None:
    training = {"preference": {"stage": "instead-of-sft"}}
    shell = Shell(loop_body(training=training))
    start_cycle(shell, pairedRecords=0, desirableRecords=0, undesirableRecords=0)
    assert owned(shell) == {}
    (record,) = shell.status()["history"]
    assert record["reason"] == "NoPreferenceFeedback"
    assert "no pairs and no rated answers" in record["message"]


def test_without_training_preference_the_collect_step_collects_no_preferences() -> None:
    shell = Shell(loop_body())
    shell.step()
    shell.count_to(6)
    assert shell.step_spec(shell.job("loop-feedback-c1")).preference is False


BAD = [
    (
        {"finetune": {"method": "full", "objective": "preference", "preference": {}}},
        "set preference tuning in spec.training.preference",
    ),
    (
        {
            "training": {"preference": {"algorithm": "dpo"}},
            "feedback": {"uri": "s3://f/", "fields": {"chosen": "", "correction": ""}},
        },
        "a paired algorithm (dpo, ipo, orpo, simpo) needs preference pairs",
    ),
    (
        {
            "training": {"preference": {}},
            "feedback": {
                "uri": "s3://f/",
                "fields": {"chosen": "", "correction": "", "rating": ""},
            },
        },
        "a preference stage needs pairs",
    ),
    (
        {"training": {"preference": {"hyperparameters": {"maxSteps": 2, "packing": True}}}},
        "preference pairs cannot be packed",
    ),
    ({"training": {"preference": {"algorithm": "rlhf"}}}, "spec.training.preference.algorithm"),
    ({"training": {"preference": {"stage": "before-sft"}}}, "spec.training.preference.stage"),
]


@pytest.mark.parametrize(("spec", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_combinations_are_refused_by_the_crd_and_by_kubetune_validate(
    tmp_path: Path, spec: dict[str, Any], message: str
) -> None:
    body = loop_body(**spec)
    body["metadata"] = {"name": "loop", "namespace": "ml"}
    crd_errors = " ".join(str(e) for e in validate_against_crd(body))
    assert message in crd_errors, crd_errors
    manifest = tmp_path / "loop.yaml"
    manifest.write_text(yaml.safe_dump(body))
    out = CliRunner().invoke(app, ["validate", "-f", str(manifest)])
    assert out.exit_code == 1 and message in out.output.replace("\n", " "), out.output


def test_a_valid_preference_loop_passes_both() -> None:
    body = loop_body(training={"preference": {"algorithm": "simpo", "simpoGamma": 0.3}})
    body["metadata"] = {"name": "loop", "namespace": "ml"}
    assert validate_against_crd(body) == []
    loop = FeedbackLoop.model_validate(body)
    assert loop.spec.training is not None and loop.spec.training.preference is not None
    assert loop.spec.training.preference.stage == "after-sft"


def test_a_preference_base_dataset_adds_its_own_pairs_weighted_against_the_feedback() -> None:
    shell = Shell(loop_body(training=PREFERENCE))
    base = shell.resources[("Dataset", "tickets")]
    spec = base.spec.model_copy(update={"record_schema": "preference"})
    shell.resources[("Dataset", "tickets")] = base.model_copy(update={"spec": spec})
    start_cycle(shell, pairedRecords=2)
    sources = shell.owned[("Dataset", "loop-c1-pref")]["spec"]["sources"]
    assert [s["uri"] for s in sources] == [
        "s3://raw/tickets.jsonl",
        "s3://store/ml/feedbackloop/loop/c1/preference-pairs.jsonl",
    ]
    assert sources[1]["weight"] == 2.0  # feedback.weight, against the base pairs


def test_the_choice_is_read_from_the_preference_job_once_the_collect_job_is_gone() -> None:
    shell = Shell(loop_body(training=PREFERENCE, compression=None))
    start_cycle(shell, pairedRecords=3)
    for kind, name in (
        ("Dataset", "loop-c1"),
        ("FinetuneJob", "loop-c1"),
        ("Dataset", "loop-c1-pref"),
        ("FinetuneJob", "loop-c1-pref"),
    ):
        shell.set_status(kind, name, done_status(kind, f"s3://out/{name}"))
    evaluation = done_status("Evaluation", "s3://ev", passed=True, results={"winRate": 0.7})
    shell.set_status("Evaluation", "loop-c1", evaluation)
    del shell.jobs[shell.job("loop-feedback-c1").name]  # its TTL ran out while it waited
    shell.step()
    (record,) = shell.status()["history"]
    assert record["reason"] == "Promoted", record
    assert record["message"].endswith("(trained: dpo after SFT)")
    assert shell.status()["championTrainingUri"] == "s3://out/loop-c1-pref"
