"""Schema ``preference``: paired (prompt or messages, chosen, rejected) and unpaired KTO
records (prompt or messages, completion, label).

- ``prompt`` is a string; ``messages`` the conversation before the answer (OpenAI or sharegpt
  turns, roles mapped as for chat). ``chosen``, ``rejected`` and ``completion`` are strings.
- ``label`` is true/false, 1/0, or desirable/undesirable (also good/bad, up/down, thumbs_up/
  thumbs_down); it is written as a boolean.
- A pair whose chosen and rejected answers are the same teaches nothing: it is dropped and
  counted (reason ``chosen_equals_rejected``).

What filters and de-duplication judge (:func:`judged_text`) is the prompt and the preferred
answer, so exact and near de-duplication key on prompt + chosen (or prompt + completion), and
a record's split follows that key; redaction rewrites every part (:func:`map_text`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetune_workloads.dataprep.formats import Malformed

FIELDS = ("prompt", "messages", "chosen", "rejected", "completion", "label")
ANSWERS = ("chosen", "rejected", "completion")
LABELS = {
    "desirable": True,
    "undesirable": False,
    "good": True,
    "bad": False,
    "up": True,
    "down": False,
    "thumbs_up": True,
    "thumbs_down": False,
    "true": True,
    "false": False,
    "1": True,
    "0": False,
}


def is_preference(fields: dict[str, Any]) -> bool:
    return "chosen" in fields or "completion" in fields


def judged_text(fields: dict[str, Any]) -> str:
    """The prompt (or conversation) and the preferred answer (or the KTO completion)."""
    parts = [m["content"] for m in fields.get("messages") or []]
    if fields.get("prompt"):
        parts.insert(0, fields["prompt"])
    answer = fields.get("chosen") if "chosen" in fields else fields.get("completion")
    return "\n\n".join([*parts, str(answer or "")])


def map_text(fields: dict[str, Any], fn: Callable[[str], str]) -> None:
    """Rewrite the prompt, every message and every answer in place."""
    for message in fields.get("messages") or []:
        message["content"] = fn(message["content"])
    for key in ("prompt", *ANSWERS):
        if isinstance(fields.get(key), str) and fields[key]:
            fields[key] = fn(fields[key])


def map_row(
    row: dict[str, Any], columns: dict[str, str], roles: dict[str, str], where: str
) -> dict[str, Any] | Malformed:
    """One source row as a preference record (``columns``: schema field -> source column)."""
    out: dict[str, Any] = {}
    prompt, messages = row.get(columns["prompt"]), row.get(columns["messages"])
    if messages is not None:
        mapped = _messages(messages, roles, where)
        if isinstance(mapped, Malformed):
            return mapped
        out["messages"] = mapped
    elif isinstance(prompt, str) and prompt.strip():
        out["prompt"] = prompt
    else:
        return Malformed(
            "missing_field", where, "schema preference needs a 'prompt' string or 'messages'"
        )
    unpaired = row.get(columns["chosen"]) is None and row.get(columns["completion"]) is not None
    for name in ("completion",) if unpaired else ("chosen", "rejected"):
        value = row.get(columns[name])
        if not isinstance(value, str) or not value.strip():
            shape = "completion and label" if unpaired else "chosen and rejected"
            return Malformed("missing_field", where, f"schema preference needs {shape}: {name!r}")
        out[name] = value
    if unpaired:
        label = _label(row.get(columns["label"]))
        if label is None:
            return Malformed(
                "wrong_type", where, "label must be true/false or desirable/undesirable"
            )
        out["label"] = label
    elif out["chosen"].strip() == out["rejected"].strip():
        return Malformed("chosen_equals_rejected", where, "chosen and rejected are the same")
    return out


def _label(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return LABELS.get(value.strip().lower())
    return None


def _messages(turns: Any, roles: dict[str, str], where: str) -> list[dict[str, str]] | Malformed:
    if not isinstance(turns, list) or not turns:
        return Malformed("wrong_type", where, "messages must be a non-empty list")
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return Malformed("wrong_type", where, f"message {i} is not an object")
        role, content = turn.get("role", turn.get("from")), turn.get("content", turn.get("value"))
        if not isinstance(role, str) or not isinstance(content, str):
            return Malformed("wrong_type", where, f"message {i} lacks a role or content")
        mapped = roles.get(role.lower())
        if mapped not in ("system", "user", "assistant"):
            return Malformed(
                "unknown_role", where, f"role {role!r} is not mapped (set roleMapping)"
            )
        out.append({"role": mapped, "content": content})
    return out
