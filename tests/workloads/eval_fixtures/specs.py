"""Step specs for the evaluate tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune.api.steps import EvaluateStepSpec, InputArtifact, Producer

from tests.workloads.eval_fixtures.models import DOMAIN_QA, prompt


def domain_cases(tag: str = "qa") -> list[dict[str, Any]]:
    """The domain questions as inline prompt cases."""
    return [
        {"id": f"q{i}", "prompt": prompt(q), "expected": a, "references": [a], "tags": [tag]}
        for i, (q, a) in enumerate(DOMAIN_QA)
    ]


def step_spec(
    out: Path,
    candidate: str,
    *,
    baseline: str | None = None,
    cases: list[dict[str, Any]] | None = None,
    metrics: list[Any] | None = None,
    generation: dict[str, Any] | None = None,
    **extra: Any,
) -> EvaluateStepSpec:
    """An evaluate step spec writing to ``out``.

    ``cases=[]`` leaves out inline cases; ``extra`` keys go to the step spec, except ``spec``,
    whose keys go to the Evaluation spec. A ``promptDataset`` is also named in the spec.
    """
    cases = domain_cases() if cases is None else cases
    spec: dict[str, Any] = {
        "candidate": {"uri": candidate},
        "prompts": {"inline": cases} if cases != [] else {},
        "metrics": [m if isinstance(m, dict) else {"name": m} for m in metrics or ["exactMatch"]],
        "generation": {"maxNewTokens": 24, "batchSize": 8, **(generation or {})},
        "bootstrapSamples": 200,
        **extra.pop("spec", {}),
    }
    if "promptDataset" in extra:
        spec["prompts"]["dataset"] = extra["promptDataset"]
    if baseline:
        spec["baseline"] = {"uri": baseline}
    data: dict[str, Any] = {
        "step": "evaluate",
        "producer": Producer(kind="Evaluation", name="ev", namespace="ns", run_id="r1").model_dump(
            by_alias=True
        ),
        "outputUri": f"file://{out}",
        "spec": spec,
        "candidate": InputArtifact(uri=candidate).model_dump(by_alias=True, exclude_none=True),
        **extra,
    }
    if baseline:
        data["baseline"] = {"uri": baseline}
    return EvaluateStepSpec.model_validate(data)
