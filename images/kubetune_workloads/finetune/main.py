"""The finetune step's entry point: :func:`run` (``python -m kubetune_workloads finetune``).

One run goes through named phases: **setup** (:func:`_setup`: the dataset, its checks, the
model, tokens, the preference criterion; :func:`_build_trainee`: speed levers, batch plan,
the wrapped model and its optimizer), **train** (:func:`_train`: the training loop of
:mod:`.training_loop`, then the record perplexity) and **save** (:func:`_save`: the model,
``results.json``, model card, report, checkpoints; :func:`_write_manifest` last).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from kubetune.api.contract import RESULT_TRAIN_LOSS
from kubetune.api.steps import ArtifactManifest, FinetuneStepSpec, StepResult

from kubetune_workloads import storage
from kubetune_workloads.datasetio import PreparedDataset, open_dataset
from kubetune_workloads.errors import invalid_input
from kubetune_workloads.finetune import (
    checkpoints,
    data,
    optim,
    outputs,
    ownership,
    performance,
    preference,
    preference_data,
    training_loop,
)
from kubetune_workloads.finetune import distributed as dist
from kubetune_workloads.finetune.batching import BatchPlan, pack
from kubetune_workloads.finetune.data import Example
from kubetune_workloads.finetune.guards import GracefulStop
from kubetune_workloads.finetune.model_setup import ModelBundle, prepare_model
from kubetune_workloads.finetune.performance import SpeedSetup
from kubetune_workloads.finetune.runtime import (
    Runtime,
    resolve_precision,
    seed_everything,
    select_device,
)
from kubetune_workloads.finetune.tracking import (
    MetricsLog,
    flops_per_token,
    peak_flops,
    perplexity,
)
from kubetune_workloads.finetune.watchers import Watchers, open_watchers
from kubetune_workloads.likelihood import block_length, packed_for, render_records, stream_losses
from kubetune_workloads.manifest import input_artifact, write_manifest
from kubetune_workloads.progress import ProgressReporter

log = logging.getLogger("kubetune_workloads.finetune")

SPLITS = ("train", "validation")


@dataclass
class Prepared:
    """What the setup phase loaded and tokenized."""

    dataset: PreparedDataset
    dataset_path: Path
    splits: dict[str, list[dict[str, Any]]]
    bundle: ModelBundle
    tokenized: dict[str, Any]  # split -> data.TokenizedSplit
    criterion: preference.PreferenceCriterion | None
    train_rows: list[Example]
    pad_id: int


@dataclass
class Training:
    """What the train phase moves forward: the trainee, its batch plan and speed levers."""

    trainee: training_loop.Trainee
    plan: BatchPlan
    speed: SpeedSetup
    ckpt_root: Path


@dataclass
class Trained:
    """What the train phase reports to the save phase."""

    outcome: training_loop.Outcome
    metrics: MetricsLog
    record_perplexity: float | None


def run(step: FinetuneStepSpec) -> StepResult:
    """Train, write the artifact, and return the summary for the termination message."""
    env = dist.init_distributed(step.spec.distributed.strategy)
    try:
        result = _run(step, env)
        return dist.broadcast_object(env, result) if env.enabled else result
    finally:
        dist.shutdown(env)


def _run(step: FinetuneStepSpec, env: dist.DistEnv) -> StepResult:
    started = time.perf_counter()
    hp = step.spec.hyperparameters
    device = select_device(env.local_rank)
    rt = Runtime(device, resolve_precision(hp.precision, device))
    seed_everything(hp.seed)
    reporter = ProgressReporter("finetune", port=step.progress_port) if env.is_main else None
    stop = GracefulStop().install()
    held = contextlib.ExitStack()
    try:
        held.enter_context(
            ownership.hold(storage.local_path(step.output_uri) if env.is_main else None)
        )
        ready = _setup(step, rt, reporter)
        job = _build_trainee(step, ready, rt, env)
        watch = open_watchers(step, env.is_main, ready.dataset.info.version, stop)  # TB, MLflow
        held.callback(watch.close)
        out_ctx: Any = storage.output_dir(step.output_uri) if env.is_main else _scratch_dir()
        with out_ctx as out:
            trained = _train(step, ready, job, out, reporter, watch, stop)
            full_state = dist.full_model_state(job.trainee.model, env)
            if not env.is_main:
                return StepResult(step="finetune", ok=True, reason="Completed")
            if reporter:
                reporter.update(phase="Saving", message="writing the model")
            results = _save(step, ready, job, trained, out, full_state, started, watch)
            manifest = _write_manifest(step, ready, out)
        if reporter:
            reporter.update(phase="Succeeded", message="done")
        watch.finish(
            {"kubetune.outputUri": step.output_uri, "kubetune.hash": manifest.content_hash}
        )
        return _succeeded(step, results, manifest, watch, trained.outcome, ready.bundle)
    finally:
        held.close()
        stop.uninstall()
        if reporter:
            reporter.close()


def _setup(step: FinetuneStepSpec, rt: Runtime, reporter: ProgressReporter | None) -> Prepared:
    """Setup: read and check the dataset, load the model, tokenize (and pack) the splits."""
    spec, hp = step.spec, step.spec.hyperparameters
    dataset_path = storage.fetch(step.dataset.uri)
    dataset = open_dataset(dataset_path)
    splits = {s: dataset.records(s) for s in SPLITS}
    if not splits["train"]:
        raise invalid_input("the dataset's train split is empty")
    for name, records in splits.items():
        if spec.preference is not None:
            preference_data.check_records(records, name, dataset.schema, spec.preference)
        else:
            data.check_fields(records, spec.objective, name)
    if reporter:
        reporter.update(phase="Loading", message="loading the model")
    bundle = prepare_model(step, dataset, rt)
    tokenizer = bundle.tokenizer
    tokenized = {
        s: data.tokenize(r, tokenizer, spec.objective, hp.max_seq_length, spec.prompt_template)
        if spec.preference is None
        else preference_data.tokenize_for(r, tokenizer, spec)
        for s, r in splits.items()
    }
    criterion = preference.prepare(bundle, spec, tokenized, rt) if spec.preference else None
    train_rows = tokenized["train"].examples
    if not train_rows:
        raise invalid_input("no training example has tokens to learn from after tokenization")
    if hp.packing and spec.objective != "continued-pretraining":
        count = len(train_rows)
        train_rows = pack(train_rows, hp.max_seq_length)
        log.info("packed %d examples into %d rows", count, len(train_rows))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Prepared(dataset, dataset_path, splits, bundle, tokenized, criterion, train_rows, pad_id)


def _build_trainee(
    step: FinetuneStepSpec, ready: Prepared, rt: Runtime, env: dist.DistEnv
) -> Training:
    """Setup: speed levers, the batch plan, the (wrapped) model, optimizer and scheduler."""
    hp = step.spec.hyperparameters
    speed = performance.prepare(
        ready.bundle.model,
        step,
        ready.train_rows,
        rt,
        env,
        ready.pad_id,
        sequence_model=ready.criterion is None,
    )  # attention path, Liger kernels, auto micro-batch, torch.compile
    plan = BatchPlan(len(ready.train_rows), speed.batch_size, env.world_size, env.rank, hp.seed)
    model = dist.wrap_model(ready.bundle.model, env, rt.device)
    optimizer = optim.build_optimizer(model, hp, rt.device)
    steps = training_loop.total_steps(step, plan, speed.accumulation)
    trainee = training_loop.Trainee(
        model=model,
        optimizer=optimizer,
        scheduler=optim.build_scheduler(optimizer, hp, steps),
        scaler=rt.grad_scaler(),
        rt=rt,
        env=env,
        pad_id=ready.pad_id,
        max_grad_norm=hp.max_grad_norm,
        criterion=ready.criterion,
        varlen=speed.attention.varlen,
        accumulation=speed.accumulation,
    )
    return Training(trainee, plan, speed, checkpoints.checkpoint_root(step))


def _train(
    step: FinetuneStepSpec,
    ready: Prepared,
    job: Training,
    out: Path,
    reporter: ProgressReporter | None,
    watch: Watchers,
    stop: GracefulStop,
) -> Trained:
    """Train: the training loop, then the perplexity of whole validation records."""
    env = job.trainee.env
    metrics = MetricsLog(out / "metrics.jsonl" if env.is_main else None, reporter, watch.sinks)
    outcome = training_loop.train(
        job.trainee,
        step,
        ready.train_rows,
        ready.tokenized["validation"].examples,
        job.plan,
        metrics,
        job.ckpt_root,
        stop,
    )
    record_perplexity: float | None = None
    if ready.splits["validation"] and (env.is_main or env.fsdp) and ready.criterion is None:
        # FSDP shards the weights: every rank takes part in each forward pass, so all
        # ranks measure (the same records) before the others leave; otherwise rank 0.
        if reporter:
            reporter.update(phase="Measuring", message="measuring perplexity")
        record_perplexity = _record_perplexity(
            job.trainee, step, ready.splits["validation"], ready.bundle.tokenizer
        )
    return Trained(outcome, metrics, record_perplexity)


def _save(
    step: FinetuneStepSpec,
    ready: Prepared,
    job: Training,
    trained: Trained,
    out: Path,
    full_state: dict[str, torch.Tensor] | None,
    started: float,
    watch: Watchers,
) -> dict[str, Any]:
    """Save: the model, ``results.json``, model card, training report and checkpoints."""
    model, env = dist.unwrap(job.trainee.model), job.trainee.env
    outputs.save_artifact(model, ready.bundle, out, step, full_state)
    peak = peak_flops(job.trainee.rt.device)
    fpt = flops_per_token(model, ready.bundle.format == "adapter")
    results = _results(trained.outcome, ready.bundle, ready.tokenized, started, fpt, peak, env)
    if trained.record_perplexity is not None:
        results["perplexity"] = trained.record_perplexity
    results["performance"] = job.speed.summary()
    if ready.criterion is not None:
        results = preference.adjust_results(results, trained.metrics.last, ready.criterion)
    outputs.write_results(out, results)
    outputs.write_model_card(out, step, ready.bundle, results, ready.dataset.info.version)
    watch.write_report(out, step, results)  # training-report.html
    _adopt_checkpoints(step, job.ckpt_root, out)
    return results


def _write_manifest(step: FinetuneStepSpec, ready: Prepared, out: Path) -> ArtifactManifest:
    """Save, last: the manifest, with the dataset and model the run read."""
    inputs = [input_artifact(step.dataset.uri, ready.dataset_path, "dataset")]
    if step.model is not None:
        model_path = storage.fetch(step.model.uri)
        inputs.append(input_artifact(step.model.uri, model_path, "model"))
    spec = step.spec
    return write_manifest(
        out,
        artifact="model",
        producer=step.producer,
        spec=checkpoints.resume_key(step),
        inputs=inputs,
        seed=spec.hyperparameters.seed,
        extra={"method": spec.method, "objective": spec.objective, "format": ready.bundle.format},
    )


def _succeeded(
    step: FinetuneStepSpec,
    results: dict[str, Any],
    manifest: ArtifactManifest,
    watch: Watchers,
    outcome: training_loop.Outcome,
    bundle: ModelBundle,
) -> StepResult:
    """The termination-message summary of a finished run."""
    return StepResult(
        step="finetune",
        ok=True,
        reason="Completed",
        message=_summary(results),
        output_uri=step.output_uri,
        content_hash=manifest.content_hash,
        **watch.result_fields(step),
        metrics=_status_metrics(results),
        details={
            "step": outcome.state.step,
            "totalSteps": outcome.total_steps,
            "resumedFromStep": outcome.resumed_from,
            "stoppedEarly": outcome.state.stopped_early,
            "format": bundle.format,
            "rollbacks": outcome.rollbacks or None,
        },
    )


@contextlib.contextmanager
def _scratch_dir() -> Iterator[Path]:
    """Where non-zero ranks 'write' (nothing of theirs is kept)."""
    path = Path(tempfile.mkdtemp(prefix="kubetune-rank-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _record_perplexity(
    t: training_loop.Trainee,
    step: FinetuneStepSpec,
    records: list[dict[str, Any]],
    tokenizer: Any,
) -> float:
    """Perplexity of whole validation records, by the implementation Compression and
    Evaluation use (:mod:`kubetune_workloads.likelihood`), so the three kinds agree. For
    ``continued-pretraining`` it equals ``eval_perplexity``; other objectives score only
    responses in ``eval_perplexity``."""
    model = dist.unwrap(t.model)
    docs = render_records(records, tokenizer, outputs.instruction_template(step))
    training_loop.eval_mode(model, t.rt)
    try:
        with t.rt.autocast():
            block = block_length(step.spec.hyperparameters.max_seq_length, None)
            losses = stream_losses(model, docs, block, packed_for(step.spec.objective))
    finally:
        model.train()
    return losses.perplexity


def _adopt_checkpoints(step: FinetuneStepSpec, root: Path, out: Path) -> None:
    """Move default-location checkpoints (inside the final output) into the new artifact."""
    default_location = step.checkpoint_uri is None and storage.local_path(step.output_uri)
    if default_location and root.is_dir():
        shutil.move(str(root), str(out / "checkpoints"))


def _results(
    outcome: training_loop.Outcome,
    bundle: ModelBundle,
    tokenized: dict[str, Any],
    started: float,
    fpt: float,
    peak: float | None,
    env: dist.DistEnv,
) -> dict[str, Any]:
    world = env.world_size
    results: dict[str, Any] = {
        "steps": outcome.state.step,
        "total_steps": outcome.total_steps,
        "train_loss": outcome.train_loss,
        "eval_loss": outcome.eval_loss,
        "eval_perplexity": perplexity(outcome.eval_loss),
        "tokens_seen": outcome.state.tokens_seen,
        "tokens_per_second": outcome.tokens_per_second,
        "train_seconds": outcome.train_seconds,
        "wall_time_seconds": time.perf_counter() - started,
        "trainable_params": bundle.trainable_params,
        "total_params": bundle.total_params,
        "train_examples": len(tokenized["train"].examples),
        "truncated_examples": tokenized["train"].truncated,
        "dropped_examples": tokenized["train"].dropped,
        "resumed_from_step": outcome.resumed_from,
        "stopped_early": outcome.state.stopped_early,
        "world_size": world,
        "rollbacks": outcome.rollbacks or None,
        "learning_rate_scale": outcome.state.lr_scale if outcome.rollbacks else None,
    }
    if peak:
        results["mfu"] = outcome.tokens_per_second * fpt / (peak * world)
    return {k: v for k, v in results.items() if v is not None}


STATUS_METRICS = {
    "train_loss": RESULT_TRAIN_LOSS,
    "eval_loss": "evalLoss",
    "eval_perplexity": "evalPerplexity",
    "perplexity": "perplexity",
    "tokens_per_second": "tokensPerSecond",
    "tokens_seen": "tokensSeen",
    "steps": "steps",
    "trainable_params": "trainableParams",
    "wall_time_seconds": "wallTimeSeconds",
    "mfu": "mfu",
    "reward_accuracy": "rewardAccuracy",
    "reward_margin": "rewardMargin",
    "eval_reward_accuracy": "evalRewardAccuracy",
    "eval_reward_margin": "evalRewardMargin",
}  # results.json key -> status metric


def _status_metrics(results: dict[str, Any]) -> dict[str, float]:
    found = {camel: float(results[key]) for key, camel in STATUS_METRICS.items() if key in results}
    if results.get("rollbacks"):
        found["rollbacks"] = float(len(results["rollbacks"]))
        found["learningRateScale"] = float(results["learning_rate_scale"])
    return found


def _summary(results: dict[str, Any]) -> str:
    parts = [f"trained {results['steps']} steps"]
    if "train_loss" in results:
        parts.append(f"train loss {results['train_loss']:.4f}")
    if "eval_loss" in results:
        parts.append(f"eval loss {results['eval_loss']:.4f}")
    parts.append(f"{results['tokens_per_second']:.0f} tokens/s")
    return ", ".join(parts)
