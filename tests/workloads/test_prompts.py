"""Models are asked, and measured, in the format they were trained with."""

from __future__ import annotations

from kubetune_workloads.finetune.data import render_prompt
from kubetune_workloads.prompts import ALPACA, record_text, render_instruction

from tests.helpers.tiny import tiny_tokenizer

RECORD = {"instruction": "How do I reset my password?", "input": "", "output": "Open Settings."}


def test_training_and_evaluation_render_instructions_identically() -> None:
    custom = "Q: {instruction}\n{input}\nA: "
    for template in (None, custom):
        assert render_prompt(RECORD, template) == render_instruction(
            RECORD["instruction"], "", template or ALPACA
        )


def test_record_text_is_prompt_then_response_in_the_models_format() -> None:
    tok = tiny_tokenizer()
    text = record_text(RECORD, tok, "Q: {instruction}\n{input}\nA: ")
    assert text == "Q: How do I reset my password?\n\nA: Open Settings."
    plain = record_text(RECORD, tok, None)
    assert plain == "How do I reset my password?\n\nOpen Settings."
    alpaca = record_text({**RECORD, "input": "on iOS"}, tok, ALPACA)
    assert "### Input:\non iOS" in alpaca and alpaca.endswith("### Response:\nOpen Settings.")


def test_chat_records_use_the_chat_template_and_text_records_stay_as_they_are() -> None:
    tok = tiny_tokenizer()
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    assert record_text(chat, tok) == tok.apply_chat_template(chat["messages"], tokenize=False)
    assert record_text({"text": "plain words"}, tok) == "plain words"
