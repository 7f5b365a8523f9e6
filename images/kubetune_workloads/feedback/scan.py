"""Walk the feedback files beyond a cursor: classify each new line, tally, advance the cursor.

:class:`FeedbackScan` streams one file at a time and one line at a time, so memory does not
grow with the number of records. A plain file resumes by seeking to its cursor's byte offset; a
gzip file is re-read and its first lines skipped. A file now shorter than its cursor (rotated
or rewritten) is read from the start, with a warning and a count in :attr:`Tally.rotated`.
"""

from __future__ import annotations

import io
import logging
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from kubetune.api.feedback import FeedbackSource

from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.feedback.cursor import Cursor, FilePosition
from kubetune_workloads.feedback.files import FeedbackFile
from kubetune_workloads.feedback.gzipped import open_gzipped
from kubetune_workloads.feedback.lines import RawLine, complete_lines
from kubetune_workloads.feedback.records import (
    LowRating,
    Malformed,
    PreferencePair,
    PreferenceSignal,
    Usable,
    classify,
    parse_line,
    preference_signal,
)

MAX_EXAMPLES = 5
log = logging.getLogger(__name__)


@dataclass
class FileTally:
    """What one file held beyond the cursor."""

    new_lines: int = 0
    usable: int = 0
    malformed: int = 0
    low_rating: int = 0
    rotated: bool = False
    unreadable: str | None = None


@dataclass
class Tally:
    """Counts over every file; ``records`` are the non-blank new lines."""

    new_lines: int = 0
    records: int = 0
    usable: int = 0
    malformed: int = 0
    low_rating: int = 0
    preference_pairs: int = 0
    with_rejected: int = 0
    corrections: int = 0
    pairs: int = 0  # preference pairs (chosen/rejected, or correction over response)
    desirable: int = 0  # rated answers, thumbs up
    undesirable: int = 0  # rated answers, thumbs down
    preference_only: int = 0  # usable only by the preference stage (e.g. rated below minRating)
    rotated: int = 0
    vanished: int = 0
    unreadable: int = 0
    malformed_examples: list[str] = field(default_factory=list)
    files: dict[str, FileTally] = field(default_factory=dict)

    def files_with_new_lines(self) -> int:
        return sum(1 for t in self.files.values() if t.new_lines)

    def malformed_by_file(self) -> Counter[str]:
        return Counter({path: t.malformed for path, t in self.files.items() if t.malformed})


@dataclass(frozen=True)
class FoundRecord:
    """A record to write and where it came from (``relpath:line``): its supervised form, its
    preference signal (when the scan collects them), or both."""

    provenance: str
    usable: Usable | None
    preference: PreferenceSignal | None = None


class FeedbackScan:
    """Iterate :meth:`records` once; then :attr:`tally` and :attr:`cursor` are complete."""

    def __init__(
        self,
        source: FeedbackSource,
        files: list[FeedbackFile],
        since: Cursor,
        on_file: Callable[[int, int], None] | None = None,
        preference: bool = False,
    ) -> None:
        self.source = source
        self.preference = preference
        self.files = files
        self.cursor = since.copy()
        self.tally = Tally()
        self._on_file = on_file

    def records(self) -> Iterator[FoundRecord]:
        for index, file in enumerate(self.files):
            if self._on_file is not None:
                self._on_file(index, len(self.files))
            yield from self._file_records(file)
        if self._on_file is not None:
            self._on_file(len(self.files), len(self.files))

    def _file_records(self, file: FeedbackFile) -> Iterator[FoundRecord]:
        per_file = self.tally.files.setdefault(file.relpath, FileTally())
        since = self.cursor.position(file.relpath)
        if since is None:
            self.cursor.advance(file.relpath, FilePosition(0, 0))
        try:
            with file.open() as raw:
                for line in self._new_lines(file, raw, since, per_file):
                    found = self._line(file.relpath, line, per_file)
                    if found is not None:
                        yield found
        except FileNotFoundError:
            del self.tally.files[file.relpath]
            self._restore(file.relpath, since)
            self.tally.vanished += 1
            log.warning("%s vanished before it could be read; its cursor is kept", file.relpath)
        except zlib.error as exc:
            # A corrupt archive: keep what was read before the damage, report the file.
            per_file.unreadable = f"{type(exc).__name__}: {exc}"
            self.tally.unreadable += 1
            log.warning("%s is corrupt after line %s: %s", file.relpath, self._lines_of(file), exc)
        except WorkloadError:
            raise
        except OSError as exc:
            raise WorkloadError("StorageError", f"cannot read {file.relpath}: {exc}") from exc

    def _restore(self, relpath: str, since: FilePosition | None) -> None:
        if since is None:
            self.cursor.files.pop(relpath, None)
        else:
            self.cursor.advance(relpath, since)

    def _lines_of(self, file: FeedbackFile) -> int:
        position = self.cursor.position(file.relpath)
        return position.lines if position else 0

    def _new_lines(
        self, file: FeedbackFile, raw: IO[bytes], since: FilePosition | None, per_file: FileTally
    ) -> Iterator[RawLine]:
        """Lines beyond ``since``, advancing the cursor after each one."""
        if file.compressed:
            lines = self._skip_seen(file, open_gzipped(raw), since, per_file)
        elif since is None or since.lines == 0:
            lines = complete_lines(raw)
        elif _resumable(raw, since):
            lines = complete_lines(raw, since.lines, since.bytes)
        else:
            self._rotated(file.relpath, since, per_file)
            raw.seek(0)
            lines = complete_lines(raw)
        for line in lines:
            self.cursor.advance(file.relpath, FilePosition(line.number, line.end))
            yield line

    def _skip_seen(
        self,
        file: FeedbackFile,
        stream: IO[bytes],
        since: FilePosition | None,
        per_file: FileTally,
    ) -> Iterator[RawLine]:
        """A compressed file cannot seek: read its first ``since.lines`` lines and drop them."""
        lines = complete_lines(stream)
        if since is None or since.lines == 0:
            yield from lines
            return
        last: RawLine | None = None
        for last in lines:
            if last.number == since.lines:
                break
        if last is not None and last.number == since.lines and last.end == since.bytes:
            yield from lines
            return
        self._rotated(file.relpath, since, per_file)
        with file.open() as again:
            yield from complete_lines(open_gzipped(again))

    def _rotated(self, relpath: str, since: FilePosition, per_file: FileTally) -> None:
        per_file.rotated = True
        self.tally.rotated += 1
        self.cursor.advance(relpath, FilePosition(0, 0))
        log.warning(
            "%s is shorter than its cursor (%d lines, %d bytes): rotated or rewritten, "
            "reading it from the start",
            relpath,
            since.lines,
            since.bytes,
        )

    def _line(self, relpath: str, line: RawLine, per_file: FileTally) -> FoundRecord | None:
        tally = self.tally
        tally.new_lines += 1
        per_file.new_lines += 1
        if line.data is not None and not line.data.strip():
            return None  # a blank line: consumed, not a record
        tally.records += 1
        row = parse_line(line.data)
        outcome = row if isinstance(row, Malformed) else classify(row, self.source)
        where = f"{relpath}:{line.number}"
        if isinstance(outcome, Malformed):
            tally.malformed += 1
            per_file.malformed += 1
            if len(tally.malformed_examples) < MAX_EXAMPLES:
                tally.malformed_examples.append(f"{where}: {outcome.why}")
                log.warning("malformed feedback record %s: %s", where, outcome.why)
            return None
        signal = self._signal(row) if not isinstance(row, Malformed) else None
        if isinstance(outcome, LowRating):
            tally.low_rating += 1
            per_file.low_rating += 1
            if signal is None:
                return None
            tally.preference_only += 1
            return FoundRecord(where, None, signal)
        tally.usable += 1
        per_file.usable += 1
        if outcome.origin == "chosen":
            tally.preference_pairs += 1
            tally.with_rejected += int(outcome.has_rejected)
        elif outcome.origin == "correction":
            tally.corrections += 1
        return FoundRecord(where, outcome, signal)

    def _signal(self, row: dict[str, Any]) -> PreferenceSignal | None:
        """The record's pair or rated answer (counted), when the scan collects them."""
        if not self.preference:
            return None
        signal = preference_signal(row, self.source)
        if isinstance(signal, PreferencePair):
            self.tally.pairs += 1
        elif signal is not None:
            self.tally.desirable += int(signal.desirable)
            self.tally.undesirable += int(not signal.desirable)
        return signal


def _resumable(raw: IO[bytes], since: FilePosition) -> bool:
    """Whether a plain file still holds its cursor's lines: long enough, a newline at the end.

    Leaves the stream at the cursor's offset when it does.
    """
    size = raw.seek(0, io.SEEK_END)
    if size < since.bytes:
        return False
    raw.seek(since.bytes - 1)
    return raw.read(1) == b"\n"
