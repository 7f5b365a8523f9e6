"""Verdicts on paired cases only: when the candidate skips cases the baseline scored, means,
deltas, gates and the HTML summary all use the cases both models scored, the left-out cases
are counted, and ``maxSkippedRatio`` can fail on them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kubetune_workloads.evaluate import run

from tests.workloads.eval_fixtures.models import build, prompt
from tests.workloads.eval_fixtures.specs import domain_cases, step_spec


def _short_context_copy(tmp_path: Path, context: int) -> str:
    """The tuned model with a shorter context window: it skips the longer prompts."""
    path = tmp_path / "short"
    shutil.copytree(build()["tuned"], path)
    config = json.loads((path / "config.json").read_text())
    config["max_position_embeddings"] = context
    (path / "config.json").write_text(json.dumps(config))
    return f"file://{path}"


def test_gates_and_summary_compare_the_same_cases(tmp_path: Path) -> None:
    long_cases = [
        {"id": f"long{i}", "prompt": prompt("the cat sat on the mat " * 6 + f"number {i}?"),
         "expected": "something the models do not say"}
        for i in range(2)
    ]  # fmt: skip
    out = tmp_path / "eval"
    candidate = _short_context_copy(tmp_path, context=64)
    result = run(
        step_spec(
            out,
            candidate,
            baseline=f"file://{build()['tuned']}",
            cases=[*domain_cases(), *long_cases],
            metrics=["exactMatch", "tokenF1"],
            spec={
                "gates": [{"metric": "exactMatch", "maxRegression": 0.0}],
                "maxSkippedRatio": 0.1,
            },
        )
    )
    results = json.loads((out / "results.json").read_text())
    assert set(results["unpairedCases"]) == {"long0", "long1"}
    assert results["unpairedCases"]["long0"].startswith("candidate: ")
    assert results["pairedCases"] == 6
    cand = results["candidate"]["aggregates"]["exactMatch"]
    base = results["baseline"]["aggregates"]["exactMatch"]
    assert cand["n"] == base["n"] == 6  # the baseline's mean is over the same cases
    assert cand["mean"] == base["mean"] == 1.0  # same weights on the same prompts
    gates = {g["name"]: g for g in results["gates"]}
    regression = gates["exactMatch:maxRegression=0"]
    assert regression["passed"] and regression["value"] == 0.0
    assert results["comparison"]["exactMatch"]["delta"] == 0.0
    skipped = gates["skipped<=0.1"]
    assert not skipped["passed"] and skipped["value"] == 2 / 8
    assert "2 of 8 cases left out" in skipped["message"]
    assert result.passed is False and result.failed_gates == ["skipped<=0.1"]
    assert "verdict on the 6 cases both models scored" in result.message
    html = (out / "report.html").read_text()
    assert "uses the 6 cases of both models that were scored; 2 left out" in html
