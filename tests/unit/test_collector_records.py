"""The collector's record shapes: what a feedback record, a chat and an OpenAI pair become,
and the field paths of the errors (the HTTP behaviour is tested in tests/e2e)."""

from __future__ import annotations

from typing import Any

import pytest
from kubetune.collector.auth import TokenFileError, TokenStore, parse_tokens
from kubetune.collector.records import (
    BodyError,
    Invalid,
    Valid,
    content_id,
    encode_line,
    split_body,
    validate,
)

NOW = "2026-12-02T10:00:00.000Z"


def ok(row: Any) -> dict[str, Any]:
    outcome = validate(0, row, NOW)
    assert isinstance(outcome, Valid), outcome
    return outcome.line


def errors(row: Any) -> list[tuple[str, str]]:
    outcome = validate(0, row, NOW)
    assert isinstance(outcome, Invalid), outcome
    return [(e.path, e.reason) for e in outcome.errors]


def test_a_feedback_record_keeps_the_loop_field_names() -> None:
    line = ok({"id": 7, "prompt": "q", "response": "a", "rating": 2, "correction": "c"})
    assert line == {
        "id": "7",
        "prompt": "q",
        "response": "a",
        "rating": 2,
        "correction": "c",
        "received_at": NOW,
    }
    assert ok({"prompt": "q", "chosen": "good", "rejected": "bad"})["chosen"] == "good"
    assert ok({"prompt": "q", "response": "a", "thumbs": "down"})["rating"] == 0


def test_chat_messages_and_openai_pairs() -> None:
    chat = ok(
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": [{"type": "text", "text": "reset?"}]},
                {"role": "assistant", "content": "Settings."},
            ]
        }
    )
    assert chat["prompt"] == "user: hi\nassistant: hello\nuser: reset?"
    assert chat["response"] == "Settings." and len(chat["messages"]) == 3
    pair = ok(
        {
            "request": {"model": "m", "messages": [{"role": "user", "content": "q"}]},
            "response": {"model": "m-2", "choices": [{"message": {"content": "a"}}]},
            "rating": 5,
        }
    )
    assert (pair["prompt"], pair["response"], pair["model_version"]) == ("q", "a", "m-2")
    assert pair["id"].startswith("sha256:")


def test_errors_name_the_field_path() -> None:
    assert errors({"prompt": 1, "response": "a"}) == [("prompt", "must be a string, not a number")]
    assert errors({"prompt": "q"}) == [
        ("response", "required: a response, a correction or a chosen answer")
    ]
    assert ("request.messages[0].content", "must be a string, not a number") in errors(
        {"request": {"messages": [{"role": "user", "content": 3}]}, "response": {"choices": []}}
    )
    assert errors({"prompt": "q", "response": "a", "rating": float("inf")}) == [
        ("rating", "must be finite")
    ]
    assert errors([1]) == [("", "must be an object, not a list")]


def test_ids_and_lines() -> None:
    assert content_id({"b": 1, "a": 2}) == content_id({"a": 2, "b": 1})
    line = encode_line(ok({"id": "x", "prompt": "é\u2028", "response": "a"}))
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()


def test_bodies() -> None:
    assert len(split_body(b'[{"a":1},{"b":2}]', 10)) == 2
    assert len(split_body(b'{"a":1}\n\n{"b":2}\n', 10)) == 2
    for bad in (b"", b"   ", b"\xff\xfe", b"[]"):
        with pytest.raises(BodyError):
            split_body(bad, 10)
    with pytest.raises(BodyError, match="at most 2"):
        split_body(b"[1,2,3]", 2)


def test_tokens_are_bound_to_loops(tmp_path: Any) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text("- {name: app, token: secret-123, loops: [team-a/*]}\n")
    store = TokenStore(path)
    assert store.check("Bearer secret-123", "team-a", "loop")[0] == "ok"
    assert store.check("Bearer secret-123", "team-b", "loop")[0] == "forbidden"
    assert store.check("Bearer nope-nope", "team-a", "loop")[0] == "unauthenticated"
    assert store.check(None, "team-a", "loop")[0] == "unauthenticated"
    with pytest.raises(TokenFileError):
        parse_tokens("- {name: x, token: short, loops: [a/b]}")
