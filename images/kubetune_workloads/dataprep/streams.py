"""Bounded byte streams and text lines: decompression guards, encodings, overlong lines.

Everything a source reads goes through here, so one malicious or broken file cannot exhaust
memory: lines longer than :data:`MAX_LINE_CHARS` are skipped (and counted), compressed files
that inflate beyond :data:`MAX_INFLATION_RATIO` x their size are refused as compression bombs,
and undecodable bytes are repaired (cp1252 fallback, counted) or the line is reported as
unreadable.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from kubetune_workloads.errors import WorkloadError

if TYPE_CHECKING:
    from typing_extensions import Buffer


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


MAX_LINE_CHARS = _env_int("KUBETUNE_DATAPREP_MAX_LINE_CHARS", 8_000_000)
MAX_INFLATION_RATIO = _env_int("KUBETUNE_DATAPREP_MAX_INFLATION_RATIO", 100)
INFLATION_GRACE_BYTES = _env_int("KUBETUNE_DATAPREP_INFLATION_GRACE_BYTES", 16 << 20)
MAX_DECOMPRESSED_BYTES = _env_int("KUBETUNE_DATAPREP_MAX_DECOMPRESSED_BYTES", 64 << 30)
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz")
_CHUNK = 1 << 20
_SKIP_CHARS = 1 << 20


@dataclass(frozen=True)
class BadLine:
    """A line that could not be read: ``too_long`` or ``unreadable_encoding``."""

    reason: str
    line_no: int


@dataclass(frozen=True)
class Line:
    """A decoded line (without its newline) and whether its encoding was repaired."""

    text: str
    line_no: int
    repaired: bool = False


class _CountingReader(io.RawIOBase):
    """Counts the bytes read from the underlying (compressed) stream."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.raw.read(len(view))
        n = len(data)
        view[:n] = data
        self.count += n
        return n


class _InflationGuard(io.RawIOBase):
    """Refuses decompressed output that is out of proportion to the compressed input."""

    def __init__(self, inner: io.BufferedIOBase, counter: _CountingReader, name: str) -> None:
        self.inner = inner
        self.counter = counter
        self.name = name
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.inner.read(len(view))
        n = len(data)
        view[:n] = data
        self.count += n
        ratio_exceeded = (
            self.count > INFLATION_GRACE_BYTES
            and self.count > MAX_INFLATION_RATIO * max(self.counter.count, 1)
        )
        if ratio_exceeded or self.count > MAX_DECOMPRESSED_BYTES:
            raise WorkloadError(
                "InvalidInput",
                f"{self.name}: decompresses to more than {MAX_INFLATION_RATIO}x its size "
                f"({self.count} bytes out of {self.counter.count}); refusing a possible "
                "compression bomb",
            )
        return n


def decompressed(raw: IO[bytes], name: str) -> IO[bytes]:
    """``raw`` itself, or a guarded decompressing reader when ``name`` ends in .gz/.bz2/.xz."""
    lower = name.lower()
    if not lower.endswith(COMPRESSION_SUFFIXES):
        return raw
    counter = _CountingReader(raw)
    source = io.BufferedReader(counter, _CHUNK)
    inner: io.BufferedIOBase
    if lower.endswith(".gz"):
        inner = gzip.GzipFile(fileobj=source)
    elif lower.endswith(".bz2"):
        inner = bz2.BZ2File(source)  # takes the file object as its first argument
    else:
        inner = lzma.LZMAFile(source)  # noqa: SIM115 - lives as long as the reader returned
    return io.BufferedReader(_InflationGuard(inner, counter, name), _CHUNK)


def strip_compression(name: str) -> str:
    for suffix in COMPRESSION_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _detect_encoding(stream: IO[bytes]) -> tuple[str, IO[bytes]]:
    # IO[bytes] does not declare readinto, which every stream read here has (files, fsspec
    # files, the readers above); typeshed's BufferedReader requires it.
    buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream)  # type: ignore[type-var]
    head = buffered.peek(4)[:4]
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", buffered
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", buffered
    return "utf-8", buffered


def _repair(text: str) -> str | None:
    """A line with undecodable bytes (surrogate-escaped) as cp1252, or None when binary."""
    raw = text.encode("utf-8", "surrogateescape")
    try:
        fixed = raw.decode("cp1252")
    except UnicodeDecodeError:
        fixed = raw.decode("latin-1")
    return None if _looks_binary(fixed) else fixed


def _looks_binary(text: str) -> bool:
    if not text:
        return False
    controls = sum(
        1 for c in text if c not in "\t\r\n\f" and unicodedata.category(c) in ("Cc", "Co", "Cs")
    )
    return controls / len(text) > 0.05


def read_lines(stream: IO[bytes], max_chars: int | None = None) -> Iterator[Line | BadLine]:
    """Decoded lines of a byte stream, each bounded to ``max_chars`` (default MAX_LINE_CHARS)."""
    limit = max_chars or MAX_LINE_CHARS
    encoding, buffered = _detect_encoding(stream)
    text = io.TextIOWrapper(buffered, encoding=encoding, errors="surrogateescape", newline=None)
    line_no = 0
    while True:
        try:
            line = text.readline(limit + 1)
        except UnicodeError:  # e.g. a truncated UTF-16 file: the rest cannot be decoded
            yield BadLine("unreadable_encoding", line_no + 1)
            return
        if not line:
            return
        line_no += 1
        if len(line) > limit and not line.endswith("\n"):
            while line and not line.endswith("\n"):  # skip the rest, a chunk at a time
                line = text.readline(_SKIP_CHARS)
            yield BadLine("too_long", line_no)
            continue
        line = line.rstrip("\r\n")
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            fixed = _repair(line)
            yield (
                BadLine("unreadable_encoding", line_no)
                if fixed is None
                else Line(fixed, line_no, repaired=True)
            )
            continue
        if "\x00" in line and _looks_binary(line):
            yield BadLine("unreadable_encoding", line_no)
            continue
        yield Line(line, line_no)
