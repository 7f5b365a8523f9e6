"""Objective ``preference``: DPO, IPO, ORPO, SimPO and KTO inside kubetune's training loop.

:class:`PreferenceCriterion` plugs into :mod:`kubetune_workloads.finetune.training_loop`
(``Trainee.criterion``): it collates pairs (chosen rows then rejected rows, one forward
pass), computes the loss with :mod:`preference_losses`, and keeps reward accuracy and margins
for the metrics. So checkpoints, resume, SIGTERM, DDP, progress and the divergence guard are
the SFT loop's own.

The reference model is the model as training starts. Its log-probabilities are computed once,
before the first step, for every train and validation record (:func:`attach_reference`), so no
second copy of the model is held; with a new LoRA adapter they are computed with the adapter
disabled, i.e. on the base. A resumed run computes them again from the reloaded starting
model, before the checkpoint is restored, so they are the same.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from kubetune.api.finetune import PreferenceSpec

from kubetune_workloads.finetune.data import Example
from kubetune_workloads.finetune.preference_data import PreferenceExample
from kubetune_workloads.finetune.preference_losses import (
    REFERENCE_FREE,
    LossOutput,
    PairLogps,
    kto_loss,
    pair_loss,
)

log = logging.getLogger(__name__)


@dataclass
class RewardStats:
    """Running sums of the rewards over a logging window (or one evaluation)."""

    pairs: int = 0
    correct: float = 0.0
    margin: float = 0.0
    chosen: float = 0.0
    rejected: float = 0.0
    counted: dict[str, int] = field(default_factory=lambda: {"chosen": 0, "rejected": 0})

    def add(self, out: LossOutput, paired: bool) -> None:
        chosen, rejected = out.chosen_rewards.float(), out.rejected_rewards.float()
        self.chosen += float(chosen.sum())
        self.rejected += float(rejected.sum())
        self.counted["chosen"] += chosen.numel()
        self.counted["rejected"] += rejected.numel()
        if paired:
            self.pairs += chosen.numel()
            self.correct += float((chosen > rejected).float().sum())
            self.margin += float((chosen - rejected).sum())

    def summary(self, prefix: str = "") -> dict[str, float]:
        found: dict[str, float] = {}
        if self.pairs:
            found[prefix + "reward_accuracy"] = self.correct / self.pairs
            found[prefix + "reward_margin"] = self.margin / self.pairs
        for side in ("chosen", "rejected"):
            if self.counted[side]:
                found[f"{prefix}reward_{side}"] = getattr(self, side) / self.counted[side]
        return found


class PreferenceCriterion:
    """Batches and loss of the preference objective (see the module docstring)."""

    def __init__(self, settings: PreferenceSpec) -> None:
        self.settings = settings
        self.unpaired = settings.algorithm == "kto"
        self.window = RewardStats()
        self.last_eval: dict[str, float] = {}
        self.reference_seconds = 0.0  # computing the reference log-probabilities

    @property
    def needs_reference(self) -> bool:
        return self.settings.algorithm not in REFERENCE_FREE

    def collate(self, rows: Sequence[Example], pad_id: int, device: torch.device) -> dict[str, Any]:
        """One micro-batch: ``scored`` counts records (the loss is a mean over records)."""
        items = [cast(PreferenceExample, row) for row in rows]
        if self.unpaired:
            seqs = [(r.input_ids, r.prompt_len) for r in items]
            seqs += [(r.mismatched, r.mismatched_prompt_len) for r in items]
        else:
            seqs = [(r.input_ids, r.prompt_len) for r in items]
            seqs += [(r.rejected, r.prompt_len) for r in items]
        batch = _pad(seqs, pad_id, device)
        batch["scored"] = len(items)
        batch["tokens"] = int(batch["attention_mask"].sum())
        if self.needs_reference and items[0].reference:
            keys = ("completion", "mismatched") if self.unpaired else ("chosen", "rejected")
            ref = [[r.reference[k] for r in items] for k in keys]
            batch["reference"] = torch.tensor(ref, dtype=torch.float32, device=device).flatten()
        if self.unpaired:
            batch["desirable"] = torch.tensor([bool(r.desirable) for r in items], device=device)
        return batch

    def loss(self, model: Any, batch: dict[str, Any]) -> torch.Tensor:
        """The batch loss (with gradient); rewards go to the logging window."""
        out = self._loss(model, batch)
        self.window.add(out, paired=not self.unpaired)
        return out.loss

    def _loss(self, model: Any, batch: dict[str, Any]) -> LossOutput:
        n = batch["scored"]
        if self.unpaired:
            logps = sequence_logps(model, batch, rows=slice(0, n))
            with torch.no_grad():
                mismatched = sequence_logps(model, batch, rows=slice(n, 2 * n))
            ref = batch["reference"]
            kl = (mismatched - ref[n:]).mean().clamp(min=0).detach()
            return kto_loss(self.settings, logps, ref[:n], batch["desirable"], kl)
        logps = sequence_logps(model, batch)
        lengths = batch["completion_mask"][:, 1:].sum(dim=1)
        pairs = PairLogps(logps[:n], logps[n:], lengths[:n], lengths[n:])
        if self.needs_reference:
            pairs.ref_chosen, pairs.ref_rejected = batch["reference"][:n], batch["reference"][n:]
        return pair_loss(self.settings, pairs)

    def window_metrics(self) -> dict[str, float]:
        """Reward accuracy, margin and mean rewards since the last call."""
        found, self.window = self.window.summary(), RewardStats()
        return found

    def evaluate(self, model: Any, rows: Sequence[Example], batch_size: int, rt: Any) -> float:
        """Mean validation loss; ``last_eval`` gets the held-out reward accuracy and margin."""
        stats, total, count = RewardStats(), 0.0, 0
        with torch.no_grad():
            for i in range(0, len(rows), batch_size):
                batch = self.collate(rows[i : i + batch_size], 0, rt.device)
                with rt.autocast():
                    out = self._loss(model, batch)
                stats.add(out, paired=not self.unpaired)
                total += float(out.loss.float()) * batch["scored"]
                count += batch["scored"]
        self.last_eval = stats.summary("eval_")
        return total / max(count, 1)


def sequence_logps(model: Any, batch: dict[str, Any], rows: slice | None = None) -> torch.Tensor:
    """Summed log-probability of each row's answer tokens."""
    ids: torch.Tensor = batch["input_ids"]
    mask: torch.Tensor = batch["attention_mask"]
    completion: torch.Tensor = batch["completion_mask"]
    if rows is not None:
        ids, mask, completion = ids[rows], mask[rows], completion[rows]
    logits: torch.Tensor = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    logits = logits[:, :-1].float()
    targets = ids[:, 1:]
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    per_token = picked - torch.logsumexp(logits, dim=-1)
    return (per_token * completion[:, 1:]).sum(dim=1)


def _pad(seqs: list[tuple[list[int], int]], pad_id: int, device: torch.device) -> dict[str, Any]:
    width = max(len(ids) for ids, _ in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    completion = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (row, prompt_len) in enumerate(seqs):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        completion[i, prompt_len : len(row)] = 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "completion_mask": completion.to(device),
    }


def attach_reference(
    model: Any,
    criterion: PreferenceCriterion,
    splits: Sequence[Sequence[Example]],
    batch_size: int,
    rt: Any,
    fresh_adapter: bool,
) -> None:
    """Store the reference log-probabilities in every example (see the module docstring)."""
    if not criterion.needs_reference:
        return
    keys = ("completion", "mismatched") if criterion.unpaired else ("chosen", "rejected")
    adapter_off = model.disable_adapter() if fresh_adapter else contextlib.nullcontext()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), adapter_off:
            for rows in splits:
                for i in range(0, len(rows), batch_size):
                    chunk = rows[i : i + batch_size]
                    batch = criterion.collate(chunk, 0, rt.device)
                    with rt.autocast():
                        logps = sequence_logps(model, batch).tolist()
                    n = len(chunk)
                    for j, row in enumerate(chunk):
                        cast(PreferenceExample, row).reference = {
                            keys[0]: logps[j],
                            keys[1]: logps[n + j],
                        }
    finally:
        model.train(was_training)
    log.info("computed the reference log-probabilities of %d splits", len(splits))


def disable_dropout(model: Any) -> None:
    """Dropout off everywhere (LoRA's included), as TRL does for preference training: the
    policy and the reference must score a pair the same way before the first step."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def prepare(bundle: Any, spec: Any, tokenized: dict[str, Any], rt: Any) -> PreferenceCriterion:
    """The criterion of a preference run, dropout off and reference log-probabilities attached
    (``bundle``: the model_setup.ModelBundle, before DDP wrapping)."""
    assert spec.preference is not None
    criterion = PreferenceCriterion(spec.preference)
    disable_dropout(bundle.model)
    splits = [tokenized[s].examples for s in ("train", "validation")]
    fresh_adapter = bundle.format == "adapter" and bundle.source == "base"
    batch = max(spec.hyperparameters.batch_size, 1) * 2  # no gradients: twice the batch fits
    started = time.perf_counter()
    attach_reference(bundle.model, criterion, splits, batch, rt, fresh_adapter)
    criterion.reference_seconds = time.perf_counter() - started
    return criterion


REWARD_KEYS = ("reward_accuracy", "reward_margin", "eval_reward_accuracy", "eval_reward_margin")


def adjust_results(
    results: dict[str, Any], last: dict[str, Any], criterion: PreferenceCriterion
) -> dict[str, Any]:
    """results.json of a preference run: the latest reward accuracy and margins (train window
    and held-out), the time the reference took, and no perplexity (its losses are not token
    likelihoods)."""
    adjusted = {k: v for k, v in results.items() if k != "eval_perplexity"}
    if criterion.needs_reference:
        adjusted["reference_seconds"] = criterion.reference_seconds
    adjusted.update({k: float(last[k]) for k in REWARD_KEYS if last.get(k) is not None})
    return adjusted
