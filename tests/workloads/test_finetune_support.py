"""Shared builders for the finetune tests: tiny bases, datasets and step specs (no downloads).

Not a test module of its own; named ``test_finetune_*`` so that it sits with the tests it serves.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubetune.api.finetune import FinetuneJobSpec
from kubetune.api.steps import FinetuneStepSpec, InputArtifact, Producer
from kubetune_workloads.modelio import ModelInfo, save_model
from kubetune_workloads.prompts import ALPACA_PROMPT, ALPACA_PROMPT_NO_INPUT
from kubetune_workloads.tokenizer_train import train_tokenizer

from tests.helpers.tiny import tiny_llama, write_dataset

COLORS = ["red", "blue", "green", "yellow", "black", "white"]
THINGS = ["sky", "grass", "sun", "snow", "coal", "rose", "sea", "leaf"]
FACTS = {t: COLORS[i % len(COLORS)] for i, t in enumerate(THINGS)}


def text_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"text": f"The {t} is {FACTS[t]}. The {u} is {FACTS[u]}."}
        for t, u in ((rng.choice(THINGS), rng.choice(THINGS)) for _ in range(n))
    ]


def instruction_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = rng.choice(THINGS)
        if rng.random() < 0.5:
            out.append({"instruction": f"What color is the {t}?", "input": "", "output": FACTS[t]})
        else:
            out.append({"instruction": "Name the color.", "input": f"the {t}", "output": FACTS[t]})
    return out


def chat_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t, u = rng.choice(THINGS), rng.choice(THINGS)
        out.append(
            {
                "messages": [
                    {"role": "system", "content": "You name colors."},
                    {"role": "user", "content": f"What color is the {t}?"},
                    {"role": "assistant", "content": f"The {t} is {FACTS[t]}."},
                    {"role": "user", "content": f"And the {u}?"},
                    {"role": "assistant", "content": f"The {u} is {FACTS[u]}."},
                ]
            }
        )
    return out


RECORDS = {"text": text_records, "instruction": instruction_records, "chat": chat_records}
SCHEMA_OF = {"continued-pretraining": "text", "instruction": "instruction", "chat": "chat"}


def tokenizer_texts() -> list[str]:
    texts = [r["text"] for r in text_records(60)]
    texts += [ALPACA_PROMPT, ALPACA_PROMPT_NO_INPUT, "You name colors. What color is the And"]
    texts += [f"<|{role}|>" for role in ("system", "user", "assistant")]
    return texts


def save_base(path: Path, hidden: int = 32, context: int = 256, seed: int = 0) -> str:
    """A tiny random Llama with a tokenizer that knows the test vocabulary; returns its URI."""
    tok = train_tokenizer(tokenizer_texts(), "bpe", vocab_size=400, min_frequency=1)
    model = tiny_llama(tok, hidden=hidden, kv_heads=2, context=context, seed=seed)
    save_model(model, tok, path, ModelInfo(format="full", family="llama"))
    return "file://" + str(path)


def make_dataset(path: Path, schema: str, n_train: int = 48, n_val: int = 8) -> str:
    make = RECORDS[schema]
    write_dataset(path, schema, make(n_train, seed=1), make(n_val, seed=2))
    return "file://" + str(path)


def step_spec(
    out: Path,
    dataset_uri: str,
    model_uri: str | None,
    *,
    spec: dict[str, Any],
    checkpoint_uri: str | None = None,
) -> FinetuneStepSpec:
    """A finetune step spec as the operator would write it."""
    body = {"dataset": {"uri": dataset_uri}, **spec}
    if "model" not in body:
        body["model"] = {"base": {"uri": model_uri}}
    hp = {"maxSteps": 30, "learningRate": 1e-2, "batchSize": 8, "maxSeqLength": 128}
    hp.update(body.get("hyperparameters", {}))
    body["hyperparameters"] = {"loggingSteps": 5, "warmupSteps": 0, **hp}
    return FinetuneStepSpec(
        producer=Producer(kind="FinetuneJob", name="tiny", namespace="default", run_id="r1"),
        output_uri="file://" + str(out),
        spec=FinetuneJobSpec.model_validate(body),
        dataset=InputArtifact(uri=dataset_uri),
        model=InputArtifact(uri=model_uri) if model_uri else None,
        checkpoint_uri=checkpoint_uri,
    )


def metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def train_losses(out: Path) -> list[float]:
    return [m["loss"] for m in metrics(out) if "loss" in m]


def results(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    """Tiny models train many times faster on one intra-op thread (no spin-waiting on a
    shared 2-core machine); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a step run as a child process (one thread per process, as above)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}
