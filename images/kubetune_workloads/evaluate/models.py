"""Run one model (candidate or baseline) over the cases: generate, score, perplexity."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.api.evaluation import EvaluationTemplate, PromptCase

from kubetune_workloads.evaluate.generation import Generator
from kubetune_workloads.evaluate.perplexity import TokenLosses, load_docs
from kubetune_workloads.evaluate.preference_accuracy import pair_logps
from kubetune_workloads.evaluate.scoring import CaseScore, Scorer
from kubetune_workloads.likelihood import block_length, packed_for, stream_losses
from kubetune_workloads.modelio import load_model


@dataclass
class ModelRun:
    """Everything one model produced on the evaluation's cases."""

    uri: str
    results: dict[str, CaseScore] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    perplexity: TokenLosses | None = None
    preference_logps: Any = None  # (n, 4) array per held-out pair (preferenceAccuracy)
    win_rates: Any = None  # winrate.WinRates against the baseline, set by the runner
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def scores(self) -> dict[str, dict[str, float]]:
        return {case_id: r.scores for case_id, r in self.results.items()}

    def empty_outputs(self) -> list[str]:
        return [case_id for case_id, r in self.results.items() if not r.output.strip()]


def _device() -> str | None:
    import torch

    return "cuda" if torch.cuda.is_available() else None


def run_model(
    uri: str,
    cases: list[PromptCase],
    plan: dict[str, list[str]],
    spec: EvaluationTemplate,
    scorer: Scorer,
    perplexity_path: Path | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    text_template: str | None = None,
    text_block: int | None = None,
    text_objective: str | None = None,
    preference_pairs: list[dict[str, Any]] | None = None,
) -> ModelRun:
    """Load the model at ``uri``, generate for every case that fits its context, score them.

    ``plan`` maps case id -> metrics; it must cover every case (probe variants included).
    A case whose prompt plus ``maxNewTokens`` exceeds the context is skipped with its reason.
    Perplexity texts are rendered in ``text_template`` (the candidate's instruction format, for
    the candidate and its baseline alike, so the two numbers measure the same text) and cut
    into blocks of ``text_block`` tokens (the candidate's training sequence length) by the
    implementation FinetuneJob and Compression use (:mod:`kubetune_workloads.likelihood`).
    """
    loaded = load_model(uri, device=_device())
    run = ModelRun(uri=uri)
    try:
        generator = Generator(
            loaded.model, loaded.tokenizer, spec.generation, loaded.info.instruction_template
        )
        todo: list[tuple[PromptCase, list[int]]] = []
        for case in cases:
            ids = generator.encode(case)
            if generator.fits(ids):
                todo.append((case, ids))
            else:
                run.skipped[str(case.id)] = (
                    f"prompt has {len(ids)} tokens; with maxNewTokens "
                    f"{spec.generation.max_new_tokens} it exceeds the model's context of "
                    f"{generator.context} tokens"
                )
        generations = generator.generate([ids for _, ids in todo], on_batch=on_batch)
        for (case, _), generation in zip(todo, generations, strict=True):
            run.results[str(case.id)] = scorer.score(case, generation, plan[str(case.id)])
        run.tokens, run.seconds = generator.total_tokens, generator.total_seconds
        if perplexity_path is not None:
            docs = load_docs(perplexity_path, generator.tokenizer, text_template)
            block = block_length(text_block, generator.context)
            packed = packed_for(text_objective)
            run.perplexity = stream_losses(loaded.model, docs, block, packed)
        if preference_pairs is not None:
            limit = block_length(text_block, generator.context)
            run.preference_logps = pair_logps(
                loaded.model, generator.tokenizer, preference_pairs, text_template, limit
            )
    finally:
        del loaded
        gc.collect()
    return run
