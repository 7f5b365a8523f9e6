"""Instruction prompt formats, shared by training and evaluation so a model is asked the way
it was taught.

A model tuned with the ``instruction`` objective records its format in ``kubetune-model.json``
(``ModelInfo.instruction_template``): ``"alpaca"`` for the built-in Alpaca templates, or the
user's own template with ``{instruction}`` and ``{input}`` placeholders. Evaluation wraps plain
prompts with it; a model without one (a base model, a chat model) gets prompts as they are.
"""

from __future__ import annotations

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
