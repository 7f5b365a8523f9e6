"""Complete lines of an append-only file, with their numbers and end offsets.

A line is complete once its newline is written: a last line without one is still being written
and is neither yielded nor counted. Offsets are byte positions in the (decompressed) content,
so a cursor can resume a plain file by seeking. Lines longer than :data:`MAX_LINE_BYTES` are
yielded without their bytes (the caller counts them as malformed) and memory stays bounded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


MAX_LINE_BYTES = _env_int("KUBETUNE_FEEDBACK_MAX_LINE_BYTES", 8 << 20)
_SKIP_CHUNK = 1 << 20


@dataclass(frozen=True)
class RawLine:
    """Line ``number`` (1-based) ending at byte ``end``; ``data`` is None when too long."""

    number: int
    data: bytes | None
    end: int


def complete_lines(stream: IO[bytes], number: int = 0, offset: int = 0) -> Iterator[RawLine]:
    """Complete lines from the stream's position, which is line ``number``, byte ``offset``."""
    while True:
        chunk = stream.readline(MAX_LINE_BYTES + 1)
        if chunk.endswith(b"\n"):
            number += 1
            offset += len(chunk)
            yield RawLine(number, chunk, offset)
            continue
        if len(chunk) <= MAX_LINE_BYTES:
            return  # end of the stream, after an unfinished last line or none
        size = len(chunk)
        while not chunk.endswith(b"\n"):  # skip the rest of an overlong line
            chunk = stream.readline(_SKIP_CHUNK)
            if not chunk:
                return
            size += len(chunk)
        number += 1
        offset += size
        yield RawLine(number, None, offset)
