"""The collector's record shapes: what a feedback record, a chat and an OpenAI pair become,
and the field paths of the errors (the HTTP behaviour is tested in tests/e2e)."""

from __future__ import annotations

import hashlib
import json
import random
import re
import struct
from typing import Any

import pytest
from kubetune.collector import records
from kubetune.collector.auth import TokenFileError, TokenStore, parse_tokens
from kubetune.collector.records import (
    BodyError,
    Invalid,
    Valid,
    content_id,
    encode_line,
    read_batch,
    split_body,
    validate,
    validate_batch,
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
    # thumbs stay a label, not a point on the loop's rating scale; a rating beside it is kept
    down = ok({"prompt": "q", "response": "a", "thumbs": "down"})
    assert down["thumbs"] == "down" and "rating" not in down
    both = ok({"prompt": "q", "response": "a", "rating": 4, "thumbs": "up"})
    assert (both["rating"], both["thumbs"]) == (4, "up")
    assert errors({"prompt": "q", "response": "a", "rating": 4, "thumbs": 1}) == [
        ("thumbs", "must be 'up' or 'down'")
    ]


def nested(levels: int) -> Any:
    """Objects ``levels`` deep: ``nested(1)`` is ``{"a": 1}``."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def test_a_record_nested_too_deep_is_one_invalid_record() -> None:
    limit = records.MAX_DEPTH  # the record is level 1, its metadata level 2
    assert ok({"id": "d", "prompt": "p", "response": "r", "metadata": nested(limit - 1)})
    too_deep = {"id": "d", "prompt": "p", "response": "r", "metadata": nested(limit)}
    assert errors(too_deep) == [("metadata", f"nested more than {limit} levels deep")]
    assert errors({"prompt": "p", "response": "r", "x": [nested(limit)]})[0][0] == "x"
    # deeper than the parsers read (orjson: 1024, the json module: its recursion limit)
    deep = '{"id":"d","prompt":"p","response":"r","metadata":' + '{"a":' * 3000 + "1" + "}" * 3001
    body = json.dumps({"prompt": "p", "response": "r"}) + "\n" + deep
    valid, rejected = validate_batch(split_body(body.encode(), 10), NOW, 1 << 20)
    assert len(valid) == 1
    assert [(r.index, r.errors[0].to_dict()) for r in rejected] == [
        (1, {"path": "", "reason": f"line 2 is nested more than {limit} levels deep"})
    ]
    (alone,) = split_body(deep.encode(), 10)
    assert errors(alone) == [("", f"line 1 is nested more than {limit} levels deep")]


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


# --- the orjson fast paths write and read what the json module does ---------------------------

ODD_TEXTS = [
    "plain",
    "é and ü",
    "line\u2028sep\u2029para\x85nel",
    "emoji \U0001f600 and \U00010000",
    "del \x7f and controls \x00\x01\x1f\t\n\r\b\f",
    'quotes " and \\ backslash / slash',
    "\uffff\ufeff",
    "",
    "   ",
]
ODD_NUMBERS = [
    0,
    -1,
    2**63 - 1,
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    10**30,
    0.0,
    -0.0,
    0.1,
    1.5,
    1e-4,
    1e-05,
    9.99e-05,
    123456.789,
    1 / 3,
    1e15,
    9999999999999998.0,
    1e16,
    1e22,
    5e-324,
    -2.5e-300,
    1.7976931348623157e308,
    float("nan"),
    float("inf"),
    float("-inf"),
]


def reference_line(line: dict[str, Any]) -> bytes:
    return (json.dumps(line, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice(ODD_TEXTS) + chr(
            rng.randrange(0x20, 0x2FFFF) if rng.random() < 0.5 else 65
        )
    if kind == 1:
        return rng.choice(ODD_NUMBERS)
    if kind == 2:
        return struct.unpack("d", rng.randbytes(8))[0]
    if kind == 3:
        return rng.uniform(-1e6, 1e6) * 10 ** rng.randrange(-8, 8)
    if kind == 4:
        return rng.choice([None, True, False, rng.randrange(-(10**6), 10**6)])
    if kind == 5:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(ODD_TEXTS) + str(i): random_value(rng, depth + 1) for i in range(3)}


def test_encoded_lines_are_the_json_modules_bytes() -> None:
    lines: list[dict[str, Any]] = [
        {"id": "x", "prompt": text, "response": text + "!", "received_at": NOW}
        for text in ODD_TEXTS
    ]
    lines += [{"id": "n", "prompt": "p", "rating": number} for number in ODD_NUMBERS]
    lines.append({"id": "s", "prompt": "lone \ud800 surrogate", "metadata": {"\udc00": 1}})
    lines.append({"id": "d", "prompt": "deep", "metadata": {"a": [[[[[[[[1.5e-9]]]]]]]]}})
    lines.append({"id": "deeper", "prompt": "p", "metadata": json.loads("[" * 300 + "]" * 300)})
    chat = [{"role": "user", "content": "é?"}, {"role": "assistant", "content": "\U0001f600"}]
    lines.append({"id": "m", "prompt": "p", "messages": chat, "metadata": {"k": [1, "\x7f"]}})
    rng = random.Random(17)
    lines += [
        {"id": f"r{i}", "prompt": "p", "metadata": {"v": random_value(rng)}} for i in range(3000)
    ]
    for line in lines:
        assert encode_line(line) == reference_line(line), line


def test_content_ids_are_the_json_modules_hashes() -> None:
    rng = random.Random(2)
    records = [{"b": random_value(rng), "a": random_value(rng), "é": 1} for _ in range(2000)]
    records.append({"prompt": "\ud800", "response": "r"})
    records.append({"prompt": "p", "response": "r", "n": 10**40})
    for record in records:
        canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
        assert content_id(record) == "sha256:" + digest, record


def feedback_variants(rng: random.Random) -> list[Any]:
    """Records of every shape, valid and not, for the fast path and the full one to judge."""
    values: list[Any] = [
        *ODD_TEXTS,
        None,
        3,
        True,
        2.5,
        float("nan"),
        [],
        {},
        "up",
        "down",
        "x" * 300,
    ]
    fields = [
        "id",
        "prompt",
        "response",
        "rating",
        "thumbs",
        "correction",
        "chosen",
        "rejected",
        "model_version",
        "modelVersion",
        "metadata",
        "other",
    ]
    rows: list[Any] = []
    for _ in range(6000):
        row: dict[str, Any] = {"prompt": "q", "response": "a"} if rng.random() < 0.5 else {}
        for name in rng.sample(fields, rng.randrange(1, 7)):
            row[name] = rng.choice(values)
        if rng.random() < 0.2:
            row["metadata"] = {"v": random_value(rng)}
        elif rng.random() < 0.02:  # at the depth limit, or one level beyond it
            name = rng.choice(["metadata", "other", "id"])
            row[name] = nested(records.MAX_DEPTH - rng.randrange(3))
        if rng.random() < 0.1:
            row["id"] = rng.choice([7, 2**70, -1, "", " ", "ok", "\ud800"])
        rows.append(row)
    for _ in range(2000):  # records in the stored shape (keys in the line's order) and near it
        record_id = "s" if rng.random() < 0.8 else rng.choice([" ", "", "x" * 300, 5])
        stored: dict[str, Any] = {"id": record_id, "prompt": "q"}
        for name in ["response", "rating", "correction", "chosen", "rejected", "model_version"]:
            if rng.random() < 0.5:
                plain = 4.25 if name == "rating" else f"{name} text"
                odd = rng.choice([*values, 1e-5, 1e16, 0.0, -3, 2**64, "caf\u00e9", "\x7f"])
                stored[name] = plain if rng.random() < 0.8 else odd
        rows.append(stored)
    rows.append({"messages": [{"role": "user", "content": "q"}], "response": "a"})
    rows.append({"request": {"messages": [{"role": "user", "content": "q"}]}, "response": None})
    rows.append([1])
    return rows


def test_the_fast_validation_judges_as_the_full_one() -> None:
    rows = feedback_variants(random.Random(5))
    kept = 0
    for index, row in enumerate(rows):
        expected = records._validate_full(index, row, NOW)
        assert validate(index, row, NOW) == expected, row
        kept += isinstance(expected, Valid)
    assert 500 < kept < len(rows) - 500  # both outcomes are exercised
    valid, rejected = validate_batch(rows, NOW, max_record_bytes=400)
    pairs = [(i, validate(i, row, NOW)) for i, row in enumerate(rows)]
    assert valid.records() == [
        (v.id, encode_line(v.line))
        for _, v in pairs
        if isinstance(v, Valid) and len(encode_line(v.line)) <= 400
    ]
    over = [i for i, v in pairs if isinstance(v, Valid) and len(encode_line(v.line)) > 400]
    assert (
        over and [r.index for r in rejected if r.errors[0].reason.startswith("record over")] == over
    )


def test_bodies_read_as_the_json_module_reads_them() -> None:
    big = b'{"id": 123456789012345678901234567890, "prompt": "p", "response": "r"}'
    assert split_body(big, 10) == [json.loads(big)]  # an int, not orjson's float
    assert ok(split_body(big, 10)[0])["id"] == "123456789012345678901234567890"
    nan = b'[{"id": "n", "prompt": "p", "response": "r", "rating": NaN}]'
    assert errors(split_body(nan, 10)[0]) == [("rating", "must be finite")]
    surrogate = b'{"prompt":"\\ud800","response":"r"}\n{"prompt":"q","response":"r"}\n'
    assert errors(split_body(surrogate, 10)[0]) == [
        ("prompt", "is not valid Unicode (a lone surrogate)")
    ]
    bom = '\ufeff{"prompt":"p","response":"r"}\n'.encode()
    bad = split_body(bom + b'{"a":1}{"b":2}\n\n{"prompt": }\n\xc2\xa0\n[1]', 10)
    assert [errors(item) for item in bad] == [
        [("", "line 1 is not JSON (JSONDecodeError at column 1)")],
        [("", "line 2 is not JSON (JSONDecodeError at column 8)")],
        [("", "line 4 is not JSON (JSONDecodeError at column 12)")],
        [("", "must be an object, not a list")],
    ]
    # JSONL with a long run of digits (read by the json module): every line, not one null
    long_digits = [
        {"id": "order-12345678901234567890", "prompt": "p", "response": "r"},
        {"id": "b", "prompt": "p", "response": "r", "metadata": {"n": 2**70}},
    ]
    assert split_body("\n".join(map(json.dumps, long_digits)).encode(), 10) == long_digits
    # a line ends at \n, \r\n or \r, not at a U+2028 inside a string
    body = json.dumps({"prompt": "a\u2028b", "response": "r"}, ensure_ascii=False).encode()
    assert ok(split_body(body + b"\r\n" + body, 10)[1])["prompt"] == "a\u2028b"


def test_a_batch_in_one_stored_shape_is_judged_as_record_by_record() -> None:
    """The whole-batch path (every record in one stored shape) gives what the per-record
    path gives, and falls back to it when one record differs: blank or non-ASCII text, an
    integer id, an odd rating, a long id, a line over the size limit."""
    rng = random.Random(11)
    odd: list[Any] = [" ", "", "caf\u00e9", "\x7f", 7, None, 1e-5, 2**64, True, "x" * 300, "\ud800"]
    checked = 0
    for _ in range(400):
        keys = ["id", "prompt", "response", *rng.sample(["rating", "model_version"], 1)]
        rows: list[dict[str, Any]] = [
            {k: (2 if k == "rating" else f'{k} {n} \\ " q') for k in keys} for n in range(20)
        ]
        if rng.random() < 0.5:
            rows[rng.randrange(20)][rng.choice(keys)] = rng.choice(odd)
        limit = rng.choice([1 << 20, 140])
        expected_valid, expected_rejected = [], []
        for i, row in enumerate(rows):
            outcome = validate(i, row, NOW)
            line = encode_line(outcome.line) if isinstance(outcome, Valid) else b""
            if isinstance(outcome, Valid) and len(line) <= limit:
                expected_valid.append((outcome.id, line))
            else:
                expected_rejected.append(i)
        valid, rejected = validate_batch(rows, NOW, limit)
        assert valid.records() == expected_valid, rows
        assert [r.index for r in rejected] == expected_rejected
        checked += not expected_rejected
    assert checked > 100  # whole valid batches were exercised


def test_a_body_is_read_at_once_as_split_and_validated() -> None:
    """``read_batch`` (the common body read at once, without the scan for long integers) gives
    what ``validate_batch`` of ``split_body`` gives, for the literals orjson reads unlike the
    json module too: integers beyond 64 bits, long fractions, in a rating or an id."""
    rng = random.Random(23)
    literals = [
        "3",
        "4.5",
        "12345678901234567890123",
        "-98765432109876543210",
        "18446744073709551615",
        "1.0000000000000000000001",
        "1e400",
        "NaN",
        "0.1234567890123456789012",
        '"7"',
        "true",
    ]
    exercised = 0
    for _ in range(500):
        lines = []
        for n in range(rng.choice([1, 2, 5])):
            rating = rng.choice(literals) if rng.random() < 0.3 else "4"
            record_id = rng.choice(literals) if rng.random() < 0.1 else f'"r{n}"'
            lines.append(
                f'{{"id": {record_id}, "prompt": "q {n}", "response": "a", "rating": {rating}}}'
            )
        body = ("\n".join(lines) + rng.choice(["", "\n", "\r\n"])).encode()
        limit = rng.choice([1 << 20, 90])
        try:
            expected = validate_batch(split_body(body, 4), NOW, limit)
        except records.BodyError as exc:
            with pytest.raises(records.BodyError, match=re.escape(str(exc))):
                read_batch(body, 4, NOW, limit)
            continue
        valid, rejected = read_batch(body, 4, NOW, limit)
        assert valid == expected[0], body
        assert rejected == expected[1], body
        exercised += len(valid) > 1 and not rejected
    assert exercised > 50
