"""Map raw source rows onto the internal record shape of the dataset's schema.

- ``text``: ``{"text"}``.
- ``instruction`` (alpaca): ``{"instruction", "input", "output"}``; ``input`` is optional.
- ``chat``: ``{"messages": [{"role", "content"}]}`` from OpenAI ``messages`` or sharegpt
  ``conversations`` (``from``/``value``), roles mapped to system/user/assistant.
- ``preference``: ``{"prompt" | "messages", "chosen", "rejected"}`` or, unpaired (KTO),
  ``{"prompt" | "messages", "completion", "label"}`` (:mod:`.preference`).

``DataSource.fields`` maps schema field names to the source's column names. A row that does
not fit becomes a :class:`Malformed` with a reason and a message naming the field.
"""

from __future__ import annotations

from typing import Any

from kubetune_workloads.dataprep import preference
from kubetune_workloads.dataprep.formats import Malformed
from kubetune_workloads.dataprep.records import Record

DEFAULT_ROLES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
}
SCHEMA_FIELDS = {
    "text": ("text",),
    "instruction": ("instruction", "input", "output"),
    "chat": ("messages",),
    "preference": preference.FIELDS,
}


class SchemaMapper:
    """Turns raw rows of one source into :class:`Record` objects of one schema."""

    def __init__(
        self,
        schema: str,
        fields: dict[str, str] | None = None,
        role_mapping: dict[str, str] | None = None,
        meta_field: str | None = None,
    ) -> None:
        self.schema = schema
        self.columns = {name: (fields or {}).get(name, name) for name in SCHEMA_FIELDS[schema]}
        self.roles = {**DEFAULT_ROLES, **{k.lower(): v for k, v in (role_mapping or {}).items()}}
        self.meta_field = meta_field

    def map(self, row: dict[str, Any], where: str, source_index: int) -> Record | Malformed:
        if self.schema == "text":
            result = self._text(row, where)
        elif self.schema == "instruction":
            result = self._instruction(row, where)
        elif self.schema == "preference":
            result = preference.map_row(row, self.columns, self.roles, where)
        else:
            result = self._chat(row, where)
        if isinstance(result, Malformed):
            return result
        meta: dict[str, Any] = {"source": source_index}
        if self.meta_field and self.meta_field in row:
            value = row[self.meta_field]
            meta[self.meta_field] = value if isinstance(value, str | int | float | bool) else None
        return Record(fields=result, meta=meta)

    def _string(self, row: dict[str, Any], name: str, where: str, required: bool) -> Any:
        column = self.columns[name]
        value = row.get(column)
        if value is None:
            if required:
                hint = f" (mapped from {column!r})" if column != name else ""
                return Malformed(
                    "missing_field",
                    where,
                    f"missing field {name!r}{hint} required by schema {self.schema}; "
                    f"row has {sorted(row)[:8]}; map columns with sources[].fields",
                )
            return ""
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return Malformed("wrong_type", where, f"field {name!r} is a {type(value).__name__}")
        if required and not value.strip():
            return Malformed("empty_field", where, f"field {name!r} is empty")
        return value

    def _text(self, row: dict[str, Any], where: str) -> dict[str, Any] | Malformed:
        text = self._string(row, "text", where, required=True)
        return text if isinstance(text, Malformed) else {"text": text}

    def _instruction(self, row: dict[str, Any], where: str) -> dict[str, Any] | Malformed:
        out: dict[str, Any] = {}
        for name, required in (("instruction", True), ("input", False), ("output", True)):
            value = self._string(row, name, where, required)
            if isinstance(value, Malformed):
                return value
            out[name] = value
        return out

    def _chat(self, row: dict[str, Any], where: str) -> dict[str, Any] | Malformed:
        column = self.columns["messages"]
        turns = row.get(column)
        if turns is None and column == "messages":
            turns = row.get("conversations")
        if turns is None:
            return Malformed(
                "missing_field",
                where,
                f"missing field {column!r} (or 'conversations') required by schema chat",
            )
        if not isinstance(turns, list) or not turns:
            return Malformed("wrong_type", where, "messages must be a non-empty list")
        messages = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict):
                return Malformed("wrong_type", where, f"message {i} is not an object")
            role = turn.get("role", turn.get("from"))
            content = turn.get("content", turn.get("value"))
            if not isinstance(role, str) or not isinstance(content, str):
                return Malformed("wrong_type", where, f"message {i} lacks a role or content")
            mapped = self.roles.get(role.lower())
            if mapped not in ("system", "user", "assistant"):
                return Malformed(
                    "unknown_role", where, f"role {role!r} is not mapped (set roleMapping)"
                )
            messages.append({"role": mapped, "content": content})
        if not any(m["role"] == "assistant" for m in messages):
            return Malformed("no_assistant_turn", where, "conversation has no assistant turn")
        return {"messages": messages}
