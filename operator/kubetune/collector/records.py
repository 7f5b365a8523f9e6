"""Request bodies -> validated feedback lines in the format a FeedbackLoop's collect step reads.

A body is one JSON object, a JSON array of objects, or JSONL (one object per line). Each
object is either

- a *feedback record*: ``prompt`` (or chat ``messages``), ``response``, ``rating`` (a number)
  or ``thumbs`` (``up``/``down``), ``correction``, ``chosen``/``rejected``, ``model_version``
  and an optional ``metadata`` object; or
- an *OpenAI chat-completion pair* as a gateway logs it: ``request`` (``{"model",
  "messages"}``) and ``response`` (the completion object, ``choices[0].message.content``),
  optionally with the same rating/correction fields.

Every record carries an ``id`` (its idempotency key, a string or an integer of at most 256
characters); a record without one gets ``sha256:<hash>`` of its canonical JSON. A valid record
becomes one line with the FeedbackLoop's default field names (``prompt``, ``response``,
``rating``, ``correction``, ``chosen``, ``rejected``) plus ``id``, ``model_version``,
``messages``, ``metadata`` and ``received_at``. Errors name the field path and the reason, never
the content.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

MAX_ID_CHARS = 256
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
    """The objects of a body: one JSON value, a JSON array, or JSONL (bad lines as _BadLine)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not UTF-8 text (byte {exc.start})") from exc
    if not text.strip():
        raise BodyError("the body is empty")
    if "\x00" in text:
        raise BodyError("the body holds NUL characters (binary data?)")
    try:
        value = json.loads(text)
    except ValueError:
        value = _jsonl(text, max_records)
    else:
        if not isinstance(value, list):
            value = [value]
    if len(value) > max_records:
        raise BodyError(f"{len(value)} records in one request; at most {max_records}")
    if not value:
        raise BodyError("the batch holds no records")
    return list(value)


@dataclass(frozen=True)
class _BadLine:
    line: int
    reason: str


def _jsonl(text: str, max_records: int) -> list[Any]:
    items: list[Any] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(items) >= max_records:
            raise BodyError(f"more than {max_records} records in one request")
        try:
            items.append(json.loads(raw))
        except ValueError as exc:
            reason = f"line {number} is not JSON ({type(exc).__name__} at column {_col(exc)})"
            items.append(_BadLine(number, reason))
    return items


def _col(exc: ValueError) -> int:
    return int(getattr(exc, "colno", 0))


def content_id(record: Any) -> str:
    """The id of a record that has none: a hash of its canonical JSON."""
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


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
    if "rating" in row and row["rating"] is not None:
        value = row["rating"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            check.fail("rating", f"must be a number, not {_kind(value)}")
            return None
        if not math.isfinite(value):
            check.fail("rating", "must be finite")
            return None
        return value
    thumbs = row.get("thumbs")
    if thumbs is None:
        return None
    if thumbs in ("up", "down"):
        return 1 if thumbs == "up" else 0
    check.fail("thumbs", "must be 'up' or 'down'")
    return None


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
    if isinstance(row, _BadLine):
        return Invalid(index, None, (FieldError("", row.reason),))
    if not isinstance(row, dict):
        return Invalid(index, None, (FieldError("", f"must be an object, not {_kind(row)}"),))
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
    rating = _rating(row, check)
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


def encode_line(line: dict[str, Any]) -> bytes:
    """One JSONL line (with its newline); ASCII-escaped so no record can split a line."""
    return (json.dumps(line, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")
