"""Readers for the source formats: jsonl, json, csv, parquet and plain text.

Each reader turns one opened file into raw items: a ``dict`` per record, or a
:class:`Malformed` (reason + location) for what cannot be read. Readers never raise on bad
content; they only raise :class:`WorkloadError` when a whole file is refused (too large).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal

from kubetune_workloads.dataprep.streams import MAX_LINE_CHARS, BadLine, read_lines
from kubetune_workloads.errors import WorkloadError

MAX_JSON_FILE_CHARS = 256 << 20


@dataclass(frozen=True)
class Malformed:
    """A record that could not be read or mapped, with where and why."""

    reason: str
    where: str
    detail: str = ""

    def example(self) -> str:
        return f"{self.where}: {self.detail or self.reason}"


@dataclass(frozen=True)
class Repaired:
    """Marker: the next record's bytes were not valid UTF-8 and were decoded as cp1252."""

    where: str


RawItem = dict[str, Any] | Malformed | Repaired


def _bad(line: BadLine, name: str) -> Malformed:
    detail = (
        f"line longer than {MAX_LINE_CHARS} characters"
        if line.reason == "too_long"
        else "bytes that are neither UTF-8 nor text"
    )
    return Malformed(line.reason, f"{name}:{line.line_no}", detail)


def read_jsonl(stream: IO[bytes], name: str) -> Iterator[RawItem]:
    for line in read_lines(stream):
        if isinstance(line, BadLine):
            yield _bad(line, name)
            continue
        if not line.text.strip():
            continue
        if line.repaired:
            yield Repaired(f"{name}:{line.line_no}")
        try:
            value = json.loads(line.text)
        except ValueError as exc:
            yield Malformed("invalid_json", f"{name}:{line.line_no}", f"invalid JSON: {exc}")
            continue
        if isinstance(value, dict):
            yield value
        else:
            kind = type(value).__name__
            yield Malformed("not_an_object", f"{name}:{line.line_no}", f"a JSON {kind}")


def read_json(stream: IO[bytes], name: str) -> Iterator[RawItem]:
    """A JSON array of objects, or an object holding one such array (e.g. ``{"data": [...]}``)."""
    raw = stream.read(MAX_JSON_FILE_CHARS + 1)
    if len(raw) > MAX_JSON_FILE_CHARS:
        raise WorkloadError(
            "InvalidInput",
            f"{name}: JSON file larger than {MAX_JSON_FILE_CHARS} bytes; use format jsonl",
        )
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        yield Malformed("invalid_json", name, f"invalid JSON: {exc}")
        return
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if len(lists) == 1 else [value]
    if not isinstance(value, list):
        yield Malformed("not_an_object", name, f"a JSON {type(value).__name__}")
        return
    for i, item in enumerate(value):
        if isinstance(item, dict):
            yield item
        else:
            yield Malformed("not_an_object", f"{name}[{i}]", f"a JSON {type(item).__name__}")


def read_csv(stream: IO[bytes], name: str) -> Iterator[RawItem]:
    bad: list[Malformed] = []
    repaired: list[Repaired] = []

    def lines() -> Iterator[str]:
        for line in read_lines(stream):
            if isinstance(line, BadLine):
                bad.append(_bad(line, name))
                continue
            if line.repaired:
                repaired.append(Repaired(f"{name}:{line.line_no}"))
            yield line.text + "\n"

    csv.field_size_limit(MAX_LINE_CHARS)
    delimiter = "\t" if name.lower().removesuffix(".gz").endswith(".tsv") else ","
    reader = csv.reader(lines(), delimiter=delimiter)
    header: list[str] | None = None
    while True:
        error: Malformed | None = None
        try:
            row: list[str] | None = next(reader)
        except StopIteration:
            row = None
        except csv.Error as exc:
            row = []
            error = Malformed("invalid_csv", f"{name}:{reader.line_num}", f"invalid CSV: {exc}")
        yield from bad
        yield from repaired
        bad.clear()
        repaired.clear()
        if row is None:
            break
        if error is not None:
            yield error
            continue
        if header is None:
            header = [h.strip() for h in row]
            continue
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield Malformed(
                "csv_columns",
                f"{name}:{reader.line_num}",
                f"{len(row)} columns where the header has {len(header)}",
            )
            continue
        yield dict(zip(header, row, strict=True))


def read_parquet(stream: IO[bytes], name: str) -> Iterator[RawItem]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
    except Exception as exc:
        yield Malformed("invalid_parquet", name, f"not a Parquet file: {exc}")
        return
    for batch in parquet.iter_batches(batch_size=1024):
        yield from batch.to_pylist()


def read_text(
    stream: IO[bytes], name: str, split: Literal["file", "blankLine", "line"]
) -> Iterator[RawItem]:
    """Documents of a text file: the whole file, each blank-line block, or each line."""
    block: list[str] = []
    size = 0
    start = 1
    overflow = False

    def flush() -> Iterator[RawItem]:
        text = "\n".join(block).strip()
        if overflow:
            yield Malformed("too_long", f"{name}:{start}", "document over the size limit")
        elif text:
            yield {"text": text}

    for line in read_lines(stream):
        if isinstance(line, BadLine):
            if split == "file":
                yield _bad(line, name)
                return
            yield _bad(line, name)
            continue
        if line.repaired:
            yield Repaired(f"{name}:{line.line_no}")
        if split == "line":
            if line.text.strip():
                yield {"text": line.text.strip()}
            continue
        if split == "blankLine" and not line.text.strip():
            yield from flush()
            block, size, overflow, start = [], 0, False, line.line_no + 1
            continue
        size += len(line.text) + 1
        if size > MAX_LINE_CHARS:
            overflow = True
            block = []
        elif not overflow:
            block.append(line.text)
    yield from flush()
