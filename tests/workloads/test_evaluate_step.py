"""Evaluate step end to end: verdicts, artifacts, prompt sources, perplexity, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kubetune.api.steps import StepResult
from kubetune_workloads.__main__ import run_step
from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.evaluate import run
from kubetune_workloads.manifest import read_manifest

from tests.helpers.tiny import write_dataset
from tests.workloads.eval_fixtures.models import DOMAIN_QA, prompt, uri
from tests.workloads.eval_fixtures.specs import domain_cases, step_spec

GATES = [{"metric": "exactMatch", "min": 0.8}, {"metric": "tokenF1", "maxRegression": 0.05}]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]


def test_tuned_model_beats_its_base_and_passes_the_gate(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = run(
        step_spec(
            out,
            uri("tuned"),
            baseline=uri("base"),
            metrics=["exactMatch", "tokenF1", "rougeL"],
            spec={"gates": GATES},
        )
    )
    assert result.ok and result.passed and result.failed_gates == []
    assert result.metrics["exactMatch"] == 1.0
    assert result.metrics["exactMatchDelta"] > 0.5
    assert result.report_uri == f"file://{out}/report.html"
    results = json.loads((out / "results.json").read_text())
    comparison = results["comparison"]["tokenF1"]
    assert comparison["wins"] == len(DOMAIN_QA) and comparison["losses"] == 0
    assert comparison["ciLow"] > 0  # the improvement is beyond the bootstrap noise
    assert results["candidate"]["byTag"]["qa"]["exactMatch"]["mean"] == 1.0
    rows = _rows(out)
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(len(DOMAIN_QA))]
    assert rows[0]["candidate"]["output"] == DOMAIN_QA[0][1]
    assert rows[0]["outcome"]["exactMatch"] == "win"
    manifest = read_manifest(out)
    assert manifest is not None and manifest.artifact == "evaluation"
    assert {"results.json", "cases.jsonl", "report.html"} <= set(manifest.files)
    assert result.content_hash == manifest.content_hash
    assert len(result.termination_message().encode()) < 4096


def test_broken_model_fails_the_gate_with_the_gates_named(tmp_path: Path) -> None:
    result = run(
        step_spec(
            tmp_path / "eval",
            uri("broken"),
            baseline=uri("tuned"),
            metrics=["exactMatch", "tokenF1"],
            spec={"gates": GATES},
        )
    )
    assert result.ok  # the evaluation ran; the model did not pass
    assert result.passed is False
    assert result.failed_gates == ["exactMatch>=0.8", "tokenF1:maxRegression=0.05"]
    assert "exactMatch>=0.8: got 0" in result.message
    assert result.reason == "GatesFailed"
    assert result.metrics["tokenF1Delta"] < -0.5


def test_entry_point_writes_the_termination_message(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec = step_spec(tmp_path / "eval", uri("tuned"), spec={"gates": GATES[:1]})
    spec_file.write_text(spec.to_json())
    log = tmp_path / "termination-log"
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune_workloads", "evaluate", "--spec", str(spec_file)],
        env={"KUBETUNE_TERMINATION_LOG": str(log), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = StepResult.model_validate_json(log.read_text())
    assert result.passed is True and result.metrics["exactMatch"] == 1.0


def test_prompt_sources_are_concatenated(tmp_path: Path) -> None:
    dataset = write_dataset(
        tmp_path / "ds",
        "instruction",
        train=[],
        validation=[
            {"instruction": prompt(DOMAIN_QA[0][0]), "input": "", "output": DOMAIN_QA[0][1]},
            {"instruction": prompt(DOMAIN_QA[1][0]), "output": DOMAIN_QA[1][1], "tags": ["ds"]},
        ],
    )
    jsonl = tmp_path / "cases.jsonl"
    jsonl.write_text(
        json.dumps({"id": "file-1", "prompt": prompt(DOMAIN_QA[2][0]), "expected": "x"}) + "\n\n"
    )
    out = tmp_path / "eval"
    spec = step_spec(
        out,
        uri("tuned"),
        cases=domain_cases()[:1],
        spec={"prompts": {"inline": domain_cases()[:1], "uri": f"file://{jsonl}", "limit": 4}},
        extraCases=[{"id": "cm-1", "prompt": prompt(DOMAIN_QA[3][0]), "expected": "y"}],
        promptDataset={"uri": f"file://{dataset}"},
    )
    result = run(spec)
    ids = [r["id"] for r in _rows(out)]
    assert ids == ["q0", "cm-1", "dataset-0", "dataset-1"]  # limit 4 drops the file case
    assert _rows(out)[2]["expected"] == DOMAIN_QA[0][1]
    assert result.details is not None and result.details["cases"] == 4


def test_chat_dataset_cases_end_before_the_last_assistant_turn(tmp_path: Path) -> None:
    dataset = write_dataset(
        tmp_path / "chat",
        "chat",
        train=[],
        validation=[
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "bye"},
                    {"role": "assistant", "content": "goodbye"},
                ]
            },
            {"messages": [{"role": "user", "content": "no answer"}]},
        ],
    )
    out = tmp_path / "eval"
    run(step_spec(out, uri("tuned"), cases=[], promptDataset={"uri": f"file://{dataset}"}))
    (row,) = _rows(out)
    assert row["expected"] == "goodbye" and len(row["messages"]) == 3


def test_perplexity_is_lower_for_the_tuned_model(tmp_path: Path) -> None:
    texts = [{"text": f"{prompt(q)} {a}"} for q, a in DOMAIN_QA]
    dataset = write_dataset(tmp_path / "ppl", "text", train=[], validation=texts)
    out = tmp_path / "eval"
    result = run(
        step_spec(
            out,
            uri("tuned"),
            baseline=uri("base"),
            metrics=["perplexity", "exactMatch"],
            spec={
                "perplexityData": {"uri": f"file://{dataset}"},
                "gates": [{"metric": "perplexity", "max": 10}],
            },
            perplexityDataset={"uri": f"file://{dataset}"},
        )
    )
    assert result.passed
    assert (
        result.metrics["perplexity"]
        < 10
        < result.metrics["perplexity"] - result.metrics["perplexityDelta"]
    )
    comparison = json.loads((out / "results.json").read_text())["comparison"]["perplexity"]
    assert comparison["wins"] == len(texts)  # every text is more likely under the tuned model


# --- bad inputs -----------------------------------------------------------------------------


def _error(spec: object) -> WorkloadError:
    with pytest.raises(WorkloadError) as info:
        run(spec)  # type: ignore[arg-type]
    return info.value


def test_empty_prompt_set_is_refused(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", "text", train=[], validation=[{"text": "hello"}])
    out = tmp_path / "eval"
    error = _error(
        step_spec(out, uri("tuned"), cases=[], promptDataset={"uri": f"file://{dataset}"})
    )
    assert error.reason == "InvalidInput" and "prompt set is empty" in error.message
    assert not out.exists()  # nothing that looks like a result


def test_unknown_metric_is_a_clear_spec_error(tmp_path: Path) -> None:
    data = json.loads(step_spec(tmp_path / "eval", uri("tuned")).to_json())
    data["spec"]["metrics"] = [{"name": "bleurt"}]
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(data))
    result = run_step("evaluate", spec_file)
    assert not result.ok and result.reason == "InvalidSpec"
    assert "bleurt" in result.message and "exactMatch" in result.message


def test_unknown_metric_in_a_cases_file_names_the_line(tmp_path: Path) -> None:
    jsonl = tmp_path / "cases.jsonl"
    jsonl.write_text(json.dumps({"prompt": "a", "metrics": ["bleurt"]}) + "\n")
    spec = step_spec(tmp_path / "eval", uri("tuned"), spec={"prompts": {"uri": f"file://{jsonl}"}})
    error = _error(spec)
    assert error.reason == "InvalidInput" and "line 1" in error.message


def test_rouge_without_references_names_the_cases(tmp_path: Path) -> None:
    cases = [{"id": "no-ref", "prompt": "a"}, {"id": "ok", "prompt": "b", "references": ["b"]}]
    error = _error(step_spec(tmp_path / "eval", uri("tuned"), cases=cases, metrics=["rouge1"]))
    assert error.reason == "InvalidInput"
    assert "rouge1 needs references" in error.message and "'no-ref'" in error.message
    assert "'ok'" not in error.message


def test_model_that_outputs_nothing_fails_its_gates_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = run(
        step_spec(
            out,
            uri("silent"),
            metrics=["exactMatch", "tokenF1", "rougeL", "bleu", "chrf", "tokensPerSecond"],
            spec={"gates": [{"metric": "tokenF1", "min": 0.5}]},
        )
    )
    assert result.ok and result.passed is False
    assert result.metrics["tokenF1"] == 0.0 and result.metrics["bleu"] == 0.0
    assert f"{len(DOMAIN_QA)} empty outputs" in result.message
    assert all(r["candidate"]["output"] == "" for r in _rows(out))


def test_prompt_longer_than_the_context_is_skipped_and_reported(tmp_path: Path) -> None:
    long_case = {"id": "long", "prompt": "the cat sat on the mat " * 60, "expected": "x"}
    out = tmp_path / "eval"
    result = run(step_spec(out, uri("tuned"), cases=[*domain_cases(), long_case]))
    assert result.ok and result.metrics["exactMatch"] == 1.0  # scored on the cases that fit
    assert "1 skipped" in result.message
    row = _rows(out)[-1]
    assert "exceeds the model's context of 128 tokens" in row["candidate"]["skipped"]


def test_only_prompts_longer_than_the_context_is_an_error(tmp_path: Path) -> None:
    long_case = {"id": "long", "prompt": "the cat sat on the mat " * 60, "expected": "x"}
    error = _error(step_spec(tmp_path / "eval", uri("tuned"), cases=[long_case]))
    assert error.reason == "PromptTooLong" and "context of 128" in error.message


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    error = _error(step_spec(tmp_path / "eval", f"file://{tmp_path}/nope"))
    assert error.reason == "InvalidInput" and "does not exist" in error.message


def test_example_manifest_validates() -> None:
    import yaml
    from kubetune.api import Evaluation

    root = Path(__file__).resolve().parents[2]
    data = yaml.safe_load((root / "examples" / "evaluation-gates.yaml").read_text())
    evaluation = Evaluation.model_validate(data)
    assert [g.metric for g in evaluation.spec.gates or []] == ["tokenF1", "rougeL", "offensiveRate"]
