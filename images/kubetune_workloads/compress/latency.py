"""Generation latency and tokens/s on fixed prompts (greedy, fixed number of new tokens).

Each prompt is timed ``REPEATS`` times after a warm-up pass and its median kept, so one
scheduling hiccup on a shared node does not decide the before/after latency ratio.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

DEFAULT_PROMPTS = (
    "The quick brown fox",
    "Once upon a time",
    "How do I reset my password?",
    "Summarize the following text:",
)
REPEATS = 3


@dataclass
class GenerationSpeed:
    """Mean seconds per prompt and generated tokens per second."""

    latency_seconds: float
    tokens_per_second: float
    new_tokens: int


def generation_speed(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int
) -> GenerationSpeed:
    """Median time of greedy generation of exactly ``max_new_tokens`` per prompt."""
    import torch

    device = model.get_input_embeddings().weight.device
    limit = getattr(model.config, "max_position_embeddings", None)
    encoded = [_encode(tokenizer, p, max_new_tokens, limit).to(device) for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    options = {"do_sample": False, "pad_token_id": pad}
    total_time, total_tokens = 0.0, 0
    with torch.inference_mode():
        for ids in encoded:  # warm-up: kernels, caches, allocator
            model.generate(ids, max_new_tokens=2, min_new_tokens=2, **options)
        for ids in encoded:
            times = []
            for _ in range(REPEATS):
                _sync(device)
                start = time.perf_counter()
                out = model.generate(
                    ids, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, **options
                )
                _sync(device)
                times.append(time.perf_counter() - start)
            total_time += statistics.median(times)
            total_tokens += int(out.shape[1] - ids.shape[1])
    return GenerationSpeed(
        latency_seconds=total_time / len(encoded),
        tokens_per_second=total_tokens / total_time if total_time > 0 else 0.0,
        new_tokens=total_tokens,
    )


def _encode(tokenizer: Any, prompt: str, max_new_tokens: int, limit: int | None) -> Any:
    import torch

    ids = tokenizer(prompt, add_special_tokens=True)["input_ids"] or [tokenizer.eos_token_id]
    if limit:
        ids = ids[-max(1, limit - max_new_tokens) :]
    return torch.tensor([ids], dtype=torch.long)


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", None) == "cuda":
        torch.cuda.synchronize(device)
