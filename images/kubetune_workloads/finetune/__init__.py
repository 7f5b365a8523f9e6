"""The finetune step: ``python -m kubetune_workloads finetune --spec FILE``.

:func:`run` trains a model as a ``FinetuneStepSpec`` says (transfer learning, domain
adaptation or task SFT; full, LoRA or QLoRA; from a base, an earlier output, or from scratch),
on one process or under torchrun (DDP/FSDP), resuming from the latest complete checkpoint,
and writes an HF-format artifact with ``metrics.jsonl``, ``results.json``, a model card and a
manifest (last). Modules: ``model_setup`` (what to train), ``tokenizer_setup``,
``architectures``, ``data`` (objectives), ``batching`` (packing, order), ``optim``, ``loop``,
``checkpoints``, ``distributed``, ``tracking``, ``outputs``; what a run shows of itself:
``watchers`` (``tensorboard_sink``, ``mlflow_sink``) and ``training_report``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from kubetune.api.contract import RESULT_TRAIN_LOSS
from kubetune.api.steps import FinetuneStepSpec, StepResult

log = logging.getLogger(__name__)


def run(step: FinetuneStepSpec) -> StepResult:
    """Train, write the artifact, and return the summary for the termination message."""
    from kubetune_workloads.finetune import distributed as dist

    env = dist.init_distributed(step.spec.distributed.strategy)
    try:
        result = _run(step, env)
        return dist.broadcast_object(env, result) if env.enabled else result
    finally:
        dist.shutdown(env)


def _run(step: FinetuneStepSpec, env: Any) -> StepResult:
    from kubetune_workloads import storage
    from kubetune_workloads.datasetio import open_dataset
    from kubetune_workloads.errors import invalid_input
    from kubetune_workloads.finetune import (
        checkpoints,
        data,
        loop,
        optim,
        outputs,
        ownership,
        performance,
        preference,
        preference_data,
    )
    from kubetune_workloads.finetune import distributed as dist
    from kubetune_workloads.finetune.batching import BatchPlan, pack
    from kubetune_workloads.finetune.guards import GracefulStop
    from kubetune_workloads.finetune.model_setup import prepare_model
    from kubetune_workloads.finetune.runtime import (
        Runtime,
        resolve_precision,
        seed_everything,
        select_device,
    )
    from kubetune_workloads.finetune.tracking import MetricsLog, flops_per_token, peak_flops
    from kubetune_workloads.finetune.watchers import open_watchers
    from kubetune_workloads.manifest import input_artifact, write_manifest
    from kubetune_workloads.progress import ProgressReporter

    started = time.perf_counter()
    spec, hp = step.spec, step.spec.hyperparameters
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
        dataset_path = storage.fetch(step.dataset.uri)
        dataset = open_dataset(dataset_path)
        splits = {s: dataset.records(s) for s in ("train", "validation")}
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
        speed = performance.prepare(
            bundle.model, step, train_rows, rt, env, pad_id, sequence_model=criterion is None
        )  # attention path, Liger kernels, auto micro-batch, torch.compile
        plan = BatchPlan(len(train_rows), speed.batch_size, env.world_size, env.rank, hp.seed)
        model = dist.wrap_model(bundle.model, env, device)
        optimizer = optim.build_optimizer(model, hp, device)
        steps = loop.total_steps(step, plan, speed.accumulation)
        trainee = loop.Trainee(
            model=model,
            optimizer=optimizer,
            scheduler=optim.build_scheduler(optimizer, hp, steps),
            scaler=rt.grad_scaler(),
            rt=rt,
            env=env,
            pad_id=pad_id,
            max_grad_norm=hp.max_grad_norm,
            criterion=criterion,
            varlen=speed.attention.varlen,
            accumulation=speed.accumulation,
        )
        ckpt_root = checkpoints.checkpoint_root(step)
        watch = open_watchers(step, env.is_main, dataset.info.version, stop)  # TB, MLflow
        held.callback(watch.close)
        out_ctx: Any = storage.output_dir(step.output_uri) if env.is_main else _scratch_dir()
        with out_ctx as out:
            metrics = MetricsLog(
                out / "metrics.jsonl" if env.is_main else None, reporter, watch.sinks
            )
            outcome = loop.train(
                trainee,
                step,
                train_rows,
                tokenized["validation"].examples,
                plan,
                metrics,
                ckpt_root,
                stop,
            )
            record_perplexity: float | None = None
            if splits["validation"] and (env.is_main or env.fsdp) and criterion is None:
                # FSDP shards the weights: every rank takes part in each forward pass, so all
                # ranks measure (the same records) before the others leave; otherwise rank 0.
                if reporter:
                    reporter.update(phase="Measuring", message="measuring perplexity")
                record_perplexity = _record_perplexity(
                    trainee, step, splits["validation"], tokenizer
                )
            full_state = dist.full_model_state(model, env)
            if not env.is_main:
                return StepResult(step="finetune", ok=True, reason="Completed")
            if reporter:
                reporter.update(phase="Saving", message="writing the model")
            outputs.save_artifact(dist.unwrap(model), bundle, out, step, full_state)
            peak = peak_flops(device)
            fpt = flops_per_token(dist.unwrap(model), bundle.format == "adapter")
            results = _results(outcome, bundle, tokenized, started, fpt, peak, env.world_size)
            if record_perplexity is not None:
                results["perplexity"] = record_perplexity
            results["performance"] = speed.summary()
            if criterion is not None:
                results = preference.adjust_results(results, metrics.last, criterion)
            outputs.write_results(out, results)
            outputs.write_model_card(out, step, bundle, results, dataset.info.version)
            watch.write_report(out, step, results)  # training-report.html
            _adopt_checkpoints(step, ckpt_root, out)
            inputs = [input_artifact(step.dataset.uri, dataset_path, "dataset")]
            if step.model is not None:
                model_path = storage.fetch(step.model.uri)
                inputs.append(input_artifact(step.model.uri, model_path, "model"))
            manifest = write_manifest(
                out,
                artifact="model",
                producer=step.producer,
                spec=checkpoints.resume_key(step),
                inputs=inputs,
                seed=hp.seed,
                extra={"method": spec.method, "objective": spec.objective, "format": bundle.format},
            )
        if reporter:
            reporter.update(phase="Succeeded", message="done")
        watch.finish(
            {"kubetune.outputUri": step.output_uri, "kubetune.hash": manifest.content_hash}
        )
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
    finally:
        held.close()
        stop.uninstall()
        if reporter:
            reporter.close()


@contextlib.contextmanager
def _scratch_dir() -> Any:
    """Where non-zero ranks 'write' (nothing of theirs is kept)."""
    path = Path(tempfile.mkdtemp(prefix="kubetune-rank-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _record_perplexity(t: Any, step: FinetuneStepSpec, records: list[Any], tokenizer: Any) -> float:
    """Perplexity of whole validation records, by the implementation Compression and
    Evaluation use (:mod:`kubetune_workloads.likelihood`), so the three kinds agree. For
    ``continued-pretraining`` it equals ``eval_perplexity``; other objectives score only
    responses in ``eval_perplexity``."""
    from kubetune_workloads.finetune import distributed as dist
    from kubetune_workloads.finetune import loop, outputs
    from kubetune_workloads.likelihood import (
        block_length,
        packed_for,
        render_records,
        stream_losses,
    )

    model = dist.unwrap(t.model)
    docs = render_records(records, tokenizer, outputs.instruction_template(step))
    loop._eval_mode(model, t.rt)
    try:
        with t.rt.autocast():
            block = block_length(step.spec.hyperparameters.max_seq_length, None)
            losses = stream_losses(model, docs, block, packed_for(step.spec.objective))
    finally:
        model.train()
    return losses.perplexity


def _adopt_checkpoints(step: FinetuneStepSpec, root: Path, out: Path) -> None:
    """Move default-location checkpoints (inside the final output) into the new artifact."""
    from kubetune_workloads import storage

    default_location = step.checkpoint_uri is None and storage.local_path(step.output_uri)
    if default_location and root.is_dir():
        shutil.move(str(root), str(out / "checkpoints"))


def _results(
    outcome: Any,
    bundle: Any,
    tokenized: dict[str, Any],
    started: float,
    fpt: float,
    peak: float | None,
    world: int,
) -> dict[str, Any]:
    from kubetune_workloads.finetune.tracking import perplexity

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


def _status_metrics(results: dict[str, Any]) -> dict[str, float]:
    names = {
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
    }
    found = {camel: float(results[key]) for key, camel in names.items() if key in results}
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
