"""Decontamination: drop training records sharing a word n-gram with an evaluation prompt set.

Prompt sets are JSONL files (or directories of them, e.g. a dataset artifact); the prompt
fields of each row (``prompt``, ``instruction``, ``input``, ``question``, ``text``, and user or
system chat messages) contribute their word n-grams. Reference answers do not: in a domain
corpus the canonical answers are meant to be learned.
N-grams are hashed like MinHash shingles (:mod:`.minhash`), kept in one sorted array, and each
batch of records is checked with a vectorized lookup.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kubetune_workloads import storage
from kubetune_workloads.dataprep.inputs import InputChecksum, local_checksum
from kubetune_workloads.dataprep.minhash import MinHasher
from kubetune_workloads.dataprep.streams import BadLine, read_lines
from kubetune_workloads.errors import invalid_input
from kubetune_workloads.manifest import file_sha256

PROMPT_FIELDS = ("prompt", "instruction", "input", "question", "text")


def _strings(row: Any) -> Iterator[str]:
    """The prompt texts of an evaluation row: prompt-like fields and user messages."""
    if not isinstance(row, dict):
        return
    for name in PROMPT_FIELDS:
        if isinstance(row.get(name), str):
            yield row[name]
    for message in row.get("messages") or []:
        if (
            isinstance(message, dict)
            and message.get("role") in ("user", "system")
            and isinstance(message.get("content"), str)
        ):
            yield message["content"]


def prompt_texts(uri: str) -> list[str]:
    """The prompt texts of every row of the JSONL file(s) at ``uri``."""
    path = storage.fetch(uri)
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise invalid_input(f"decontamination set {uri} holds no .jsonl files")
    texts: list[str] = []
    for file in files:
        with Path(file).open("rb") as handle:
            for line in read_lines(handle):
                if isinstance(line, BadLine) or not line.text.strip():
                    continue
                try:
                    texts.extend(_strings(json.loads(line.text)))
                except ValueError as exc:
                    raise invalid_input(f"{file}:{line.line_no}: invalid JSON ({exc})") from exc
    return texts


class Decontaminator:
    """Finds records that share an n-gram with any of the evaluation texts."""

    def __init__(self, texts: Sequence[str], ngram: int = 8) -> None:
        self.hasher = MinHasher(num_perm=1, ngram=ngram, seed=7)
        if texts:
            flat, _ = self.hasher.batch_shingles(list(texts))
            self.grams = np.unique(flat)
        else:
            self.grams = np.zeros(0, dtype=np.uint64)

    def __len__(self) -> int:
        return int(self.grams.size)

    def contaminated(self, texts: Sequence[str]) -> list[bool]:
        """For each text: whether it shares an n-gram with the evaluation sets."""
        if not texts or self.grams.size == 0:
            return [False] * len(texts)
        flat, offsets = self.hasher.batch_shingles(list(texts))
        pos = np.searchsorted(self.grams, flat)
        hit = (pos < self.grams.size) & (self.grams[np.minimum(pos, self.grams.size - 1)] == flat)
        per_doc = np.add.reduceat(hit.astype(np.int64), offsets)
        return [bool(x) for x in per_doc]


def prompt_checksums(uri: str) -> list[InputChecksum]:
    """The checksum of every prompt file at ``uri`` (inputs of the dataset version): a local
    file is keyed by its path relative to ``uri`` (its own name for a file), a remote one by
    its URI."""
    path = storage.fetch(uri)
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    scheme = storage.split_uri(uri)[0]
    if scheme in ("file", "pvc"):
        root = path if path.is_dir() else path.parent
        return [local_checksum(scheme, root, Path(f)) for f in files]
    base = uri.rstrip("/")
    named = [
        (f"{base}/{Path(f).relative_to(path).as_posix()}" if path.is_dir() else base, Path(f))
        for f in files
    ]
    return [InputChecksum(name, name, "sha256:" + file_sha256(f)) for name, f in named]
