"""The prepared-dataset artifact format, read by finetune, compress and evaluate.

A dataset artifact directory holds:

- ``train.jsonl`` and ``validation.jsonl`` (or ``.parquet``): one record per line in kubetune's
  internal shape, by schema: ``text`` -> ``{"text"}``; ``instruction`` ->
  ``{"instruction", "input", "output"}``; ``chat`` -> ``{"messages": [{"role", "content"}]}``.
  Records may carry extra keys (e.g. ``"meta"``), which consumers ignore.
- ``dataset.json`` (:class:`DatasetInfo`): schema, record counts, format, tokenizer sub-dir.
- optionally ``tokenizer/`` (an HF tokenizer trained by the dataprep step),
- ``stats.json``, ``README.md`` (data card), and ``kubetune-manifest.json`` (written last).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from kubetune_workloads.errors import invalid_input

DATASET_INFO_FILE = "dataset.json"
SPLITS = ("train", "validation")


class DatasetInfo(BaseModel):
    """``dataset.json``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    schema_: Literal["text", "instruction", "chat", "preference"] = "text"
    records: dict[str, int] = {}
    tokens: int | None = None
    format: Literal["jsonl", "parquet"] = "jsonl"
    tokenizer: str | None = None  # sub-directory name, when the dataset ships a tokenizer
    version: str | None = None

    def to_json(self) -> str:
        data = self.model_dump(by_alias=True)
        data["schema"] = data.pop("schema_", None) or data.pop("schema", "text")
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> DatasetInfo:
        data = json.loads(text)
        if "schema" in data:
            data["schema_"] = data.pop("schema")
        return cls.model_validate(data)


@dataclass
class PreparedDataset:
    """A dataset artifact on local disk."""

    path: Path
    info: DatasetInfo

    @property
    def schema(self) -> str:
        return self.info.schema_

    @property
    def tokenizer_path(self) -> Path | None:
        return self.path / self.info.tokenizer if self.info.tokenizer else None

    def iter_records(self, split: str) -> Iterator[dict[str, Any]]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        if self.info.format == "parquet":
            import pyarrow.parquet as pq

            file = self.path / f"{split}.parquet"
            if not file.exists():
                return
            for batch in pq.ParquetFile(file).iter_batches():
                yield from batch.to_pylist()
            return
        file = self.path / f"{split}.jsonl"
        if not file.exists():
            return
        with file.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    def records(self, split: str) -> list[dict[str, Any]]:
        return list(self.iter_records(split))


def open_dataset(path: Path) -> PreparedDataset:
    """Open a dataset artifact directory (a kubetune dataset, or bare train/validation JSONL)."""
    if not path.is_dir():
        raise invalid_input(f"{path} is not a dataset directory")
    info_file = path / DATASET_INFO_FILE
    if info_file.is_file():
        info = DatasetInfo.from_json(info_file.read_text())
    elif (path / "train.jsonl").is_file():
        info = DatasetInfo(schema_=_guess_schema(path / "train.jsonl"))
    else:
        raise invalid_input(f"{path} holds no dataset.json and no train.jsonl")
    return PreparedDataset(path=path, info=info)


def _guess_schema(file: Path) -> Literal["text", "instruction", "chat", "preference"]:
    with file.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                if "chosen" in record or "label" in record:
                    return "preference"
                if "messages" in record:
                    return "chat"
                if "instruction" in record:
                    return "instruction"
                return "text"
    return "text"
