"""Preference records -> token ids: pairs (prompt, chosen, rejected) or, for KTO, unpaired
(prompt, completion, label).

The prompt is ``prompt`` (rendered with the instruction template, as the instruction objective
and Evaluation render it) or ``messages`` (the conversation before the answer, rendered with
the chat template and its generation prompt). Sequences start with BOS (when the tokenizer has
one distinct from EOS) and answers end with EOS. As TRL does, a prompt and
each ``prompt + answer`` are tokenized whole and the answer starts where the two token
sequences diverge, so BPE merges across the boundary are the ones the model sees at inference.

Sequences longer than ``maxSeqLength`` lose the start of their prompt first, then the end of
their answers; a record left without answer tokens is dropped and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetune.api.finetune import FinetuneJobSpec, PreferenceSpec

from kubetune_workloads.errors import invalid_input
from kubetune_workloads.finetune.data import IGNORE, Example, TokenizedSplit
from kubetune_workloads.prompts import render_instruction

PAIRED = ("chosen", "rejected")
UNPAIRED = ("completion", "label")


@dataclass
class PreferenceExample(Example):
    """One preference record: ``input_ids`` is prompt + chosen (or the KTO completion), the
    first ``prompt_len`` tokens being the prompt; ``rejected`` is prompt + rejected answer."""

    prompt_len: int = 0
    rejected: list[int] = field(default_factory=list)
    desirable: bool | None = None  # KTO: the label of the completion in input_ids
    mismatched: list[int] = field(default_factory=list)  # KTO: prompt + another completion
    mismatched_prompt_len: int = 0
    reference: dict[str, float] = field(default_factory=dict)  # log-probs under the reference


def check_records(
    records: Sequence[dict[str, Any]], split: str, schema: str, settings: PreferenceSpec
) -> None:
    """The dataset has schema preference and every record a prompt (or messages) and
    chosen + rejected (kto: completion + label)."""
    if schema != "preference":
        raise invalid_input(
            f"objective preference needs a dataset with schema preference (prompt or messages, "
            f"chosen, rejected; or completion and label for kto); this dataset has schema {schema}"
        )
    unpaired = settings.algorithm == "kto"
    needed = UNPAIRED if unpaired else PAIRED
    for index, record in enumerate(records):
        if record.get("prompt") is None and record.get("messages") is None:
            raise invalid_input(
                f"objective preference needs 'prompt' or 'messages' in every {split} record; "
                f"record {index} has only {sorted(record)} (is this a preference dataset?)"
            )
        missing = [name for name in needed if record.get(name) is None]
        if missing:
            shape = "completion + label" if unpaired else "chosen + rejected"
            hint = (
                "; kto reads unpaired records, the other algorithms pairs"
                if any(record.get(n) is not None for n in (PAIRED if unpaired else UNPAIRED))
                else ""
            )
            raise invalid_input(
                f"preference algorithm {settings.algorithm} needs {shape} in every {split} "
                f"record; record {index} lacks {missing} and has {sorted(record)}{hint}"
            )
        if unpaired and not isinstance(record["label"], bool):
            raise invalid_input(f"{split} record {index}: 'label' must be true or false")


def prompt_text(record: dict[str, Any], tokenizer: Any, template: str | None) -> str:
    """The rendered prompt of a preference record."""
    if record.get("messages") is not None:
        return str(
            tokenizer.apply_chat_template(
                record["messages"], tokenize=False, add_generation_prompt=True
            )
        )
    return render_instruction(str(record["prompt"]), "", template)


def answer_text(record: dict[str, Any], answer: str, tokenizer: Any) -> str:
    """An answer as it follows the prompt: through the chat template for conversations,
    otherwise followed by the EOS token."""
    if record.get("messages") is not None:
        convo = [*record["messages"], {"role": "assistant", "content": answer}]
        full = str(tokenizer.apply_chat_template(convo, tokenize=False))
        return full[len(prompt_text(record, tokenizer, None)) :]
    eos = tokenizer.eos_token or ""
    return answer if answer.endswith(eos) else answer + eos


def tokenize_for(
    records: Sequence[dict[str, Any]], tokenizer: Any, spec: FinetuneJobSpec
) -> TokenizedSplit:
    """:func:`tokenize` with a FinetuneJob's settings."""
    unpaired = spec.preference is not None and spec.preference.algorithm == "kto"
    max_len = spec.hyperparameters.max_seq_length
    return tokenize(records, tokenizer, max_len, spec.prompt_template, unpaired)


def tokenize(
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    max_len: int,
    template: str | None = None,
    unpaired: bool = False,
) -> TokenizedSplit:
    """Preference examples for one split (KTO records also get a mismatched completion:
    the previous record's, to estimate the KL term as TRL's KTOTrainer does, which rotates
    the completions of a batch by one)."""
    out = TokenizedSplit([])
    encoded: list[tuple[list[int], list[list[int]]]] = []
    for record in records:
        prompt = prompt_text(record, tokenizer, template)
        answers = [record["completion"]] if unpaired else [record["chosen"], record["rejected"]]
        texts = [prompt + answer_text(record, str(a), tokenizer) for a in answers]
        ids = [_with_bos(seq, tokenizer) for seq in tokenizer([prompt, *texts])["input_ids"]]
        encoded.append(_split_prompt(ids[0], ids[1:]))
    for index, (prompt_ids, completions) in enumerate(encoded):
        prompt_ids, completions, cut = _fit(prompt_ids, completions, max_len)
        out.truncated += cut
        if not all(completions):
            out.dropped += 1
            continue
        example = PreferenceExample(
            input_ids=prompt_ids + completions[0],
            labels=[IGNORE] * len(prompt_ids) + completions[0],
            prompt_len=len(prompt_ids),
        )
        if unpaired:
            example.desirable = bool(records[index]["label"])
            _, other = encoded[index - 1]
            _, (kl_completion,), _ = _fit(prompt_ids, [other[0]], max_len)
            example.mismatched = prompt_ids + kl_completion
            example.mismatched_prompt_len = len(prompt_ids)
        else:
            example.rejected = prompt_ids + completions[1]
        out.examples.append(example)
    return out


def _with_bos(ids: list[int], tokenizer: Any) -> list[int]:
    """A leading BOS, as the instruction objective (and TRL's CPO/ORPO) start sequences."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or bos == eos or (ids and ids[0] == bos):
        return list(ids)
    return [bos, *ids]


def _split_prompt(prompt: list[int], fulls: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Cut each ``prompt + answer`` sequence where it stops agreeing with the prompt alone."""
    shared = min(_common_prefix(prompt, full) for full in fulls)
    return prompt[:shared], [full[shared:] for full in fulls]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _fit(
    prompt: list[int], completions: list[list[int]], max_len: int
) -> tuple[list[int], list[list[int]], int]:
    """Shorten to ``max_len``: the prompt's start goes first (keeping its first token, BOS
    when there is one, and at least half the budget), then the answers' ends."""
    longest = max(len(c) for c in completions)
    if len(prompt) + longest <= max_len:
        return prompt, completions, 0
    keep = max(max_len - longest, min(len(prompt), max_len // 2))
    if keep < len(prompt):
        prompt = prompt[:1] + prompt[len(prompt) - keep + 1 :] if keep > 1 else prompt[:keep]
    room = max(max_len - len(prompt), 0)
    return prompt, [c[:room] for c in completions], 1
