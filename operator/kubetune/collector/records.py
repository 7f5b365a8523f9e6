"""Request bodies -> validated feedback lines in the format a FeedbackLoop's collect step reads.

A body is one JSON object, a JSON array of objects, or JSONL (one object per line). Each
object is either

- a *feedback record*: ``prompt`` (or chat ``messages``), ``response``, ``rating`` (a number)
  and/or ``thumbs`` (``up``/``down``, kept as that label: a loop reads it whatever its
  ``minRating``), ``correction``, ``chosen``/``rejected``, ``model_version`` and an optional
  ``metadata`` object; or
- an *OpenAI chat-completion pair* as a gateway logs it: ``request`` (``{"model",
  "messages"}``) and ``response`` (the completion object, ``choices[0].message.content``),
  optionally with the same rating/correction fields.

Every record carries an ``id`` (its idempotency key, a string or an integer of at most 256
characters); a record without one gets ``sha256:<hash>`` of its canonical JSON. A valid record
becomes one line with the FeedbackLoop's default field names (``prompt``, ``response``,
``rating``, ``correction``, ``chosen``, ``rejected``) plus ``thumbs``, ``id``,
``model_version``, ``messages``, ``metadata`` and ``received_at``. A record nested deeper than
``MAX_DEPTH`` levels is invalid (the loop's reader could not read its line back). Errors name
the field path and the reason, never the content.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from itertools import chain
from json.encoder import encode_basestring_ascii as _quote
from operator import itemgetter
from typing import Any

import orjson

from kubetune.collector.batch import Batch

MAX_ID_CHARS = 256
MAX_DEPTH = 128  # levels of objects and arrays in a record, the record itself being level 1
_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"
KNOWN_FIELDS = frozenset(
    {
        "id",
        "prompt",
        "messages",
        "response",
        "request",
        "rating",
        "thumbs",
        "correction",
        "chosen",
        "rejected",
        "model_version",
        "modelVersion",
        "metadata",
    }
)


@dataclass(frozen=True)
class FieldError:
    """Why one field of a record is invalid: ``path`` (e.g. ``response.choices[0]``)."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class Valid:
    """A record ready to write: its id and its line (JSON object, no newline)."""

    id: str
    line: dict[str, Any]


@dataclass(frozen=True)
class Invalid:
    """A record that cannot be stored: its index in the batch, its id if known, the errors."""

    index: int
    id: str | None
    errors: tuple[FieldError, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "id": self.id,
            "errors": [e.to_dict() for e in self.errors],
        }


class BodyError(ValueError):
    """The body as a whole cannot be read (not UTF-8, empty, too many records)."""


def split_body(body: bytes, max_records: int) -> list[Any]:
    """The objects of a body: one JSON value, a JSON array, or JSONL (bad lines as _BadLine).

    Parsed with orjson; where orjson refuses what the json module reads (NaN, a lone
    surrogate escape, a UTF-8 BOM...) or would read it differently (an integer literal of 19
    digits or more becomes a float in orjson), the json module decides, so the values and the
    error messages are the json module's.
    """
    fast = _LONG_DIGITS not in body.translate(_DIGITS)
    # the common batch, read at once: lines orjson reads are UTF-8 and hold no NUL
    value = _jsonl_lines(body) if fast else None
    if value is None:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BodyError(f"the body is not UTF-8 text (byte {exc.start})") from exc
        if not text.strip():
            raise BodyError("the body is empty")
        if b"\x00" in body:
            raise BodyError("the body holds NUL characters (binary data?)")
        value = _whole_or_lines(body, text, max_records, fast)
    if len(value) > max_records:
        raise BodyError(f"{len(value)} records in one request; at most {max_records}")
    if not value:
        raise BodyError("the batch holds no records")
    return list(value)


def _jsonl_lines(body: bytes) -> list[Any] | None:
    """The values of a body of two or more non-blank lines that orjson reads one by one.

    Such a body is never one JSON value (two values in a row are not JSON), so reading it as
    JSONL first is what reading it whole, failing and reading it line by line would give.
    None for anything else (one line, a line orjson refuses).
    """
    if b"\n" not in body and b"\r" not in body:
        return None
    lines = body.splitlines()
    try:
        items = list(map(orjson.loads, lines))  # no blank line: the common body
    except ValueError:
        try:
            items = [orjson.loads(raw) for raw in lines if raw.strip()]
        except ValueError:
            return None
    return items if len(items) > 1 else None


def _whole_or_lines(body: bytes, text: str, max_records: int, fast: bool) -> list[Any]:
    """One JSON value (an array: its items), else JSONL with its bad lines as _BadLine."""
    readers: list[tuple[Any, bytes | str]] = [(orjson.loads, body)] if fast else []
    for read, data in [*readers, (json.loads, text)]:
        try:
            value = read(data)
        except (ValueError, RecursionError):  # RecursionError: nested beyond the parser's limit
            continue
        return value if isinstance(value, list) else [value]
    return _jsonl(body, max_records, fast)


# every digit -> "0", anything else -> " ": an integer literal orjson would read as a float
# (beyond 64 bits) shows as 19 zeros in a row (a translate and a substring search: ~1 us/KB)
_DIGITS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_LONG_DIGITS = b"0" * 19


@dataclass(frozen=True)
class _BadLine:
    line: int
    reason: str


def _jsonl(body: bytes, max_records: int, fast: bool) -> list[Any]:
    """JSONL: lines end at \\n, \\r\\n or \\r (a U+2028 in a string does not end one)."""
    lines = body.splitlines()
    if fast:
        try:  # the common case: every line reads
            items = [orjson.loads(raw) for raw in lines if raw.strip()]
        except ValueError:
            pass
        else:
            if len(items) > max_records:
                raise BodyError(f"more than {max_records} records in one request")
            return items
    items = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if len(items) >= max_records:
            raise BodyError(f"more than {max_records} records in one request")
        if fast:
            try:
                items.append(orjson.loads(raw))
                continue
            except ValueError:
                pass
        line = raw.decode("utf-8")
        try:
            items.append(json.loads(line))
        except RecursionError:  # deeper than orjson (1024 levels) and the json module read
            items.append(_BadLine(number, f"line {number} is {_TOO_DEEP}"))
        except ValueError as exc:
            if not line.strip():  # Unicode blanks only (e.g. NBSP): a blank line
                continue
            reason = f"line {number} is not JSON ({type(exc).__name__} at column {_col(exc)})"
            items.append(_BadLine(number, reason))
    return items


def _col(exc: ValueError) -> int:
    return int(getattr(exc, "colno", 0))


def content_id(record: Any) -> str:
    """The id of a record that has none: a hash of its canonical JSON.

    The canonical JSON is ``json.dumps(record, sort_keys=True, ensure_ascii=False,
    separators=(",", ":"))`` in UTF-8; orjson writes the same bytes for plain values (see
    ``_plain``), the json module writes the others.
    """
    if _plain_or_not(record):
        try:
            canonical = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # a lone surrogate, an integer beyond 64 bits
            pass
        else:
            return "sha256:" + hashlib.sha256(canonical).hexdigest()
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _plain(value: Any) -> bool:
    """Whether orjson writes ``value`` as the json module does: JSON types only, and floats
    that both print in positional notation (orjson writes 1e-05 as 0.00001) or as 0."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return bool(value == 0.0 or 1e-4 <= abs(value) < 1e16)  # False for NaN and infinity
    if kind is dict:
        return all(type(key) is str and _plain(item) for key, item in value.items())
    if kind is list:
        return all(_plain(item) for item in value)
    return False


def _plain_within(value: Any, level: int) -> bool | None:
    """``_plain`` of an object or array at ``level`` of a record, in the same walk: None when
    it holds objects or arrays beyond ``MAX_DEPTH`` (see ``_nested_field``)."""
    if level > MAX_DEPTH:
        return None
    plain = True
    if type(value) is dict:
        plain = all(type(key) is str for key in value)
        value = value.values()
    for item in value:
        kind = type(item)
        if kind is dict or kind is list:
            inner = _plain_within(item, level + 1)
            if inner is None:
                return None
            plain = plain and inner
        elif plain:
            plain = _plain(item)
    return plain


def _plain_or_not(value: Any) -> bool:
    try:
        return _plain(value)
    except RecursionError:
        return False


class _Checker:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def fail(self, path: str, reason: str) -> None:
        self.errors.append(FieldError(path, reason))

    def text(self, value: Any, path: str, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.fail(path, "required")
            return None
        if not isinstance(value, str):
            self.fail(path, f"must be a string, not {_kind(value)}")
            return None
        if not value.isascii():  # ASCII text (the common case) cannot hold a lone surrogate
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                self.fail(path, "is not valid Unicode (a lone surrogate)")
                return None
        if not value.strip():
            if required:
                self.fail(path, "must not be empty")
            return None
        return value

    def content(self, value: Any, path: str) -> str | None:
        """A chat message's content: a string or a list of parts with ``text``."""
        if isinstance(value, list):
            texts = []
            for i, part in enumerate(value):
                if isinstance(part, dict) and part.get("type", "text") == "text":
                    text = self.text(part.get("text"), f"{path}[{i}].text", required=True)
                    if text is not None:
                        texts.append(text)
            if not texts:
                self.fail(path, "holds no text part")
                return None
            return "\n".join(texts)
        return self.text(value, path, required=True)

    def messages(self, value: Any, path: str) -> list[dict[str, str]] | None:
        if not isinstance(value, list) or not value:
            self.fail(path, "must be a non-empty list of {role, content}")
            return None
        out: list[dict[str, str]] = []
        for i, message in enumerate(value):
            where = f"{path}[{i}]"
            if not isinstance(message, dict):
                self.fail(where, f"must be an object, not {_kind(message)}")
                continue
            role = self.text(message.get("role"), f"{where}.role", required=True)
            content = self.content(message.get("content"), f"{where}.content")
            if role is not None and content is not None:
                out.append({"role": role, "content": content})
        return out if len(out) == len(value) else None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def render_prompt(messages: list[dict[str, str]]) -> str:
    """The prompt of a conversation: the user's message, or the transcript of several turns."""
    turns = [m for m in messages if m["role"] != "system"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _record_id(row: dict[str, Any], check: _Checker) -> str | None:
    value = row.get("id")
    if value is None:
        return content_id(row)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        check.fail("id", f"must be a non-empty string or an integer, not {_kind(value)}")
        return None
    if len(value) > MAX_ID_CHARS:
        check.fail("id", f"longer than {MAX_ID_CHARS} characters")
        return None
    return value


def _rating(row: dict[str, Any], check: _Checker) -> float | int | None:
    value = row.get("rating")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        check.fail("rating", f"must be a number, not {_kind(value)}")
        return None
    if not math.isfinite(value):
        check.fail("rating", "must be finite")
        return None
    return value


def _thumbs(row: dict[str, Any], check: _Checker) -> str | None:
    """The thumbs label, kept as ``up`` or ``down`` (a binary label, not a point on the loop's
    rating scale: the loop reads up as good and down as bad whatever its ``minRating``)."""
    thumbs = row.get("thumbs")
    if thumbs is None or thumbs == "up" or thumbs == "down":
        return thumbs
    check.fail("thumbs", "must be 'up' or 'down'")
    return None


def _nested_field(row: dict[str, Any], skip: str = "") -> str | None:
    """The first field of a record (but ``skip``) that holds objects or arrays more than
    ``MAX_DEPTH`` levels deep (the record is level 1); None when none does."""
    for key, value in row.items():
        kind = type(value)
        if (kind is dict or kind is list) and key != skip and _deeper(value, 2):
            return str(key)
    return None


def _deeper(value: Any, level: int) -> bool:
    """Whether ``value`` (an object or array at ``level``) holds one beyond ``MAX_DEPTH``."""
    children = value.values() if type(value) is dict else value
    for child in children:
        kind = type(child)
        if (kind is dict or kind is list) and (level >= MAX_DEPTH or _deeper(child, level + 1)):
            return True
    return False


def _too_deep(index: int, row: dict[str, Any], field: str) -> Invalid:
    """A record nested too deep: its given id only (hashing its content would recurse)."""
    given = row.get("id")
    record_id = str(given) if type(given) is str or type(given) is int else None
    if record_id is not None and len(record_id) > MAX_ID_CHARS:
        record_id = None
    return Invalid(index, record_id, (FieldError(field, _TOO_DEEP),))


def _openai(row: dict[str, Any], check: _Checker) -> tuple[str | None, str | None, str | None]:
    """(prompt, response, model) of an OpenAI chat-completion request/response pair."""
    request, response = row.get("request"), row.get("response")
    prompt = answer = model = None
    if not isinstance(request, dict):
        check.fail("request", f"must be an object, not {_kind(request)}")
    else:
        messages = check.messages(request.get("messages"), "request.messages")
        if messages is not None:
            prompt = render_prompt(messages)
        if isinstance(request.get("model"), str):
            model = request["model"]
    if response is None:
        return prompt, None, model
    if not isinstance(response, dict):
        check.fail("response", f"must be a chat completion object, not {_kind(response)}")
        return prompt, None, model
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        check.fail("response.choices", "must be a non-empty list of choices")
        return prompt, None, model
    message = choices[0].get("message")
    if not isinstance(message, dict):
        check.fail("response.choices[0].message", f"must be an object, not {_kind(message)}")
        return prompt, None, model
    answer = check.content(message.get("content"), "response.choices[0].message.content")
    if isinstance(response.get("model"), str):
        model = response["model"]
    return prompt, answer, model


def validate(index: int, row: Any, received_at: str) -> Valid | Invalid:
    """One record of a batch -> the line to store, or its errors."""
    fast = _fast_line(row, received_at) if type(row) is dict else None
    if fast is not None:
        return Valid(fast[0]["id"], fast[0])
    return _validate_full(index, row, received_at)


def read_batch(
    body: bytes, max_records: int, received_at: str, max_record_bytes: int
) -> tuple[Batch, list[Invalid]]:
    """A body -> (its valid records, its invalid ones): ``validate_batch`` of ``split_body``.

    The common body (JSONL of records in the stored shape, see ``_stored_shape_batch``) is
    read at once, without ``split_body``'s scan for long integer literals: the stored shape
    holds no number but a rating, and a rating that orjson reads unlike the json module (an
    integer literal of 19 digits or more, at least 1e18 as JSON has no leading zeros) is not
    one it takes. BodyError when the body cannot be read at all.
    """
    items = _jsonl_lines(body)
    if items is not None and len(items) <= max_records:
        tail = _tail(received_at)
        whole = _stored_shape_batch(items, tail, max_record_bytes)
        if whole is not None:
            return whole, []
        if _LONG_DIGITS not in body.translate(_DIGITS):  # what split_body reads: not again
            return _validate_each(items, received_at, tail, max_record_bytes)
    return validate_batch(split_body(body, max_records), received_at, max_record_bytes)


def _tail(received_at: str) -> bytes:
    """The end of a stored line: its ``received_at`` field, the object's end, the newline."""
    return b',"received_at":' + orjson.dumps(received_at) + b"}\n"


def validate_batch(
    items: list[Any], received_at: str, max_record_bytes: int
) -> tuple[Batch, list[Invalid]]:
    """The records of a batch -> (the valid ones, in order, each as its id and encoded
    line; the invalid ones).

    A line over ``max_record_bytes`` is invalid. Same outcome as ``validate`` and
    ``encode_line`` record by record, without building their objects for the common records.
    """
    tail = _tail(received_at)
    whole = _stored_shape_batch(items, tail, max_record_bytes)
    if whole is not None:
        return whole, []
    return _validate_each(items, received_at, tail, max_record_bytes)


def _validate_each(
    items: list[Any], received_at: str, tail: bytes, max_record_bytes: int
) -> tuple[Batch, list[Invalid]]:
    """``validate_batch`` record by record (``tail``: ``_tail(received_at)``)."""
    ids: list[str] = []
    lines: list[bytes] = []
    rejected: list[Invalid] = []
    for index, row in enumerate(items):
        stored = _stored_shape_line(row, tail) if type(row) is dict else None
        if stored is not None and len(stored) <= max_record_bytes:
            ids.append(row["id"])
            lines.append(stored)
            continue
        fast = _fast_line(row, received_at) if type(row) is dict else None
        if fast is not None:
            record_id, data = fast[0]["id"], _dump(*fast)
        else:
            outcome = _validate_full(index, row, received_at)
            if isinstance(outcome, Invalid):
                rejected.append(outcome)
                continue
            record_id, data = outcome.id, encode_line(outcome.line)
        if len(data) > max_record_bytes:
            error = FieldError("", f"record over {max_record_bytes} bytes")
            rejected.append(Invalid(index, record_id, (error,)))
        else:
            ids.append(record_id)
            lines.append(data)
    return Batch(ids, b"".join(lines)), rejected


def _stored_orders() -> dict[tuple[str, ...], int]:
    """The key orders of a record that is its own line but for ``received_at`` (the id, the
    prompt, then optional fields in the line's order, one of them a response, correction or
    chosen), each with the position of its rating (-1: none)."""
    optional = ("response", "rating", "correction", "chosen", "rejected", "model_version")
    orders = {}
    for mask in range(1 << len(optional)):
        present = ("id", "prompt", *(key for bit, key in enumerate(optional) if mask >> bit & 1))
        if {"response", "correction", "chosen"} & set(present):
            orders[present] = present.index("rating") if "rating" in present else -1
    return orders


_STORED_ORDERS = _stored_orders()


_NEXT_RECORD = b'},{"id":'  # in orjson's output of records that hold no object: between two


def _stored_shape_batch(items: list[Any], tail: bytes, max_record_bytes: int) -> Batch | None:
    """``_stored_shape_line`` of every record of a batch at once, when all are in one stored
    shape (the common batch of an application): one orjson call for all the lines, the checks
    run over the whole batch, the lines made with one replace. None when any record is not
    (each is then judged alone)."""
    if not items or set(map(type, items)) != {dict}:
        return None
    shapes = set(map(tuple, items))
    if len(shapes) != 1:
        return None
    (keys,) = shapes
    rating_at = _STORED_ORDERS.get(keys)
    if rating_at is None:
        return None
    if rating_at >= 0 and not _plain_ratings([row["rating"] for row in items]):
        return None
    texts = [key for key in keys if key != "rating"]
    try:
        values = list(chain.from_iterable(map(itemgetter(*texts), items)))
        if not all(values) or any(map(str.isspace, values)):
            return None  # an empty or blank string (isspace: a TypeError for a non-string)
        data = orjson.dumps(items)
    except (TypeError, orjson.JSONEncodeError):  # not a string; a lone surrogate, a big int
        return None
    ids: list[str] = [row["id"] for row in items]
    if max(map(len, ids)) > MAX_ID_CHARS or not data.isascii() or b"\x7f" in data:
        return None
    # '[{"id":...},{"id":...}]' -> '{"id":...<tail>{"id":...<tail>': an unescaped quote is
    # never inside a string, so each '},{"id":' is between two records
    inner = data[1:-2]
    if inner.count(_NEXT_RECORD) != len(items) - 1:
        return None
    lines = inner.replace(_NEXT_RECORD, tail + b'{"id":') + tail
    if len(lines) > max_record_bytes and max(map(len, lines.splitlines())) >= max_record_bytes:
        return None  # a line (with its newline) over the limit: judged alone
    return Batch(ids, lines)


def _plain_ratings(ratings: list[Any]) -> bool:
    """Whether each rating is an int or a float orjson writes as the json module does."""
    if set(map(type, ratings)) == {int}:
        return True
    return all(
        type(r) is int or (type(r) is float and (r == 0.0 or 1e-4 <= abs(r) < 1e16))
        for r in ratings
    )


def _stored_shape_line(row: dict[str, Any], tail: bytes) -> bytes | None:
    """The line of a record already in the stored shape (string id, keys in the line's order,
    non-blank ASCII strings, a plain number as rating): its orjson bytes with ``tail`` (the
    ``received_at`` field) spliced in. None for any other record (``_fast_line`` judges it)."""
    rating_at = _STORED_ORDERS.get(tuple(row))
    if rating_at is None:
        return None
    texts = list(row.values())
    if rating_at >= 0:
        rating = texts.pop(rating_at)
        kind = type(rating)
        if not (kind is int or (kind is float and (rating == 0.0 or 1e-4 <= abs(rating) < 1e16))):
            return None
    try:
        if not all(map(str.strip, texts)):
            return None  # an empty or blank string: dropped from the line
    except TypeError:
        return None  # a value that is not a string
    if len(texts[0]) > MAX_ID_CHARS:
        return None
    try:
        data = orjson.dumps(row)
    except orjson.JSONEncodeError:  # a lone surrogate, an integer beyond 64 bits
        return None
    if not data.isascii() or b"\x7f" in data:
        return None  # strings to escape as the json module does: _fast_line's way
    return data[:-1] + tail


def _utf8(text: str) -> bool:
    """Whether a non-ASCII string is valid Unicode (holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fast_line(row: dict[str, Any], received_at: str) -> tuple[dict[str, Any], bool] | None:
    """(line, plain) of a valid feedback record in its common shape (no chat, no OpenAI pair,
    JSON types); None for any other record, which ``_validate_full`` then judges. The line is
    the one ``_validate_full`` builds; ``plain``: orjson may write it (see ``_plain``)."""
    get = row.get
    if "request" in row or get("messages") is not None:
        return None
    # the known fields hold text or numbers here (else None below), the metadata is walked
    # below: only other fields can nest
    if not KNOWN_FIELDS.issuperset(row) and _nested_field(row, skip="metadata") is not None:
        return None
    record_id = get("id")
    if type(record_id) is not str and record_id is not None:
        if type(record_id) is not int:
            return None
        record_id = str(record_id)
    if record_id is not None and (
        len(record_id) > MAX_ID_CHARS or not record_id or record_id.isspace()
    ):
        return None
    prompt = get("prompt")
    if type(prompt) is not str or not prompt or prompt.isspace():
        return None
    if not (prompt.isascii() or _utf8(prompt)):
        return None
    line: dict[str, Any] = {"id": record_id, "prompt": prompt}
    plain = _fast_fields(row, line)
    if plain is None:
        return None
    if "response" not in line and "correction" not in line and "chosen" not in line:
        return None
    model = None
    for name in ("model_version", "modelVersion"):
        value = get(name)
        if value is not None:
            if type(value) is not str or not (value.isascii() or _utf8(value)):
                return None
            if value and not value.isspace():
                model = value
    if model is not None:
        line["model_version"] = model
    metadata = get("metadata")
    if metadata is not None:
        if type(metadata) is not dict:
            return None
        walked = _plain_within(metadata, 2)
        if walked is None:
            return None
        plain = plain and walked
        line["metadata"] = metadata
    line["received_at"] = received_at
    if record_id is None:
        line["id"] = content_id(row)
    return line, plain


def _fast_fields(row: dict[str, Any], line: dict[str, Any]) -> bool | None:
    """Add ``_TEXT_FIELDS`` of a record to its ``line``, in the line's order: whether orjson
    may write them (see ``_plain``); None when one is not in the fast shape."""
    get = row.get
    plain = True
    for key in _TEXT_FIELDS:  # each field in the line's order; rating after response
        if key == "rating":
            rating = _fast_rating(row)
            if rating is _UNFIT:
                return None
            if rating is not None:
                line["rating"] = rating
                plain = type(rating) is int or rating == 0.0 or 1e-4 <= abs(rating) < 1e16
            continue
        if key == "thumbs":
            thumbs = get("thumbs")
            if thumbs is not None:
                if thumbs != "up" and thumbs != "down":
                    return None
                line["thumbs"] = thumbs
            continue
        value = get(key)
        if value is not None:
            if type(value) is not str or not (value.isascii() or _utf8(value)):
                return None
            if value and not value.isspace():
                line[key] = value
    return plain


_TEXT_FIELDS = ("response", "rating", "thumbs", "correction", "chosen", "rejected")
_UNFIT = object()


def _fast_rating(row: dict[str, Any]) -> Any:
    """A valid rating (an int or a finite float), None, or _UNFIT."""
    rating = row.get("rating")
    if rating is None:
        return None
    if type(rating) is int or (type(rating) is float and math.isfinite(rating)):
        return rating
    return _UNFIT


def _validate_full(index: int, row: Any, received_at: str) -> Valid | Invalid:
    """``validate`` of any record: every shape, every error with its field path."""
    if isinstance(row, _BadLine):
        return Invalid(index, None, (FieldError("", row.reason),))
    if not isinstance(row, dict):
        return Invalid(index, None, (FieldError("", f"must be an object, not {_kind(row)}"),))
    deep = _nested_field(row)
    if deep is not None:
        return _too_deep(index, row, deep)
    check = _Checker()
    record_id = _record_id(row, check)
    messages: list[dict[str, str]] | None = None
    model = None
    if "request" in row:
        prompt, response, model = _openai(row, check)
    else:
        if row.get("messages") is not None:
            messages = check.messages(row["messages"], "messages")
            prompt = None
            if messages is not None:
                if messages[-1]["role"] == "assistant" and row.get("response") is None:
                    row = {**row, "response": messages[-1]["content"]}
                    messages = messages[:-1]
                prompt = render_prompt(messages) if messages else None
                if prompt is None:
                    check.fail("messages", "holds no prompt before the answer")
        else:
            prompt = check.text(row.get("prompt"), "prompt", required=True)
        response = check.text(row.get("response"), "response")
    correction = check.text(row.get("correction"), "correction")
    chosen = check.text(row.get("chosen"), "chosen")
    rejected = check.text(row.get("rejected"), "rejected")
    rating, thumbs = _rating(row, check), _thumbs(row, check)
    for name in ("model_version", "modelVersion"):
        if row.get(name) is not None:
            model = check.text(row[name], name) or model
    metadata = row.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        check.fail("metadata", f"must be an object, not {_kind(metadata)}")
    if not check.errors and response is None and correction is None and chosen is None:
        check.fail("response", "required: a response, a correction or a chosen answer")
    if check.errors or record_id is None or prompt is None:
        return Invalid(index, record_id, tuple(check.errors))
    line: dict[str, Any] = {"id": record_id, "prompt": prompt}
    optional = {
        "response": response,
        "rating": rating,
        "thumbs": thumbs,
        "correction": correction,
        "chosen": chosen,
        "rejected": rejected,
        "model_version": model,
        "messages": messages if messages and len(messages) > 1 else None,
        "metadata": metadata,
    }
    line.update({k: v for k, v in optional.items() if v is not None})
    line["received_at"] = received_at
    return Valid(record_id, line)


_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))
_NOT_ASCII = re.compile(rb"[\x7f-\xff]+")


def encode_line(line: dict[str, Any]) -> bytes:
    """One JSONL line (with its newline); ASCII-escaped so no record can split a line.

    The same bytes as ``json.dumps(line, ensure_ascii=True, separators=(",", ":")) + "\\n"``:
    orjson writes plain lines (see ``_plain``), their non-ASCII characters (and DEL) escaped
    afterwards as the json module escapes them; the json module writes the others.
    """
    return _dump(line, _plain_or_not(line))


def _dump(line: dict[str, Any], plain: bool) -> bytes:
    if plain:
        try:
            data = orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:  # a lone surrogate, an integer beyond 64 bits
            pass
        else:
            if data.isascii() and b"\x7f" not in data:
                return data
            # non-ASCII bytes only occur inside strings: each run is whole UTF-8 characters
            return _NOT_ASCII.sub(_escape_run, data)
    return _stdlib_line(line)


def _escape_run(match: re.Match[bytes]) -> bytes:
    out = []
    for char in match.group().decode("utf-8"):
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out).encode("ascii")


def _stdlib_line(line: dict[str, Any]) -> bytes:
    """``encode_line`` with the json module: string values go straight to its C escaper."""
    fields = [
        f"{_quote(key)}:{_quote(value) if type(value) is str else _ENCODER.encode(value)}"
        for key, value in line.items()
    ]
    return ("{" + ",".join(fields) + "}\n").encode("ascii")
