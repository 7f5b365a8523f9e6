"""The internal record shape every stage works on, and helpers over its text fields.

A :class:`Record` holds the output fields in kubetune's prepared format (``text``;
``instruction``/``input``/``output``; or ``messages``) plus ``meta`` (the source index and, when
a balance field is configured, that field's value). Stages that transform text (cleaning, PII
and offensive redaction) rewrite every text field through :meth:`Record.map_text`; stages that
judge a record (curation, quality, dedup) look at :meth:`Record.text`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubetune_workloads.dataprep import preference


@dataclass
class Record:
    """One record flowing through the pipeline."""

    fields: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    # The normalized-text digest (exact-duplicate group): the split is decided per group.
    group: int = 0
    # Position in the input (map tasks hand records back in this order).
    position: int = -1
    # Whitespace-separated words of text(), counted by the map (-1: not counted yet).
    words: int = -1

    def word_count(self) -> int:
        if self.words < 0:
            self.words = len(self.text().split())
        return self.words

    def text(self) -> str:
        """All text fields joined by blank lines (what filters and dedup judge); for a
        preference record, the prompt and the preferred answer only."""
        if preference.is_preference(self.fields):
            return preference.judged_text(self.fields)
        if "messages" in self.fields:
            return "\n\n".join(m["content"] for m in self.fields["messages"])
        return "\n\n".join(v for v in self.fields.values() if isinstance(v, str) and v)

    def map_text(self, fn: Callable[[str], str]) -> None:
        """Rewrite every text field in place with ``fn``."""
        if preference.is_preference(self.fields):
            preference.map_text(self.fields, fn)
            return
        if "messages" in self.fields:
            for message in self.fields["messages"]:
                message["content"] = fn(message["content"])
            return
        for key, value in self.fields.items():
            if isinstance(value, str) and value:
                self.fields[key] = fn(value)

    def to_json(self) -> dict[str, Any]:
        """The record as written to train/validation files."""
        out = dict(self.fields)
        if self.meta:
            out["meta"] = self.meta
        return out

    def key(self) -> bytes:
        """A stable digest of the record's content (split assignment, sampling)."""
        text = json.dumps(self.fields, sort_keys=True, ensure_ascii=False)
        return hashlib.blake2b(text.encode(), digest_size=16).digest()

    def split_key(self) -> bytes:
        """What the train/validation split hashes: the exact-duplicate group, so records that
        differ only in case, punctuation or spacing (kept when ``exactDedup`` is off) land in
        the same split; the content key when no group was computed."""
        return self.group.to_bytes(8, "big") if self.group else self.key()


def fraction(key: bytes, salt: str) -> float:
    """A deterministic number in [0, 1) from a record key and a salt (seeded sampling)."""
    digest = hashlib.blake2b(key, digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") / 2**64
