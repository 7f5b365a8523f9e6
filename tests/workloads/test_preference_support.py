"""Shared builders for the preference tests: a constructed preference task and TRL runs.

Not a test module of its own; named ``test_preference_*`` so that it sits with its tests.
The task: "What color is the X?" answered with X's color (chosen) or another color (rejected).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from test_finetune_support import COLORS, FACTS, THINGS

from tests.helpers.tiny import write_dataset


def color_pairs(n: int, seed: int) -> list[dict[str, Any]]:
    """Pairs whose chosen answer names the thing's color and whose rejected one does not."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        thing = rng.choice(THINGS)
        wrong = rng.choice([c for c in COLORS if c != FACTS[thing]])
        out.append(
            {
                "prompt": f"What color is the {thing}?",
                "chosen": f"The {thing} is {FACTS[thing]}.",
                "rejected": f"The {thing} is {wrong}.",
            }
        )
    return out


def unpaired(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """KTO records: each pair's chosen (desirable) and rejected (undesirable) answers."""
    out = []
    for pair in pairs:
        out.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
        out.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False})
    return out


def preference_dataset(path: Path, n_train: int = 64, n_val: int = 32, kto: bool = False) -> str:
    train, val = color_pairs(n_train, seed=1), color_pairs(n_val, seed=2)
    if kto:
        train, val = unpaired(train), unpaired(val)
    write_dataset(path, "preference", train, val)
    return "file://" + str(path)


def trl_dataset(records: list[dict[str, Any]], tokenizer: Any, bos: bool = False) -> Any:
    """The same records as TRL reads them: the prompt rendered as kubetune renders it (with the
    BOS token's text in front for trainers that do not add it themselves)."""
    from datasets import Dataset
    from kubetune_workloads.finetune.preference_data import prompt_text

    head = tokenizer.bos_token if bos else ""
    rows = [{**r, "prompt": head + prompt_text(r, tokenizer, None)} for r in records]
    return Dataset.from_list(rows)
