"""``preferenceAccuracy``: the share of held-out preference pairs (a schema-preference dataset's
validation split, else its train split) with a positive reward margin, with a bootstrap
interval over pairs.

The reward of an answer is, with a baseline, the model's log-probability of it minus the
baseline's (DPO's implicit reward, the baseline standing in for the reference model); without
one, its average log-probability per answer token (SimPO's reward, which does not favour short
answers). A zero margin counts 0.5, so the baseline measured against itself scores 0.5 and the
comparison is the candidate's gain over it. Pairs are tokenized as objective preference trains
on them (:mod:`kubetune_workloads.finetune.preference_data`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kubetune_workloads.datasetio import open_dataset
from kubetune_workloads.errors import invalid_input
from kubetune_workloads.evaluate.stats import Aggregate, Comparison, bootstrap_interval

METRIC = "preferenceAccuracy"
TIE = 1e-6  # |margin| at or below this is a tie


def load_pairs(path: Path) -> list[dict[str, Any]]:
    """The held-out pairs of a preference dataset artifact."""
    dataset = open_dataset(path)
    if dataset.schema != "preference":
        raise invalid_input(
            f"preferenceData must be a dataset with schema preference; {path} has schema "
            f"{dataset.schema}"
        )
    records = dataset.records("validation") or dataset.records("train")
    pairs = [r for r in records if r.get("chosen") is not None and r.get("rejected") is not None]
    if not pairs:
        raise invalid_input(f"preference dataset at {path} has no chosen/rejected pairs")
    return pairs


def pair_logps(
    model: Any, tokenizer: Any, pairs: list[dict[str, Any]], template: str | None, limit: int
) -> np.ndarray:
    """Per pair: summed log-probability of the chosen and the rejected answer, and their
    lengths in tokens (an ``(n, 4)`` array)."""
    import torch
    from kubetune.api.finetune import PreferenceSpec

    from kubetune_workloads.finetune.preference import PreferenceCriterion, sequence_logps
    from kubetune_workloads.finetune.preference_data import tokenize
    from kubetune_workloads.finetune.preference_losses import REFERENCE_FREE

    examples = tokenize(pairs, tokenizer, limit, template).examples
    criterion = PreferenceCriterion(PreferenceSpec(algorithm=REFERENCE_FREE[0]))
    device = next(model.parameters()).device
    rows: list[list[float]] = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(examples), 8):
            chunk = examples[i : i + 8]
            batch = criterion.collate(chunk, 0, device)
            logps = sequence_logps(model, batch).tolist()
            lengths = batch["completion_mask"][:, 1:].sum(dim=1).tolist()
            n = len(chunk)
            rows += [[logps[j], logps[n + j], lengths[j], lengths[n + j]] for j in range(n)]
    return np.asarray(rows, dtype=float).reshape(-1, 4)


def pair_wins(logps: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """1 where the reward margin is positive, 0 where negative, 0.5 on a tie (see above)."""
    if reference is not None and reference.shape == logps.shape:
        chosen, rejected = logps[:, 0] - reference[:, 0], logps[:, 1] - reference[:, 1]
    else:
        chosen = logps[:, 0] / np.maximum(logps[:, 2], 1)
        rejected = logps[:, 1] / np.maximum(logps[:, 3], 1)
    margin = chosen - rejected
    return np.where(np.abs(margin) <= TIE, 0.5, (margin > 0).astype(float))


def accuracy(wins: np.ndarray, samples: int, seed: int) -> Aggregate:
    low, high = bootstrap_interval(wins.tolist(), samples, seed)
    return Aggregate(mean=float(wins.mean()), ci_low=low, ci_high=high, n=len(wins))


def compare_accuracy(
    candidate: np.ndarray, baseline: np.ndarray, samples: int, seed: int
) -> Comparison | None:
    """Candidate minus baseline accuracy over the same pairs (resampled jointly)."""
    if len(candidate) != len(baseline):
        return None
    diffs = candidate - baseline
    low, high = bootstrap_interval(diffs.tolist(), samples, seed)
    return Comparison(
        delta=float(diffs.mean()),
        ci_low=low,
        ci_high=high,
        wins=int((diffs > 0).sum()),
        ties=int((diffs == 0).sum()),
        losses=int((diffs < 0).sum()),
        n=len(diffs),
    )
