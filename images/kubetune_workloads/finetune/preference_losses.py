"""Preference losses on sequence log-probabilities, as TRL defines them.

- ``dpo``: TRL ``DPOTrainer`` ``loss_type="sigmoid"`` (with ``labelSmoothing``: conservative DPO).
- ``ipo``: TRL ``DPOTrainer`` ``loss_type="ipo"`` (log-ratios averaged per answer token).
- ``simpo``: TRL ``CPOTrainer`` ``loss_type="simpo"`` (length-normalised, reference-free, target
  margin ``gamma``; ``sftWeight`` is CPO's ``cpo_alpha``).
- ``orpo``: TRL ``ORPOTrainer`` (chosen NLL minus ``beta`` x log-sigmoid of the log odds ratio).
- ``kto``: TRL ``KTOTrainer`` ``loss_type="kto"`` (unpaired, KL estimated on mismatched pairs).

Rewards (for reward accuracy and margins) are what TRL logs: ``beta`` x the log-ratio to the
reference (dpo, ipo, kto), ``beta`` x the average log-probability (simpo, orpo).
The workload tests check these against TRL's trainers on the same model and data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kubetune.api.finetune import PreferenceSpec

REFERENCE_FREE = ("orpo", "simpo")


@dataclass
class PairLogps:
    """Summed answer log-probabilities of one batch of pairs, and answer lengths."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor
    ref_chosen: torch.Tensor | None = None
    ref_rejected: torch.Tensor | None = None


@dataclass
class LossOutput:
    """The batch loss and the per-example rewards of what was preferred and what was not."""

    loss: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def pair_loss(settings: PreferenceSpec, p: PairLogps) -> LossOutput:
    """The loss of a batch of pairs for ``dpo``, ``ipo``, ``simpo`` or ``orpo``."""
    beta, algorithm = settings.beta, settings.algorithm
    if algorithm in REFERENCE_FREE:
        avg_chosen = p.chosen / p.chosen_tokens.clamp(min=1)
        avg_rejected = p.rejected / p.rejected_tokens.clamp(min=1)
        nll = -p.chosen.sum() / p.chosen_tokens.sum().clamp(min=1)
        chosen_rewards, rejected_rewards = beta * avg_chosen.detach(), beta * avg_rejected.detach()
        if algorithm == "orpo":
            log_odds = (avg_chosen - avg_rejected) - (log1mexp(avg_chosen) - log1mexp(avg_rejected))
            loss = nll - (beta * F.logsigmoid(log_odds)).mean()
        else:
            logits = avg_chosen - avg_rejected - settings.simpo_gamma / beta
            loss = _smoothed(beta * logits, settings.label_smoothing).mean()
            loss = loss + settings.sft_weight * nll
        return LossOutput(loss, chosen_rewards, rejected_rewards)
    if p.ref_chosen is None or p.ref_rejected is None:
        raise ValueError(f"{algorithm} needs the reference model's log-probabilities")
    chosen_ratio = p.chosen - p.ref_chosen
    rejected_ratio = p.rejected - p.ref_rejected
    if algorithm == "ipo":
        delta = chosen_ratio / p.chosen_tokens.clamp(
            min=1
        ) - rejected_ratio / p.rejected_tokens.clamp(min=1)
        losses = (delta - 1 / (2 * beta)) ** 2
    elif algorithm == "dpo":
        losses = _smoothed(beta * (chosen_ratio - rejected_ratio), settings.label_smoothing)
    else:
        raise ValueError(f"{algorithm} is not a paired preference loss")
    return LossOutput(losses.mean(), beta * chosen_ratio.detach(), beta * rejected_ratio.detach())


def kto_loss(
    settings: PreferenceSpec,
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    kl: torch.Tensor,
) -> LossOutput:
    """KTO on unpaired completions (``desirable`` a bool tensor; ``kl`` the detached,
    non-negative KL estimate of this batch)."""
    beta = settings.beta
    ratio = logps - ref_logps
    good, bad = ratio[desirable], ratio[~desirable]
    losses = torch.cat(
        (
            settings.desirable_weight * (1 - torch.sigmoid(beta * (good - kl))),
            settings.undesirable_weight * (1 - torch.sigmoid(beta * (kl - bad))),
        )
    )
    return LossOutput(losses.nanmean(), beta * good.detach(), beta * bad.detach())


def _smoothed(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``-log sigmoid(logits)``, mixed with the flipped label when smoothing."""
    losses = -F.logsigmoid(logits) * (1 - label_smoothing)
    if label_smoothing:
        losses = losses - F.logsigmoid(-logits) * label_smoothing
    return losses


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, stable on both sides of ``-ln 2``."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))
