"""The SFT training loop (preference objectives plug in a criterion): accumulation, mixed
precision, clipping, logging, eval, early stopping, NaN and divergence guards, checkpoints,
resume. A plain torch loop (no Trainer), so the per-step overhead is small.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from kubetune.api.steps import FinetuneStepSpec

from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.finetune import checkpoints
from kubetune_workloads.finetune import distributed as dist
from kubetune_workloads.finetune.batching import BatchPlan, collate
from kubetune_workloads.finetune.data import Example
from kubetune_workloads.finetune.guards import Divergence, DivergenceMonitor, GracefulStop
from kubetune_workloads.finetune.host_sync import PendingLosses, all_reduce_step
from kubetune_workloads.finetune.runtime import Runtime
from kubetune_workloads.finetune.tracking import (
    MetricsLog,
    Throughput,
    peak_memory_gib,
    perplexity,
)

log = logging.getLogger(__name__)


@dataclass
class LoopState:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    micro_step: int = 0
    tokens_seen: int = 0
    best_eval_loss: float | None = None
    evals_without_improvement: int = 0
    stopped_early: bool = False
    lr_scale: float = 1.0  # learning-rate multiplier left by divergence rollbacks
    rollbacks: int = 0


@dataclass
class Trainee:
    """The objects one training run moves forward."""

    model: Any  # wrapped for DDP when distributed
    optimizer: Any
    scheduler: Any
    scaler: Any
    rt: Runtime
    env: dist.DistEnv
    pad_id: int
    max_grad_norm: float = 1.0
    grad_norm: Any = None  # the last optimizer step's gradient norm (a tensor), before clipping
    criterion: Any = None  # objective preference: a finetune.preference.PreferenceCriterion
    varlen: bool = False  # FlashAttention varlen: micro-batches flattened (batching.collate)
    accumulation: int | None = None  # micro-batches per step, when auto micro-batch chose it


@dataclass
class Outcome:
    """What the loop reports to the outputs."""

    state: LoopState
    total_steps: int
    train_loss: float | None = None
    eval_loss: float | None = None
    tokens_per_second: float = 0.0
    train_seconds: float = 0.0
    resumed_from: int | None = None
    history: dict[str, float] = field(default_factory=dict)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)


def total_steps(step: FinetuneStepSpec, plan: BatchPlan, accumulation: int | None = None) -> int:
    """Optimizer steps: ``maxSteps``, else epochs x micro-batches / accumulation."""
    hp = step.spec.hyperparameters
    if hp.max_steps is not None:
        return hp.max_steps
    epochs = hp.epochs or 1.0
    accum = accumulation or hp.gradient_accumulation_steps
    return max(1, math.ceil(epochs * plan.micro_batches_per_epoch / accum))


def evaluate(t: Trainee, rows: list[Example], batch_size: int) -> float | None:
    """Token-weighted validation loss (every rank evaluates the whole split)."""
    if not rows:
        return None
    model = dist.unwrap(t.model)
    eval_mode(model, t.rt)
    if t.criterion is not None:
        try:
            return float(t.criterion.evaluate(model, rows, batch_size, t.rt))
        finally:
            model.train()
    loss_sum, scored = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = collate(rows[i : i + batch_size], t.pad_id, t.rt.device, t.varlen)
            with t.rt.autocast():
                out = model(**batch["inputs"], use_cache=False)
            loss_sum += float(out.loss.float()) * batch["scored"]
            scored += batch["scored"]
    model.train()
    return loss_sum / max(scored, 1)


def eval_mode(model: Any, rt: Runtime) -> None:
    """``model.eval()``; on CPU, bitsandbytes 4-bit layers stay in training mode, which only
    selects their kernel (they have no dropout): their eval-mode CPU repacking fails on
    layers narrower than one quantization block."""
    model.eval()
    if rt.device.type != "cpu":
        return
    for module in model.modules():
        if type(module).__name__ == "Linear4bit":
            module.train()


def resume(t: Trainee, step: FinetuneStepSpec, root: Path, metrics: MetricsLog) -> LoopState:
    """Restore the latest complete checkpoint, if any and if resuming is on."""
    if step.spec.checkpointing.resume != "auto":
        return LoopState()
    found = checkpoints.load_latest(root, checkpoints.resume_key(step))
    if found is None:
        return LoopState()
    state = _restore(t, found, metrics)
    metrics.mark(state.step, "resume")
    return state


def _restore(t: Trainee, found: Any, metrics: MetricsLog) -> LoopState:
    dist.load_trainable_state(t.model, t.env, found.weights)
    dist.load_optimizer_state(t.model, t.optimizer, t.env, found.trainer["optimizer"])
    t.scheduler.load_state_dict(found.trainer["scheduler"])
    if t.scaler is not None and found.trainer.get("scaler"):
        t.scaler.load_state_dict(found.trainer["scaler"])
    _set_rng(found.trainer["rng"])
    metrics.restore(found.metrics_lines, found.step)
    log.info("resumed from checkpoint %s (step %d)", found.path, found.step)
    return LoopState(**found.state)


def train(
    t: Trainee,
    step: FinetuneStepSpec,
    train_rows: list[Example],
    val_rows: list[Example],
    plan: BatchPlan,
    metrics: MetricsLog,
    ckpt_root: Path,
    stop: GracefulStop | None = None,
) -> Outcome:
    """Train to the planned number of optimizer steps (resuming from the latest checkpoint),
    stopping early, on a signal (checkpoint, then ``Interrupted``/``Preempted``), on a NaN
    loss or on divergence (roll back or fail); evaluate at the end."""
    run = _TrainingRun(t, step, train_rows, val_rows, plan, metrics, ckpt_root, stop)
    if stop is not None:
        stop.armed = True
    t.model.train()
    while run.state.step < run.steps and not run.state.stopped_early:
        run.advance()
    if stop is not None:
        stop.armed = False  # saving the artifact is short: a signal now interrupts at once
    return run.finish()


@dataclass
class _TrainingRun:
    """One call of :func:`train`: what it works with (the fields) and what changes from step
    to step (set up in ``__post_init__``: state, outcome, throughput, guards)."""

    t: Trainee
    step: FinetuneStepSpec
    train_rows: list[Example]
    val_rows: list[Example]
    plan: BatchPlan
    metrics: MetricsLog
    ckpt_root: Path
    stop: GracefulStop | None

    def __post_init__(self) -> None:
        t, step, metrics = self.t, self.step, self.metrics
        self.spec = step.spec
        self.accum = t.accumulation or self.spec.hyperparameters.gradient_accumulation_steps
        self.steps = total_steps(step, self.plan, self.accum)
        self.state = resume(t, step, self.ckpt_root, metrics)
        self.outcome = Outcome(
            state=self.state, total_steps=self.steps, resumed_from=self.state.step or None
        )
        if self.state.step:
            self.outcome.train_loss = metrics.last.get("loss")
        self.params = [p for p in t.model.parameters() if p.requires_grad]
        self.speed = Throughput()
        self.window_loss, self.window_steps, self.last_eval_step = 0.0, 0, -1
        vocab = getattr(dist.unwrap(t.model).config, "vocab_size", None)
        uniform_guess = isinstance(vocab, int) and t.criterion is None  # ln(V): LM losses only
        self.monitor = DivergenceMonitor(self.spec.divergence, vocab if uniform_guess else None)
        self.pending = PendingLosses()  # losses stay on the device until the host needs them

    def advance(self) -> None:
        """One optimizer step, then what its number asks for: log, evaluate, checkpoint."""
        state, stop = self.state, self.stop
        step_loss, tokens, stopping = _optimizer_step(
            self.t, self.train_rows, self.plan, state.micro_step, self.accum, self.params, stop
        )
        state.micro_step += self.accum
        state.step += 1
        state.tokens_seen += tokens
        self.speed.add(tokens)
        self.pending.add(state.step, step_loss)
        has_val = bool(self.val_rows)
        if not (
            stopping or self.pending.full or _needs_host(state.step, self.steps, self.spec, has_val)
        ):
            return
        if not self._read_losses():
            return
        epoch = state.micro_step / self.plan.micro_batches_per_epoch
        logging_steps = self.spec.hyperparameters.logging_steps
        if state.step == 1 or state.step % logging_steps == 0 or state.step == self.steps:
            self._log(epoch)
        if not self._evaluate_every(epoch):
            return
        if stopping and stop is not None and state.step < self.steps:
            _checkpoint(self.t, self.step, state, self.ckpt_root, self.metrics)
            raise WorkloadError(
                stop.reason,
                f"{stop.signal_name} after step {state.step}/{self.steps}: wrote checkpoint-"
                f"{state.step}; the next run resumes from it",
            )
        every_ckpt = self.spec.checkpointing.every_steps
        healthy = not self.monitor.bad_steps  # never checkpoint a run that may be diverging
        if every_ckpt and state.step % every_ckpt == 0 and state.step < self.steps and healthy:
            _checkpoint(self.t, self.step, state, self.ckpt_root, self.metrics)

    def _read_losses(self) -> bool:
        """Read the queued losses (NaN check, divergence guard); False when it rolled back."""
        try:
            for done_step, loss_value in self.pending.drain():
                _check_finite(done_step, loss_value)
                self.monitor.check_loss(done_step, loss_value)
                self.window_loss += loss_value
                self.window_steps += 1
        except Divergence as exc:
            self._roll_back(exc)
            return False
        return True

    def _roll_back(self, exc: Divergence) -> None:
        self.state = _roll_back_or_fail(
            self.t, self.step, self.state, self.ckpt_root, self.metrics, self.outcome, exc
        )
        self.monitor.reset()
        self.window_loss, self.window_steps = 0.0, 0

    def _log(self, epoch: float) -> None:
        """A metrics line and the live progress, over the steps since the last line."""
        t, state, outcome = self.t, self.state, self.outcome
        outcome.train_loss = self.window_loss / self.window_steps
        rate = self.speed.window_rate()
        lr = t.scheduler.get_last_lr()[0]
        self.metrics.write(
            {
                "step": state.step,
                "epoch": round(epoch, 4),
                "loss": outcome.train_loss,
                "learning_rate": lr,
                "tokens_per_second": rate,
                "tokens_seen": state.tokens_seen,
                "grad_norm": _grad_norm(t),
                "peak_memory_gib": peak_memory_gib(t.rt.device),
                **(t.criterion.window_metrics() if t.criterion is not None else {}),
            }
        )
        self.metrics.progress(
            step=state.step,
            total_steps=self.steps,
            epoch=epoch,
            loss=outcome.train_loss,
            learning_rate=lr,
            tokens_per_second=rate,
            phase="Training",
            message="training",
        )
        self.window_loss, self.window_steps = 0.0, 0

    def _evaluate_every(self, epoch: float) -> bool:
        """The periodic evaluation, when due; False when its loss made the run roll back."""
        every, state = self.spec.evaluation.every_steps, self.state
        if not (every and self.val_rows and state.step % every == 0):
            return True
        prior_best = state.best_eval_loss
        self.outcome.eval_loss = _eval_and_track(
            self.t, self.val_rows, self.plan.batch_size, state, self.spec, self.metrics, epoch
        )
        self.last_eval_step = state.step
        try:
            self.monitor.check_eval(state.step, self.outcome.eval_loss, prior_best)
        except Divergence as exc:
            self._roll_back(exc)
            return False
        return True

    def finish(self) -> Outcome:
        """Throughput, and the final evaluation unless the last step just had one."""
        outcome, state, metrics = self.outcome, self.state, self.metrics
        outcome.train_seconds = self.speed.elapsed
        outcome.tokens_per_second = self.speed.overall_rate()
        if self.val_rows and self.last_eval_step != state.step:
            outcome.eval_loss = evaluate(self.t, self.val_rows, self.plan.batch_size)
            criterion = self.t.criterion
            metrics.write(
                {
                    "step": state.step,
                    "eval_loss": outcome.eval_loss,
                    "eval_perplexity": perplexity(outcome.eval_loss),
                    **(criterion.last_eval if criterion is not None else {}),
                }
            )
        elif self.val_rows:
            outcome.eval_loss = metrics.last.get("eval_loss", outcome.eval_loss)
        if outcome.eval_loss is not None and self.last_eval_step != state.step:
            try:
                self.monitor.check_eval(state.step, outcome.eval_loss, state.best_eval_loss)
            except Divergence as exc:
                raise WorkloadError("Diverged", exc.message) from None
        return outcome


def _needs_host(step_no: int, steps: int, spec: Any, has_val: bool) -> bool:
    """Whether this step logs, evaluates or checkpoints (and so needs the losses read)."""
    logs = step_no == 1 or step_no % spec.hyperparameters.logging_steps == 0 or step_no == steps
    every_eval, every_ckpt = spec.evaluation.every_steps, spec.checkpointing.every_steps
    evaluates = bool(every_eval and has_val and step_no % every_eval == 0)
    return logs or evaluates or bool(every_ckpt and step_no % every_ckpt == 0)


def _check_finite(step_no: int, loss_value: float) -> None:
    if not math.isfinite(loss_value):
        raise WorkloadError(
            "NaNLoss",
            f"the training loss became {loss_value} at step {step_no}; lower the learning "
            "rate, use bf16 instead of fp16, or check the data and the model weights",
        )


def _roll_back_or_fail(
    t: Trainee,
    step: FinetuneStepSpec,
    state: LoopState,
    root: Path,
    metrics: MetricsLog,
    outcome: Outcome,
    exc: Divergence,
) -> LoopState:
    """Restore the last complete checkpoint with a lower learning rate, or fail ``Diverged``."""
    guard = step.spec.divergence
    if not guard.rollback or state.rollbacks >= guard.max_rollbacks:
        raise WorkloadError("Diverged", exc.message) from None
    found = checkpoints.load_latest(root, checkpoints.resume_key(step))
    if found is None:
        raise WorkloadError(
            "Diverged", exc.message + "; no complete checkpoint to roll back to"
        ) from None
    scale = state.lr_scale * guard.rollback_lr_factor
    rollbacks = state.rollbacks + 1
    restored = _restore(t, found, metrics)
    metrics.mark(restored.step, "rollback")
    factor = scale / restored.lr_scale
    t.scheduler.base_lrs = [lr * factor for lr in t.scheduler.base_lrs]
    for group in t.optimizer.param_groups:
        group["lr"] *= factor
    restored.lr_scale, restored.rollbacks = scale, rollbacks
    outcome.state = restored
    record = {"atStep": exc.step, "toStep": restored.step, "learningRateScale": scale}
    outcome.rollbacks.append(record)
    log.warning(
        "divergence at step %d: rolled back to step %d with learning rate x%g (%s)",
        exc.step, restored.step, scale, exc.message,
    )  # fmt: skip
    return restored


def _optimizer_step(
    t: Trainee,
    rows: list[Example],
    plan: BatchPlan,
    micro_step: int,
    accum: int,
    params: list[torch.nn.Parameter],
    stop: GracefulStop | None = None,
) -> tuple[torch.Tensor, int, bool]:
    """Forward/backward over ``accum`` micro-batches, then one clipped optimizer step.

    Returns the (all-rank mean) loss as a device tensor (read later: no host sync here on one
    process), the number of real tokens all ranks processed, and whether any rank was asked to
    stop (so every rank stops after the same step). A non-finite loss still steps; the loop
    fails the run (``NaNLoss``) when it reads the loss, before any checkpoint.
    """
    picked = [[rows[i] for i in plan.indices(micro_step + k)] for k in range(accum)]
    if t.criterion is not None:
        batches = [t.criterion.collate(chunk, t.pad_id, t.rt.device) for chunk in picked]
    else:
        batches = [collate(chunk, t.pad_id, t.rt.device, t.varlen) for chunk in picked]
    scored_total = sum(b["scored"] for b in batches)
    step_loss = torch.zeros((), device=t.rt.device)
    tokens = 0
    for k, batch in enumerate(batches):
        no_sync = t.env.enabled and not t.env.fsdp and k < accum - 1
        sync_ctx = t.model.no_sync() if no_sync else contextlib.nullcontext()
        with sync_ctx:
            with t.rt.autocast():
                if t.criterion is not None:
                    raw_loss = t.criterion.loss(t.model, batch)
                else:
                    raw_loss = t.model(**batch["inputs"], use_cache=False).loss
            loss = raw_loss.float() * (batch["scored"] / scored_total)
            (t.scaler.scale(loss) if t.scaler is not None else loss).backward()
        step_loss += loss.detach()
        tokens += batch["tokens"]
    asked = stop is not None and stop.requested
    if t.env.enabled:  # one small all-reduce; reading its result is this step's only sync
        step_loss, tokens, asked = all_reduce_step(t.env, step_loss, tokens, asked)
    if t.scaler is not None:
        t.scaler.unscale_(t.optimizer)
    t.grad_norm = torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
    if t.scaler is not None:
        t.scaler.step(t.optimizer)
        t.scaler.update()
    else:
        t.optimizer.step()
    t.scheduler.step()
    t.optimizer.zero_grad(set_to_none=True)
    return step_loss, tokens, asked


def _eval_and_track(
    t: Trainee,
    val_rows: list[Example],
    batch_size: int,
    state: LoopState,
    spec: Any,
    metrics: MetricsLog,
    epoch: float,
) -> float | None:
    loss = evaluate(t, val_rows, batch_size)
    metrics.write(
        {
            "step": state.step,
            "epoch": round(epoch, 4),
            "eval_loss": loss,
            "eval_perplexity": perplexity(loss),
            **(t.criterion.last_eval if t.criterion is not None else {}),
        }
    )
    if loss is None:
        return None
    if state.best_eval_loss is None or loss < state.best_eval_loss:
        state.best_eval_loss, state.evals_without_improvement = loss, 0
    else:
        state.evals_without_improvement += 1
        patience = spec.evaluation.early_stopping_patience
        if patience and state.evals_without_improvement >= patience:
            log.info("early stopping at step %d: no improvement in %d evals", state.step, patience)
            state.stopped_early = True
    return loss


def _checkpoint(
    t: Trainee, step: FinetuneStepSpec, state: LoopState, root: Path, metrics: MetricsLog
) -> None:
    weights = dist.trainable_state(t.model, t.env)
    optim = dist.optimizer_state(t.model, t.optimizer, t.env)
    if t.env.is_main:
        metrics.mark(state.step, "checkpoint")  # before the copy: a resumed run keeps it
        checkpoints.save(
            root,
            state.step,
            weights=weights,
            trainer={
                "optimizer": optim,
                "scheduler": t.scheduler.state_dict(),
                "scaler": t.scaler.state_dict() if t.scaler is not None else None,
                "rng": _get_rng(),
            },
            state=asdict(state),
            metrics_file=metrics.path,
            step=step,
            keep_last=step.spec.checkpointing.keep_last,
        )
    dist.barrier(t.env)


def _grad_norm(t: Trainee) -> float | None:
    """The last step's gradient norm as a number (FSDP: the full norm, a collective)."""
    norm = t.grad_norm
    if norm is None:
        return None
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


def _get_rng() -> dict[str, Any]:
    rng: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _set_rng(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and "cuda" in rng:
        torch.cuda.set_rng_state_all(rng["cuda"])
