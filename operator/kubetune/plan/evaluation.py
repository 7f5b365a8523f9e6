"""Plan an Evaluation: wait for candidate, baseline and data; read prompt cases from a
ConfigMap; one evaluate Job; status passed/failedGates/reportUri and a ``Passed`` condition."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from kubetune.api.evaluation import ConfigMapPrompts, PromptCase
from kubetune.api.resources import Evaluation
from kubetune.api.steps import EvaluateStepSpec, InputArtifact, StepResult
from kubetune.plan.jobs import secret_env
from kubetune.plan.refs import Wait, combine_waits, resolve_dataset, resolve_model
from kubetune.plan.status import CondSpec
from kubetune.plan.step import Built, KindPlanner, RunContext, plan_step
from kubetune.plan.world import ObservedWorld, OperatorConfig, Plan

JUDGE_KEY_ENV = "KUBETUNE_JUDGE_API_KEY"


def config_map_cases(ref: ConfigMapPrompts, world: ObservedWorld) -> list[PromptCase] | Wait:
    """Prompt cases from a ConfigMap key holding JSONL, or why they cannot be read."""
    data = world.config_maps.get(ref.name)
    if data is None:
        return Wait("ConfigMapNotFound", f"prompts ConfigMap {ref.name} does not exist")
    text = data.get(ref.key)
    if text is None:
        return Wait(
            "ConfigMapKeyNotFound",
            f"prompts ConfigMap {ref.name} has no key {ref.key!r}",
            failed=True,
        )
    cases: list[PromptCase] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cases.append(PromptCase.model_validate(json.loads(line)))
        except ValidationError as exc:  # before ValueError: it is one
            detail = "; ".join(str(e["msg"]) for e in exc.errors())
        except ValueError as exc:
            detail = f"not JSON: {exc}"
        else:
            continue
        return Wait(
            "ConfigMapInvalid",
            f"prompts ConfigMap {ref.name} key {ref.key} line {number}: {detail}",
            failed=True,
        )
    if not cases:
        return Wait(
            "ConfigMapInvalid", f"prompts ConfigMap {ref.name} key {ref.key} has no cases", True
        )
    return cases


def build_step(ctx: RunContext) -> Built | Wait:
    """The evaluate step spec with every model and dataset resolved."""
    assert isinstance(ctx.resource, Evaluation)
    spec = ctx.resource.spec
    world = ctx.world
    candidate = resolve_model(spec.candidate, world, "candidate")
    baseline = resolve_model(spec.baseline, world, "baseline") if spec.baseline else None
    prompts = (
        resolve_dataset(spec.prompts.dataset, world, "prompts dataset")
        if spec.prompts.dataset is not None
        else None
    )
    perplexity = (
        resolve_dataset(spec.perplexity_data, world, "perplexity dataset")
        if spec.perplexity_data is not None
        else None
    )
    preference = (
        resolve_dataset(spec.preference_data, world, "preference dataset")
        if spec.preference_data is not None
        else None
    )
    cases = (
        config_map_cases(spec.prompts.config_map, world)
        if spec.prompts.config_map is not None
        else None
    )
    wait = combine_waits(
        [
            r
            for r in (candidate, baseline, prompts, perplexity, preference, cases)
            if isinstance(r, Wait)
        ]
    )
    if wait is not None:
        return wait
    assert isinstance(candidate, InputArtifact)
    assert not isinstance(baseline, Wait) and not isinstance(prompts, Wait)
    assert not isinstance(perplexity, Wait) and not isinstance(cases, Wait)
    assert not isinstance(preference, Wait)
    env: tuple[dict[str, Any], ...] = ()
    key_env = None
    if spec.judge is not None and spec.judge.api_key is not None:
        env = (secret_env(JUDGE_KEY_ENV, spec.judge.api_key),)
        key_env = JUDGE_KEY_ENV
    step = EvaluateStepSpec(
        **ctx.base(),
        spec=spec,
        candidate=candidate,
        baseline=baseline,
        prompt_dataset=prompts,
        perplexity_dataset=perplexity,
        preference_dataset=preference,
        extra_cases=cases,
        judge_api_key_env=key_env,
    )
    return Built(step, env)


def result_fields(result: StepResult) -> dict[str, Any]:
    """passed, failedGates and reportUri from the evaluate result."""
    return {
        "passed": result.passed,
        "failed_gates": result.failed_gates,
        "report_uri": result.report_uri,
    }


def result_conditions(result: StepResult) -> list[CondSpec]:
    """``Passed``: True when every gate passed, False naming the failed gates."""
    if result.passed is None:
        return []
    if result.passed:
        return [CondSpec("Passed", "True", "GatesPassed", "every gate passed")]
    gates = ", ".join(result.failed_gates or []) or "unknown"
    return [CondSpec("Passed", "False", "GatesFailed", f"failed gates: {gates}")]


PLANNER = KindPlanner(
    step="evaluate",
    build=build_step,
    result_fields=result_fields,
    result_conditions=result_conditions,
)


def plan_evaluation(resource: Evaluation, world: ObservedWorld, config: OperatorConfig) -> Plan:
    """Plan an Evaluation."""
    return plan_step(resource, world, config, PLANNER)
