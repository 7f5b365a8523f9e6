"""Instruction prompt formats, shared by training and evaluation so a model is asked the way
it was taught.

A model tuned with the ``instruction`` objective records its format in ``kubetune-model.json``
(``ModelInfo.instruction_template``): ``"alpaca"`` for the built-in Alpaca templates, or the
user's own template with ``{instruction}`` and ``{input}`` placeholders. Evaluation wraps plain
prompts with it; a model without one (a base model, a chat model) gets prompts as they are.
"""

from __future__ import annotations

from typing import Any

ALPACA = "alpaca"
ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


def render_instruction(instruction: str, extra: str = "", template: str | None = ALPACA) -> str:
    """The prompt for an instruction (and optional input) in the given format.

    ``template`` is ``"alpaca"`` (or None, the default format) or a custom template string.
    """
    if template in (None, ALPACA):
        template = ALPACA_PROMPT if extra else ALPACA_PROMPT_NO_INPUT
    return template.replace("{instruction}", instruction).replace("{input}", extra)


def record_text(record: dict[str, Any], tokenizer: Any, template: str | None = None) -> str:
    """A prepared-dataset record as one text, the way a model saw it in training.

    Chat records go through the tokenizer's chat template; instruction records are rendered
    with ``template`` (the instruction format of the model being measured) followed by the
    response, or joined plainly when the model has no instruction format; text records are
    their text. Perplexity measured on these texts is comparable before and after compression
    and between a candidate and its baseline when both use the same ``template``.
    """
    if "messages" in record:
        messages = record.get("messages") or []
        if getattr(tokenizer, "chat_template", None):
            return str(tokenizer.apply_chat_template(messages, tokenize=False))
        return "\n".join(str(m.get("content", "")) for m in messages)
    if "instruction" in record:
        instruction = str(record.get("instruction") or "")
        extra = str(record.get("input") or "")
        output = str(record.get("output") or "")
        if template:
            return render_instruction(instruction, extra, template) + output
        return "\n\n".join(p for p in (instruction, extra, output) if p)
    return str(record.get("text") or "")
