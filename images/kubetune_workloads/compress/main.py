"""The compress step's entry point, :func:`run`, end to end in phases: setup (load, check),
measure before, compress (the spec's steps in order), save (model), measure after, report."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api.steps import RESULTS_FILE, CompressStepSpec, StepResult

from kubetune_workloads import modelio, storage
from kubetune_workloads.compress import measure
from kubetune_workloads.compress.latency import DEFAULT_PROMPTS
from kubetune_workloads.compress.perplexity import EvalBatches, build_batches
from kubetune_workloads.compress.pipeline import apply_steps, preflight
from kubetune_workloads.compress.quantize import avoid_cpu_kernel_limits, cpu_kernel_note
from kubetune_workloads.compress.report import (
    build_report,
    deltas,
    quality_gate,
    summary_metrics,
    write_report,
)
from kubetune_workloads.compress.snapshot import Snapshot, take_snapshot
from kubetune_workloads.compress.state import WorkingModel
from kubetune_workloads.datasetio import open_dataset
from kubetune_workloads.errors import invalid_input
from kubetune_workloads.manifest import input_artifact, step_spec_payload, write_manifest
from kubetune_workloads.progress import ProgressReporter

log = logging.getLogger(__name__)


def run(spec: CompressStepSpec) -> StepResult:
    """Compress ``spec.model`` into ``spec.output_uri`` and report before/after measurements.

    The artifact and report are written even when the quality gate fails; the result then has
    ``ok=False`` and reason ``QualityGateFailed``.
    """
    with ProgressReporter("compress", spec.progress_port) as reporter:
        return _run(spec, reporter)


@dataclass
class Measuring:
    """How the model is measured, the same way before and after compression."""

    batches: EvalBatches | None
    prompts: list[str]
    max_new_tokens: int
    device: str | None

    def snapshot(self, model: Any, tokenizer: Any, bytes_on_disk: int) -> Snapshot:
        return take_snapshot(
            model,
            tokenizer,
            bytes_on_disk=bytes_on_disk,
            batches=self.batches,
            prompts=self.prompts,
            max_new_tokens=self.max_new_tokens,
        )


def _run(spec: CompressStepSpec, reporter: ProgressReporter) -> StepResult:
    total = len(spec.spec.steps)
    loaded, working, measuring = _setup(spec, reporter)
    reporter.update(phase="MeasuringBefore")
    before = measuring.snapshot(loaded.model, loaded.tokenizer, _input_bytes(loaded))
    log.info("before: %s", before)

    def on_step(index: int, name: str) -> None:
        reporter.update(phase=f"Step {index + 1}/{total}: {name}", step=index)

    working = apply_steps(working, spec.spec.steps, on_step)
    info = _output_info(working, loaded.info)
    is_adapter, notes = loaded.info.format == "adapter", working.notes
    with storage.output_dir(spec.output_uri) as out:
        reporter.update(phase="Saving", step=total)
        modelio.save_model(working.model, working.tokenizer, out, info)
        del working, loaded  # free the models before the saved one is loaded back
        gc.collect()
        result = _measure_and_report(spec, out, before, notes, measuring, is_adapter, reporter)
    reporter.update(phase="Done", message=result.message)
    return result


def _setup(
    spec: CompressStepSpec, reporter: ProgressReporter
) -> tuple[modelio.LoadedModel, WorkingModel, Measuring]:
    """Setup: check the inputs, load the model, refuse steps that cannot apply to it."""
    import torch

    settings = spec.spec
    if settings.report.max_perplexity_increase is not None and spec.dataset is None:
        raise invalid_input("maxPerplexityIncrease needs a dataset to measure perplexity on")
    device = "cuda" if torch.cuda.is_available() else None
    reporter.update(phase="Loading", total_steps=len(settings.steps), message=spec.model.uri)
    loaded = modelio.load_model(spec.model.uri, adapter="apply", device=device)
    working = WorkingModel(
        model=loaded.model,
        tokenizer=loaded.tokenizer,
        has_adapter=loaded.info.format == "adapter",
        quantization=loaded.info.quantization,
        device=device,
    )
    preflight(working, settings.steps)
    prompts = list(settings.report.prompts or DEFAULT_PROMPTS)
    batches = _eval_batches(spec, loaded)
    return loaded, working, Measuring(batches, prompts, settings.report.max_new_tokens, device)


def _input_bytes(loaded: modelio.LoadedModel) -> int:
    """Bytes on disk of the input model (an adapter counts its base too)."""
    info = loaded.info
    base = storage.fetch(info.base_uri) if info.format == "adapter" and info.base_uri else None
    return measure.artifact_bytes(loaded.path, info, base)


def _output_info(working: WorkingModel, source: modelio.ModelInfo) -> modelio.ModelInfo:
    """The compressed model's ``kubetune.json``: a full model that keeps its source's use."""
    return modelio.ModelInfo(
        format="full",
        family=getattr(working.model.config, "model_type", None),
        quantization=working.quantization,
        trust_remote_code=source.trust_remote_code,
        instruction_template=source.instruction_template,
        objective=source.objective,
        max_seq_length=source.max_seq_length,
    )


def _measure_and_report(
    spec: CompressStepSpec,
    out: Path,
    before: Snapshot,
    notes: list[str],
    measuring: Measuring,
    is_adapter: bool,
    reporter: ProgressReporter,
) -> StepResult:
    """Save: measure the written model, write the report and results, the manifest last."""
    reporter.update(phase="MeasuringAfter")
    after_model = modelio.load_model(f"file://{out}", device=measuring.device)
    if measuring.device is None and (changed := avoid_cpu_kernel_limits(after_model.model)):
        notes.append(cpu_kernel_note(changed))
    after = measuring.snapshot(after_model.model, after_model.tokenizer, measure.bytes_on_disk(out))
    log.info("after: %s", after)
    report = _report(spec, before, after, notes, measuring, is_adapter)
    write_report(out, report)
    result = _result(spec, report)
    (out / RESULTS_FILE).write_text(result.to_json())
    manifest = write_manifest(
        out,
        artifact="compressed-model",
        producer=spec.producer,
        spec=step_spec_payload(spec),
        inputs=_inputs(spec, loaded_path=storage.fetch(spec.model.uri)),
        extra={"sizeRatio": result.metrics.get("sizeRatio")},
    )
    return result.model_copy(update={"content_hash": manifest.content_hash})


def _eval_batches(spec: CompressStepSpec, loaded: modelio.LoadedModel) -> EvalBatches | None:
    if spec.dataset is None:
        return None
    dataset = open_dataset(storage.fetch(spec.dataset.uri))
    limit = getattr(loaded.model.config, "max_position_embeddings", None)
    return build_batches(
        dataset,
        loaded.tokenizer,
        spec.spec.report.max_eval_batches,
        limit,
        loaded.info.instruction_template,
        loaded.info.max_seq_length,
        loaded.info.objective,
    )


def _report(
    spec: CompressStepSpec,
    before: Snapshot,
    after: Snapshot,
    notes: list[str],
    measuring: Measuring,
    is_adapter: bool,
) -> dict[str, Any]:
    settings = spec.spec
    batches = measuring.batches
    gate = quality_gate(settings.report.max_perplexity_increase, deltas(before, after))
    evaluation: dict[str, Any] = {
        "dataset": spec.dataset.uri if spec.dataset else None,
        "tokens": batches.tokens if batches else 0,
        "batches": len(batches.batches) if batches else 0,
        "seqLen": batches.seq_len if batches else 0,
        "prompts": measuring.prompts,
        "maxNewTokens": settings.report.max_new_tokens,
        "device": measuring.device or "cpu",
    }
    return build_report(
        model_uri=spec.model.uri,
        input_format="adapter" if is_adapter else "full",
        steps=[s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in settings.steps],
        before=before,
        after=after,
        notes=notes,
        evaluation=evaluation,
        gate=gate,
    )


def _result(spec: CompressStepSpec, report: dict[str, Any]) -> StepResult:
    metrics = summary_metrics(report)
    gate = report["qualityGate"]
    message = _summary_text(metrics)
    ok, reason = True, "Completed"
    if gate and not gate["passed"]:
        ok, reason = False, "QualityGateFailed"
        message = (
            f"perplexity grew {gate['perplexityIncrease']:.2%}, more than the allowed "
            f"{gate['maxPerplexityIncrease']:.2%} (the artifact and report were still written); "
            + message
        )
    return StepResult(
        step="compress",
        ok=ok,
        reason=reason,
        message=message,
        output_uri=spec.output_uri,
        metrics=metrics,
        passed=None if gate is None else bool(gate["passed"]),
        failed_gates=["maxPerplexityIncrease"] if gate and not gate["passed"] else None,
        report_uri=spec.output_uri.rstrip("/") + "/report.json",
    )


def _summary_text(metrics: dict[str, float]) -> str:
    parts = []
    if "sizeRatio" in metrics:
        parts.append(f"size {metrics['sizeRatio']:.3f}x")
    if "perplexityBefore" in metrics and "perplexityAfter" in metrics:
        parts.append(
            f"perplexity {metrics['perplexityBefore']:.3f} -> {metrics['perplexityAfter']:.3f}"
        )
    if "latencyRatio" in metrics:
        parts.append(f"latency {metrics['latencyRatio']:.2f}x")
    return ", ".join(parts)


def _inputs(spec: CompressStepSpec, loaded_path: Path) -> list[Any]:
    inputs = [input_artifact(spec.model.uri, loaded_path, "model")]
    if spec.dataset is not None:
        dataset_path = storage.fetch(spec.dataset.uri)
        inputs.append(input_artifact(spec.dataset.uri, dataset_path, "dataset"))
    return inputs
