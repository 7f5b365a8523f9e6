"""Generate outputs for prompt cases: batched with left padding, greedy or seeded sampling.

Prompts are sorted by length and generated ``batchSize`` at a time (left-padded, with an
attention mask, so each row sees only its own tokens); outputs come back in the input order.
Chat cases go through the tokenizer's chat template. Outputs stop at end-of-sequence or at the
first stop string, which is cut off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kubetune.api.evaluation import GenerationSpec, PromptCase

from kubetune_workloads.prompts import render_instruction
from kubetune_workloads.tokenizer_train import ensure_special_tokens


@dataclass
class Generation:
    """One output. ``seconds`` is the wall time of the batch the case was generated in."""

    text: str
    new_tokens: int
    prompt_tokens: int
    seconds: float
    batch_tokens_per_second: float


def context_length(model: Any) -> int | None:
    """The model's context window, when its config says."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class Generator:
    """Batched generation for one loaded model and its tokenizer."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        spec: GenerationSpec,
        instruction_template: str | None = None,
    ) -> None:
        self.model = model
        self.instruction_template = instruction_template
        self.tokenizer = ensure_special_tokens(tokenizer)
        self.spec = spec
        self.context = context_length(model)
        self.total_tokens = 0
        self.total_seconds = 0.0

    def encode(self, case: PromptCase) -> list[int]:
        """Prompt token ids: the chat rendered with the chat template, or the plain prompt in
        the instruction format the model was tuned with (as is for models without one)."""
        if case.messages:
            text = self.tokenizer.apply_chat_template(
                [m.model_dump() for m in case.messages], add_generation_prompt=True, tokenize=False
            )
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        prompt = case.prompt or ""
        if self.instruction_template:
            prompt = render_instruction(prompt, "", self.instruction_template)
        ids = list(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])
        bos, eos = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
        if bos is not None and bos != eos and (not ids or ids[0] != bos):
            ids.insert(0, bos)  # as in training: sequences start with BOS
        return ids

    def fits(self, prompt_ids: list[int]) -> bool:
        """Whether the prompt plus ``maxNewTokens`` fits in the context window."""
        return self.context is None or len(prompt_ids) + self.spec.max_new_tokens <= self.context

    def generate(
        self, prompts: list[list[int]], batch_size: int | None = None, on_batch: Any = None
    ) -> list[Generation]:
        """Outputs for token-id prompts, in order. ``on_batch(done, total)`` reports progress."""
        import torch

        size = batch_size or self.spec.batch_size
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        if self.spec.do_sample:
            torch.manual_seed(self.spec.seed)
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            for index, generation in zip(
                chunk, self._batch([prompts[i] for i in chunk]), strict=True
            ):
                results[index] = generation
            if on_batch is not None:
                on_batch(min(start + size, len(order)), len(order))
        return [r for r in results if r is not None]

    def _batch(self, prompts: list[list[int]]) -> list[Generation]:
        import torch

        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        device = next(self.model.parameters()).device
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        started = time.perf_counter()
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                generation_config=self._config(),
                tokenizer=self.tokenizer if self.spec.stop else None,
            )
        seconds = time.perf_counter() - started
        rows = [self._finish(row[width:].tolist()) for row in out]
        total = sum(n for _, n in rows)
        self.total_tokens += total
        self.total_seconds += seconds
        rate = total / seconds if seconds > 0 else 0.0
        return [
            Generation(text, n, len(p), seconds, rate)
            for (text, n), p in zip(rows, prompts, strict=True)
        ]

    def _config(self) -> Any:
        from transformers import GenerationConfig

        kwargs: dict[str, Any] = {
            "max_new_tokens": self.spec.max_new_tokens,
            "do_sample": self.spec.do_sample,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if self.spec.do_sample:
            kwargs.update(temperature=self.spec.temperature, top_p=self.spec.top_p, top_k=0)
        if self.spec.stop:
            kwargs["stop_strings"] = list(self.spec.stop)
        return GenerationConfig(**kwargs)

    def _finish(self, new_ids: list[int]) -> tuple[str, int]:
        """Text up to end-of-sequence (padding removed) and before the first stop string."""
        ends = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}
        cut = next((i for i, t in enumerate(new_ids) if t in ends), len(new_ids))
        text = self.tokenizer.decode(new_ids[:cut], skip_special_tokens=True)
        for stop in self.spec.stop or []:
            position = text.find(stop)
            if position >= 0:
                text = text[:position]
        return text.strip(), cut
