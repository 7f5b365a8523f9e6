"""Writing the prepared splits (JSONL or Parquet) and computing the dataset version.

The version is a hash of the canonical data-affecting part of the spec (local paths left out),
the checksum of every input file (sources and decontamination sets, keyed by their place in the
spec and their path relative to it), the pipeline's code version and the written data
files (and shipped tokenizer), so the same input, spec and code always give the same version and
a change to any of them gives a new one, even a change to a record the pipeline drops. Nothing
time-dependent is ever hashed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from kubetune.api.dataset import DatasetSpec

from kubetune_workloads.dataprep.inputs import InputChecksum, tokenizer_key
from kubetune_workloads.manifest import file_sha256

PARQUET_BATCH = 2048
DATA_FILES = ("train.jsonl", "validation.jsonl", "train.parquet", "validation.parquet")
# Spec fields that decide the content of the dataset (not where or how fast it runs).
DATA_FIELDS = (
    "sources",
    "schema",
    "roleMapping",
    "maxErrorRatio",
    "curation",
    "cleaning",
    "safety",
    "tokenizer",
    "split",
    "outputFormat",
)


class SplitWriter:
    """Appends records to ``train`` and ``validation`` files in the output directory."""

    def __init__(self, root: Path, fmt: str, schema: str) -> None:
        self.root = root
        self.fmt = fmt
        self.schema = schema
        self.counts = {"train": 0, "validation": 0}
        self._handles: dict[str, Any] = {}
        self._buffers: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
        self._writers: dict[str, Any] = {}

    def __enter__(self) -> SplitWriter:
        if self.fmt == "jsonl":
            for split in self.counts:
                self._handles[split] = (self.root / f"{split}.jsonl").open("w", encoding="utf-8")
        return self

    def write(self, split: str, row: dict[str, Any]) -> None:
        self.counts[split] += 1
        if self.fmt == "jsonl":
            self._handles[split].write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        buffer = self._buffers[split]
        buffer.append(row)
        if len(buffer) >= PARQUET_BATCH:
            self._flush(split)

    def _flush(self, split: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self._buffers[split]
        schema = parquet_schema(self.schema)
        table = pa.Table.from_pylist(
            [{**r, "meta": json.dumps(r.get("meta", {}), sort_keys=True)} for r in rows],
            schema=schema,
        )
        if split not in self._writers:
            self._writers[split] = pq.ParquetWriter(self.root / f"{split}.parquet", schema)
        self._writers[split].write_table(table)
        rows.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles.values():
            handle.close()
        if self.fmt == "parquet" and exc is None:
            for split in self.counts:
                if self._buffers[split] or split not in self._writers:
                    self._flush(split)
        for writer in self._writers.values():
            writer.close()


def parquet_schema(schema: str) -> Any:
    import pyarrow as pa

    meta = pa.field("meta", pa.string())
    if schema == "chat":
        message = pa.struct([("role", pa.string()), ("content", pa.string())])
        return pa.schema([pa.field("messages", pa.list_(message)), meta])
    if schema == "preference":
        message = pa.struct([("role", pa.string()), ("content", pa.string())])
        texts = [pa.field(name, pa.string()) for name in ("prompt", "chosen", "rejected")]
        unpaired = [pa.field("completion", pa.string()), pa.field("label", pa.bool_())]
        return pa.schema([*texts, pa.field("messages", pa.list_(message)), *unpaired, meta])
    if schema == "instruction":
        return pa.schema(
            [
                pa.field("instruction", pa.string()),
                pa.field("input", pa.string()),
                pa.field("output", pa.string()),
                meta,
            ]
        )
    return pa.schema([pa.field("text", pa.string()), meta])


def data_spec(spec: DatasetSpec) -> dict[str, Any]:
    """The canonical data-affecting part of a Dataset spec (camelCase JSON)."""
    full = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {k: full[k] for k in DATA_FIELDS if k in full}


# What decides the output besides the spec and the inputs: this package's code and data, and
# the libraries whose behaviour is part of a stage (their versions).
CODE_LIBRARIES = ("numpy", "ftfy", "snowballstemmer", "simplemma", "langdetect", "tokenizers")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``sha256:...`` over the dataprep code, the bundled lexicon and the stage libraries'
    versions: a change to any of them gives a new dataset version."""
    package = Path(__file__).resolve().parent
    workloads = package.parent
    files = [*sorted(package.glob("*.py")), workloads / "lexicon.py"]
    files += sorted((workloads / "data").glob("offensive*"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(workloads).as_posix()}\0{file_sha256(path)}\n".encode())
    for name in CODE_LIBRARIES:
        try:
            digest.update(f"{name}=={importlib.metadata.version(name)}\n".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{name}==none\n".encode())
    return "sha256:" + digest.hexdigest()


def version_spec(spec: DatasetSpec) -> dict[str, Any]:
    """:func:`data_spec` without where local inputs lie: each ``file://`` URI (a source, a
    decontamination set, a tokenizer model) becomes ``file://``, since the version hashes the
    content of what it names (:mod:`.inputs`) and a relative one was made absolute against the
    manifest's folder. Remote URIs stay: they name the same data from anywhere."""
    data = data_spec(spec)
    for source in data.get("sources", []):
        source["uri"] = _location_free(source["uri"])
    cleaning = data.get("cleaning") or {}
    if cleaning.get("decontaminate"):
        cleaning["decontaminate"] = [_location_free(u) for u in cleaning["decontaminate"]]
    model = (data.get("tokenizer") or {}).get("model") or {}
    if model.get("uri"):
        model["uri"] = _location_free(model["uri"])
    return data


def _location_free(uri: str) -> str:
    return "file://" if uri.startswith("file://") else uri


def dataset_version(
    root: Path,
    spec: DatasetSpec,
    tokenizer_uri: str | None,
    inputs: Sequence[tuple[str, InputChecksum]] = (),
) -> str:
    """``sha256:...`` over the normalized data spec (:func:`version_spec`), every input file
    (``inputs``: where in the spec it sits, e.g. ``sources[0]``, with its key and checksum, in
    spec order), the pipeline's code version, the tokenizer (:func:`.inputs.tokenizer_key`)
    and the data files written under ``root``."""
    digest = hashlib.sha256()
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    for path in files:
        rel = path.relative_to(root).as_posix()
        if (
            rel.split("/")[0] in ("train.jsonl", "validation.jsonl")
            or rel.endswith(".parquet")
            or rel.startswith("tokenizer/")
        ):
            digest.update(f"{rel}\0{file_sha256(path)}\n".encode())
    canonical = json.dumps(version_spec(spec), sort_keys=True, separators=(",", ":"))
    digest.update(canonical.encode())
    digest.update(tokenizer_key(tokenizer_uri).encode())
    for where, item in inputs:
        digest.update(f"input\0{where}\0{item.key}\0{item.checksum}\n".encode())
    digest.update(f"code\0{code_version()}\n".encode())
    return "sha256:" + digest.hexdigest()


def short_version(content_hash: str) -> str:
    """``v`` + the first 12 hex digits of a hash (what status.version shows)."""
    return "v" + content_hash.split(":", 1)[-1][:12]
