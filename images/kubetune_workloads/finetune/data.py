"""Objectives -> token ids with labels: what the model reads and what it is scored on.

- ``continued-pretraining``: raw ``text`` documents, each ended with EOS, concatenated and cut
  into ``maxSeqLength`` blocks (always packed); every token is a label.
- ``instruction``: ``instruction``/``input``/``output`` records rendered with the Alpaca prompt
  (or ``promptTemplate``); only the response (and its EOS) is scored.
- ``chat``: ``messages`` rendered with the tokenizer's chat template (or the default one);
  only assistant turns are scored, role headers included in the prompt part.

Labels outside the scored part are ``-100``. Examples longer than ``maxSeqLength`` lose the
start of their prompt first (the end of the prompt and the response are what the model learns
from), then their end; ones left with nothing to score are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetune_workloads.errors import invalid_input
from kubetune_workloads.prompts import render_instruction

IGNORE = -100
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "continued-pretraining": ("text",),
    "instruction": ("instruction", "output"),
    "chat": ("messages",),
}


@dataclass
class Example:
    """One training sequence (or packed block) before batching."""

    input_ids: list[int]
    labels: list[int]
    lengths: list[int] = field(default_factory=list)  # documents inside (packing)

    def __post_init__(self) -> None:
        if not self.lengths:
            self.lengths = [len(self.input_ids)]


@dataclass
class TokenizedSplit:
    examples: list[Example]
    truncated: int = 0
    dropped: int = 0


def check_fields(records: Sequence[dict[str, Any]], objective: str, split: str) -> None:
    """Every record has the fields the objective reads."""
    for index, record in enumerate(records):
        for name in REQUIRED_FIELDS[objective]:
            if record.get(name) is None:
                raise invalid_input(
                    f"objective {objective} needs the field {name!r} in every {split} record; "
                    f"record {index} has only {sorted(record)}"
                )
        if objective == "chat":
            _check_messages(record["messages"], index, split)


def _check_messages(messages: Any, index: int, split: str) -> None:
    ok = isinstance(messages, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    )
    if not ok:
        raise invalid_input(
            f"{split} record {index}: 'messages' must be a list of {{role, content}} objects"
        )


def tokenize(
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    objective: str,
    max_seq_length: int,
    prompt_template: str | None = None,
) -> TokenizedSplit:
    """Token ids and labels for one split."""
    if objective == "continued-pretraining":
        return _pretraining([r["text"] for r in records], tokenizer, max_seq_length)
    if objective == "instruction":
        return _instruction(records, tokenizer, max_seq_length, prompt_template)
    return _chat(records, tokenizer, max_seq_length)


def _ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    ids: list[list[int]] = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return ids


def _pretraining(texts: list[str], tokenizer: Any, block: int) -> TokenizedSplit:
    stream: list[int] = []
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    for ids in _ids(tokenizer, texts):
        if bos is not None and bos != eos:
            stream.append(bos)
        stream.extend(ids)
        if eos is not None:
            stream.append(eos)
    examples = [
        Example(stream[i : i + block], stream[i : i + block])
        for i in range(0, len(stream), block)
        if len(stream[i : i + block]) > 1
    ]
    return TokenizedSplit(examples)


def render_prompt(record: dict[str, Any], template: str | None) -> str:
    """The instruction prompt: Alpaca (with or without input) or the user's template, the same
    rendering Evaluation uses (``kubetune_workloads.prompts``)."""
    return render_instruction(str(record["instruction"]), str(record.get("input") or ""), template)


def _instruction(
    records: Sequence[dict[str, Any]], tokenizer: Any, limit: int, template: str | None
) -> TokenizedSplit:
    prompts = _ids(tokenizer, [render_prompt(r, template) for r in records])
    responses = _ids(tokenizer, [str(r["output"]) for r in records])
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    head = [bos] if bos is not None and bos != eos else []
    tail = [eos] if eos is not None else []
    pieces = [
        [(head + prompt, False), (response + tail, True)]
        for prompt, response in zip(prompts, responses, strict=True)
    ]
    return _assemble(pieces, limit)


def _chat(records: Sequence[dict[str, Any]], tokenizer: Any, limit: int) -> TokenizedSplit:
    pieces = []
    for record in records:
        segments = chat_segments(record["messages"], tokenizer)
        ids = _ids(tokenizer, [text for text, _ in segments])
        pieces.append(
            [(seg_ids, scored) for seg_ids, (_, scored) in zip(ids, segments, strict=True)]
        )
    return _assemble(pieces, limit)


def chat_segments(messages: list[dict[str, str]], tokenizer: Any) -> list[tuple[str, bool]]:
    """The rendered conversation cut into (text, scored) pieces: assistant content is scored.

    Each message's text is what rendering it adds to the conversation so far. For an assistant
    message, the generation prompt (role header) is split off and left unscored when the
    template renders it as a prefix of the message; otherwise the whole turn is scored.
    """

    def render(msgs: list[dict[str, str]], generation_prompt: bool = False) -> str:
        if not msgs and not generation_prompt:
            return ""
        text: str = tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=generation_prompt
        )
        return text

    segments: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        full = render(messages[: i + 1])
        if not full.startswith(done):  # a template that rewrites earlier turns: score it all
            return [(full, message["role"] == "assistant")]
        if message["role"] == "assistant":
            header = render(messages[:i], generation_prompt=True)
            if header.startswith(done) and full.startswith(header):
                segments.append((header[len(done) :], False))
                segments.append((full[len(header) :], True))
            else:
                segments.append((full[len(done) :], True))
        else:
            segments.append((full[len(done) :], False))
        done = full
    return [(text, scored) for text, scored in segments if text]


def _assemble(pieces: Iterable[list[tuple[list[int], bool]]], limit: int) -> TokenizedSplit:
    out = TokenizedSplit([])
    for segments in pieces:
        ids: list[int] = []
        labels: list[int] = []
        for seg_ids, scored in segments:
            ids.extend(seg_ids)
            labels.extend(seg_ids if scored else [IGNORE] * len(seg_ids))
        if len(ids) > limit:
            out.truncated += 1
            ids, labels = _truncate(ids, labels, limit)
        if all(label == IGNORE for label in labels[1:]):
            out.dropped += 1
            continue
        out.examples.append(Example(ids, labels))
    return out


def _truncate(ids: list[int], labels: list[int], limit: int) -> tuple[list[int], list[int]]:
    """Cut an over-long example: first the start of its prompt (keeping the first token, BOS
    when there is one), so that the end of the prompt and the response survive; then, if
    still too long, the end."""
    first_scored = next((i for i, label in enumerate(labels) if label != IGNORE), len(labels))
    cut = min(len(ids) - limit, max(first_scored - 2, 0))
    if cut > 0:
        ids, labels = ids[:1] + ids[1 + cut :], labels[:1] + labels[1 + cut :]
    return ids[:limit], labels[:limit]
