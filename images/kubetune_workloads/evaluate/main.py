"""The evaluate step's entry point, :func:`run`, and its phases: setup (:func:`_prepare`: cases,
metric plan, scorer) -> model runs (:func:`_run_models`) -> outcome (gates, bias probes) ->
save (:func:`_write`: results, cases, report, manifest last)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.api.evaluation import PromptCase
from kubetune.api.steps import RESULTS_FILE, EvaluateStepSpec, InputArtifact, StepResult

from kubetune_workloads import storage
from kubetune_workloads.errors import WorkloadError, invalid_input
from kubetune_workloads.evaluate.bias import ProbePair, build_pairs, summarize
from kubetune_workloads.evaluate.cases import gather_cases
from kubetune_workloads.evaluate.html_report import render
from kubetune_workloads.evaluate.judge import JudgeClient
from kubetune_workloads.evaluate.models import ModelRun, run_model
from kubetune_workloads.evaluate.outcome import (
    Outcome,
    analyse,
    case_rows,
    results_json,
    step_metrics,
)
from kubetune_workloads.evaluate.preference_accuracy import METRIC as PREFERENCE
from kubetune_workloads.evaluate.preference_accuracy import load_pairs
from kubetune_workloads.evaluate.scoring import (
    DATASET_METRICS,
    Scorer,
    case_quality,
    plan_metrics,
    prompt_text,
)
from kubetune_workloads.evaluate.textmetrics import QUALITY_METRICS
from kubetune_workloads.evaluate.winrate import METRIC as WIN_RATE
from kubetune_workloads.evaluate.winrate import judge_pairs
from kubetune_workloads.manifest import (
    input_artifact,
    spec_hash,
    step_spec_payload,
    write_manifest,
)
from kubetune_workloads.modelio import read_info
from kubetune_workloads.progress import ProgressReporter

CASES_FILE = "cases.jsonl"
REPORT_FILE = "report.html"
log = logging.getLogger(__name__)


def _lexicon(needed: bool) -> Any:
    if not needed:
        return None
    from kubetune_workloads.lexicon import OffensiveLexicon

    return OffensiveLexicon.load()


def _judge(step: EvaluateStepSpec, needed: bool) -> JudgeClient | None:
    if not needed or step.spec.judge is None:
        return None
    key = os.environ.get(step.judge_api_key_env) if step.judge_api_key_env else None
    if step.judge_api_key_env and not key:
        log.warning("judge API key variable %s is empty", step.judge_api_key_env)
    return JudgeClient(step.spec.judge, key)


def _probe_plan(pairs: list[ProbePair], plan: dict[str, list[str]]) -> dict[str, list[str]]:
    """Probe variants are scored with their source case's quality metrics (no judge)."""
    out = {}
    for pair in pairs:
        names = [m for m in plan.get(pair.source, []) if m in QUALITY_METRICS and m != "judge"]
        out[str(pair.a.id)] = out[str(pair.b.id)] = names
    return out


def run(spec: EvaluateStepSpec) -> StepResult:
    """Evaluate per the step spec; raises WorkloadError on bad input."""
    with ProgressReporter("evaluate", spec.progress_port) as reporter:
        return evaluate(spec, reporter)


@dataclass
class Preparation:
    """What the setup phase decided: the cases, which metrics score which case, the data."""

    cases: list[PromptCase]
    plan: dict[str, list[str]]  # case id -> metric names
    full_plan: dict[str, list[str]]  # the plan plus the bias probes' variants
    scorer: Scorer
    ppl_path: Path | None
    preference_pairs: list[dict[str, Any]] | None
    wants_win_rate: bool
    pairs: dict[str, list[ProbePair]] = field(default_factory=dict)  # probe name -> pairs

    @property
    def probe_cases(self) -> list[PromptCase]:
        return [c for ps in self.pairs.values() for p in ps for c in (p.a, p.b)]


def evaluate(step: EvaluateStepSpec, reporter: ProgressReporter) -> StepResult:
    """Run the whole evaluation and write its artifact: setup, model runs, outcome, save."""
    prep = _prepare(step, reporter)
    candidate, baseline = _run_models(step, prep, reporter)
    cases = prep.cases
    if prep.wants_win_rate and baseline is not None and prep.scorer.judge is not None:
        reporter.update(phase="Judging", message="judging candidate against baseline")
        candidate.win_rates = _win_rates(prep.scorer.judge, cases, candidate, baseline)
    if cases and not any(str(c.id) in candidate.results for c in cases):
        first = next(iter(candidate.skipped.values()))
        raise WorkloadError("PromptTooLong", f"no prompt case fits the candidate model: {first}")
    probe_summaries = _probe_summaries(step, prep, candidate)
    for variant in prep.probe_cases:  # keep only real cases in the candidate's results
        candidate.results.pop(str(variant.id), None)
        candidate.skipped.pop(str(variant.id), None)
    outcome = analyse(step.spec, cases, candidate, baseline, probe_summaries)
    reporter.update(phase="Writing", message="writing results and report")
    content_hash = _write(step, outcome)
    return _step_result(step, outcome, content_hash)


def _prepare(step: EvaluateStepSpec, reporter: ProgressReporter) -> Preparation:
    """Setup: gather the cases, plan the metrics, check what they need, build the scorer."""
    spec = step.spec
    reporter.update(phase="Preparing", message="gathering prompt cases")
    cases = gather_cases(step)
    only_perplexity = all(m.name in DATASET_METRICS for m in spec.metrics)
    if not cases and not only_perplexity:
        raise invalid_input(
            "the prompt set is empty: no cases came from prompts.inline, the ConfigMap, the "
            "prompt dataset's validation split or prompts.uri"
        )
    plan = plan_metrics(cases, spec)
    ppl_path = _perplexity_data(step)
    preference_pairs = _preference_pairs(step)
    wants_win_rate = any(m.name == WIN_RATE for m in spec.metrics)
    if wants_win_rate and (not cases or step.baseline is None):
        raise invalid_input("the winRate metric needs prompt cases and a baseline")
    probes = spec.bias_probes or []
    pairs = {probe.name: build_pairs(probe, cases) for probe in probes}
    full_plan = {**plan}
    for probe_pairs in pairs.values():
        full_plan.update(_probe_plan(probe_pairs, plan))
    all_metrics = {m for names in plan.values() for m in names}
    scorer = Scorer(
        spec,
        lexicon=_lexicon("offensiveRate" in all_metrics or bool(probes)),
        judge=_judge(step, "judge" in all_metrics or wants_win_rate),
    )
    return Preparation(
        cases, plan, full_plan, scorer, ppl_path, preference_pairs, wants_win_rate, pairs
    )


def _perplexity_data(step: EvaluateStepSpec) -> Path | None:
    """The perplexity dataset's local path, when the perplexity metric is asked for."""
    if not any(m.name == "perplexity" for m in step.spec.metrics):
        return None
    ppl_uri = step.perplexity_dataset.uri if step.perplexity_dataset else None
    if ppl_uri is None and step.spec.perplexity_data is not None:
        ppl_uri = step.spec.perplexity_data.uri  # a dataset artifact URI needs no resolving
    if ppl_uri is None:
        raise invalid_input("the perplexity metric needs a perplexity dataset (perplexityData)")
    return storage.fetch(ppl_uri)


def _run_models(
    step: EvaluateStepSpec, prep: Preparation, reporter: ProgressReporter
) -> tuple[ModelRun, ModelRun | None]:
    """Model runs: the candidate (on the cases and the probe variants), then the baseline."""
    candidate = _run(
        step.candidate.uri,
        "candidate",
        prep.cases + prep.probe_cases,
        prep.full_plan,
        step,
        prep.scorer,
        prep.ppl_path,
        reporter,
        prep.preference_pairs,
    )
    if step.baseline is None:
        return candidate, None
    baseline = _run(
        step.baseline.uri,
        "baseline",
        prep.cases,
        prep.plan,
        step,
        prep.scorer,
        prep.ppl_path,
        reporter,
        prep.preference_pairs,
    )
    return candidate, baseline


def _probe_summaries(
    step: EvaluateStepSpec, prep: Preparation, candidate: ModelRun
) -> list[dict[str, Any]]:
    """Each bias probe over the pairs whose both variants the candidate answered."""
    lexicon = prep.scorer.lexicon
    return [
        summarize(
            probe,
            [
                p
                for p in prep.pairs[probe.name]
                if str(p.a.id) in candidate.results and str(p.b.id) in candidate.results
            ],
            candidate.results,
            case_quality,
            lexicon.contains if lexicon else (lambda _: False),
        )
        for probe in step.spec.bias_probes or []
    ]


def _win_rates(judge: Any, cases: list[PromptCase], candidate: ModelRun, baseline: ModelRun) -> Any:
    """Pairwise verdicts on the cases both models answered (see :mod:`.winrate`)."""
    both = [c for c in cases if str(c.id) in candidate.results and str(c.id) in baseline.results]
    prompts = {str(c.id): prompt_text(c) for c in both}
    pairs = {
        str(c.id): (candidate.results[str(c.id)].output, baseline.results[str(c.id)].output)
        for c in both
    }
    return judge_pairs(judge, prompts, pairs)


def _preference_pairs(step: EvaluateStepSpec) -> list[dict[str, Any]] | None:
    """Held-out pairs for preferenceAccuracy (a resolved dataset, or a dataset artifact URI)."""
    spec = step.spec
    if not any(m.name == PREFERENCE for m in spec.metrics):
        return None
    uri = step.preference_dataset.uri if step.preference_dataset else None
    if uri is None and spec.preference_data is not None:
        uri = spec.preference_data.uri
    if uri is None:
        raise invalid_input("the preferenceAccuracy metric needs preferenceData")
    return load_pairs(storage.fetch(uri))


def _run(
    uri: str,
    label: str,
    cases: list[PromptCase],
    plan: dict[str, list[str]],
    step: EvaluateStepSpec,
    scorer: Scorer,
    ppl_path: Path | None,
    reporter: ProgressReporter,
    preference_pairs: list[dict[str, Any]] | None = None,
) -> ModelRun:
    reporter.update(phase=f"Evaluating {label}", step=0, total_steps=len(cases))

    def progress(done: int, total: int) -> None:
        reporter.update(phase=f"Evaluating {label}", step=done, total_steps=total)

    info = read_info(storage.fetch(step.candidate.uri))
    run = run_model(
        uri,
        cases,
        plan,
        step.spec,
        scorer,
        ppl_path,
        on_batch=progress,
        text_template=info.instruction_template,
        text_block=info.max_seq_length,
        text_objective=info.objective,
        preference_pairs=preference_pairs,
    )
    reporter.update(tokens_per_second=run.tokens_per_second)
    return run


def _write(step: EvaluateStepSpec, outcome: Outcome) -> str:
    """Write the artifact; returns its content hash."""
    results = results_json(outcome, step.spec)
    rows = case_rows(outcome)
    with storage.output_dir(step.output_uri) as out:
        (out / RESULTS_FILE).write_text(json.dumps(results, indent=2, allow_nan=False))
        with (out / CASES_FILE).open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        (out / REPORT_FILE).write_text(render(results, rows), encoding="utf-8")
        inputs = lineage_inputs(step, outcome.cases)
        manifest = write_manifest(
            out,
            artifact="evaluation",
            producer=step.producer,
            spec=step_spec_payload(step),
            inputs=inputs,
            seed=step.spec.generation.seed,
            extra={"passed": outcome.passed, "failedGates": outcome.failed_gates},
        )
    return manifest.content_hash


def lineage_inputs(step: EvaluateStepSpec, cases: list[PromptCase]) -> list[InputArtifact]:
    """Every input with its version and content hash: the models, the prompt sources (a
    dataset, a cases file, inline and ConfigMap cases), the perplexity data and the judge (its
    endpoint, model and rubric; never its key)."""
    spec = step.spec
    found = []
    for role, artifact in (
        ("candidate", step.candidate),
        ("baseline", step.baseline),
        ("prompts", step.prompt_dataset),
        ("perplexity", step.perplexity_dataset),
        ("preference", step.preference_dataset),
    ):
        if artifact is not None:
            found.append(input_artifact(artifact.uri, storage.fetch(artifact.uri), role))
    if spec.prompts.uri:
        found.append(input_artifact(spec.prompts.uri, storage.fetch(spec.prompts.uri), "prompts"))
    written = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in cases]
    found.append(
        InputArtifact(uri="cases.jsonl", content_hash=spec_hash(written), role="prompt-cases")
    )
    if spec.judge is not None:
        judge = {"url": spec.judge.url, "model": spec.judge.model, "rubric": spec.judge.rubric}
        found.append(
            InputArtifact(
                uri=f"{spec.judge.url}#{spec.judge.model}",
                content_hash=spec_hash(judge),
                role="judge",
                version=spec.judge.model,
            )
        )
    return found


def _step_result(step: EvaluateStepSpec, outcome: Outcome, content_hash: str) -> StepResult:
    failed = outcome.failed_gates
    messages = {g.name: g.message for g in outcome.gates}
    if failed:
        text = "failed gates: " + "; ".join(messages.get(name, name) for name in failed)
    else:
        text = f"passed all {len(outcome.gates)} gates" if outcome.gates else "no gates"
    notes = [f"{len(outcome.cases)} cases"]
    skipped = len(outcome.candidate.skipped)
    empty = len(outcome.candidate.empty_outputs())
    judge_errors = sum(1 for r in outcome.candidate.results.values() if r.judge_error)
    if skipped:
        notes.append(f"{skipped} skipped (prompt longer than the context)")
    left_out = len(outcome.unpaired)
    if left_out and outcome.baseline is not None:
        notes.append(f"verdict on the {len(outcome.cases) - left_out} cases both models scored")
    if empty:
        notes.append(f"{empty} empty outputs from the candidate")
    if judge_errors:
        notes.append(f"{judge_errors} judge errors")
    return StepResult(
        step="evaluate",
        ok=True,
        reason="Passed" if outcome.passed else "GatesFailed",
        message=f"{text} ({', '.join(notes)})",
        output_uri=step.output_uri,
        content_hash=content_hash,
        metrics=step_metrics(outcome),
        passed=outcome.passed,
        failed_gates=failed,
        report_uri=step.output_uri.rstrip("/") + "/" + REPORT_FILE,
        details={
            "cases": len(outcome.cases),
            "skipped": skipped,
            "unpaired": left_out,
            "emptyOutputs": empty,
            "judgeErrors": judge_errors,
        },
    )
