"""Read a gzip file that may still be being written: multi-member, cut short without error.

Appending to a ``.jsonl.gz`` adds gzip members; the writer's current member may be incomplete.
:func:`open_gzipped` decompresses member after member and ends quietly where the compressed
bytes end, returning what was decompressed so far (the standard ``gzip`` module raises
``EOFError`` there and loses the buffered data). Corrupt data raises :class:`zlib.error`.
"""

from __future__ import annotations

import io
import zlib
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_CHUNK = 1 << 16
_BUFFER = 1 << 20


class _GzipMembers(io.RawIOBase):
    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj(_GZIP_WBITS)
        self._ended = False

    def readable(self) -> bool:
        return True

    def _compressed(self) -> bytes:
        """The next compressed input for the current member; b"" at the end of the file."""
        if self._inflate.unconsumed_tail:
            return self._inflate.unconsumed_tail
        if not self._inflate.eof:
            return self._raw.read(_CHUNK)
        # the member is complete: what follows starts the next one (after any zero padding)
        following = self._inflate.unused_data
        self._inflate = zlib.decompressobj(_GZIP_WBITS)
        while True:
            following = following.lstrip(b"\x00")
            if following:
                return following
            following = self._raw.read(_CHUNK)
            if not following:
                return b""

    def readinto(self, buffer: Buffer, /) -> int:
        view = memoryview(buffer).cast("B")
        while not self._ended:
            compressed = self._compressed()
            if not compressed:
                self._ended = True  # complete, or a member cut short: what we have is all
                break
            data = self._inflate.decompress(compressed, len(view))
            if data:
                view[: len(data)] = data
                return len(data)
        return 0


def open_gzipped(raw: IO[bytes]) -> IO[bytes]:
    """The decompressed content of the gzip stream ``raw``, readable line by line."""
    return io.BufferedReader(_GzipMembers(raw), _BUFFER)
