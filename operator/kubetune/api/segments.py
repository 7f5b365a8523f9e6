"""The feedback store's committed-length markers, which the collector writes and the loop reads.

The collector appends to a segment (``collector/DAY/NAME.jsonl``) and acknowledges its records
only once they are flushed to disk. Lines in the file beyond that point exist in the page cache
and would vanish on a power loss, so a reader must not consume them: beside each segment the
collector keeps ``collector/DAY/.NAME.jsonl.committed``, the length of the segment's durable
prefix, rewritten in place after every flush. It is written before the segment receives any
byte, so a collector segment is never seen without its marker. A reader of a file that has a
marker reads only up to the committed length; a file without one (written by hand, by another
tool or by a collector before 0.3) is read whole.

The marker is one fixed-size line, ``LENGTH CRC\\n`` (20 decimal digits, a space, the CRC-32 of
the digits in 8 hex digits): a reader that meets a half-rewritten marker sees a bad CRC and
reads it again, and never a wrong length.
"""

from __future__ import annotations

import zlib
from pathlib import PurePosixPath
from typing import Final

MARKER_SUFFIX: Final = ".committed"
MARKER_BYTES: Final = 30


def marker_name(segment_name: str) -> str:
    """The marker's file name beside the segment ``segment_name`` (a hidden file)."""
    return f".{PurePosixPath(segment_name).name}{MARKER_SUFFIX}"


def encode_marker(committed: int) -> bytes:
    digits = b"%020d" % committed
    return digits + b" %08x\n" % zlib.crc32(digits)


def decode_marker(data: bytes) -> int | None:
    """The committed length a marker holds; None when it is not a whole, intact marker."""
    if len(data) != MARKER_BYTES or data[20:21] != b" " or data[-1:] != b"\n":
        return None
    digits = data[:20]
    if not digits.isdigit() or data[21:29] != b"%08x" % zlib.crc32(digits):
        return None
    return int(digits)
