"""The feedback step end to end: read the since-cursor, scan the files, count or collect.

``count`` writes nothing and reports the usable records beyond the cursor. ``collect`` writes
``feedback.jsonl`` (those records in the base dataset's schema), ``cursor.json`` (advanced over
everything read), ``results.json`` and the manifest, last, into a temporary directory that
becomes ``output_uri`` only when complete; re-running it overwrites the same artifact. For a
loop with a preference stage (``spec.preference``) it also writes ``preference-pairs.jsonl``
and ``preference-unpaired.jsonl`` (schema ``preference``) and reports ``pairedRecords``,
``desirableRecords`` and ``undesirableRecords``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kubetune.api.contract import RESULT_PENDING_RECORDS
from kubetune.api.steps import (
    CURSOR_FILE,
    FEEDBACK_FILE,
    PREFERENCE_PAIRS_FILE,
    PREFERENCE_UNPAIRED_FILE,
    RESULTS_FILE,
    FeedbackStepSpec,
    InputArtifact,
    StepResult,
)

from kubetune_workloads import storage
from kubetune_workloads.errors import invalid_input
from kubetune_workloads.feedback.cursor import read_cursor
from kubetune_workloads.feedback.files import list_feedback_files
from kubetune_workloads.feedback.records import preference_records, training_record
from kubetune_workloads.feedback.scan import FeedbackScan, Tally
from kubetune_workloads.manifest import step_spec_payload, write_manifest
from kubetune_workloads.progress import ProgressReporter

MALFORMED_LIMIT = 0.5
MIN_RECORDS_FOR_LIMIT = 10
log = logging.getLogger(__name__)


def run(spec: FeedbackStepSpec) -> StepResult:
    """Count or collect the feedback records beyond ``spec.since_cursor_uri``."""
    with ProgressReporter("feedback", spec.progress_port) as reporter:
        return _run(spec, reporter)


def _run(spec: FeedbackStepSpec, reporter: ProgressReporter) -> StepResult:
    reporter.update(phase="Listing", message=spec.source.uri)
    since = read_cursor(spec.since_cursor_uri)
    files = list_feedback_files(spec.source.uri)
    log.info("%d feedback files under %s", len(files), spec.source.uri)

    def on_file(done: int, total: int) -> None:
        reporter.update(phase="Reading", step=done, total_steps=total)

    scan = FeedbackScan(spec.source, files, since, on_file, preference=spec.preference)
    if spec.mode == "count":
        for _ in scan.records():
            pass
        check_malformed(scan.tally)
        result = _result(spec, scan.tally, len(files))
    else:
        result = _collect(spec, scan, len(files))
    reporter.update(phase="Done", message=result.message)
    log.info("%s", result.message)
    return result


def _collect(spec: FeedbackStepSpec, scan: FeedbackScan, files: int) -> StepResult:
    with storage.output_dir(spec.output_uri) as out:
        _write_records(out, spec, scan)
        check_malformed(scan.tally)
        (out / CURSOR_FILE).write_text(scan.cursor.to_json())
        result = _result(spec, scan.tally, files)
        results = _results_json(spec, scan.tally, result)
        (out / RESULTS_FILE).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        inputs = [InputArtifact(uri=spec.source.uri)]
        if spec.since_cursor_uri:
            inputs.append(InputArtifact(uri=spec.since_cursor_uri))
        manifest = write_manifest(
            out,
            artifact="feedback",
            producer=spec.producer,
            spec=step_spec_payload(spec),
            inputs=inputs,
            extra={"usedRecords": _used(scan.tally), "recordSchema": spec.record_schema},
        )
    return result.model_copy(update={"content_hash": manifest.content_hash})


def _write_records(out: Path, spec: FeedbackStepSpec, scan: FeedbackScan) -> None:
    """feedback.jsonl, and with ``spec.preference`` the paired and unpaired preference files."""
    names = [FEEDBACK_FILE, *([PREFERENCE_PAIRS_FILE, PREFERENCE_UNPAIRED_FILE] * spec.preference)]
    handles = {name: (out / name).open("w", encoding="utf-8") for name in names}

    def write(name: str, record: dict[str, Any]) -> None:
        handles[name].write(json.dumps(record, ensure_ascii=False) + "\n")

    try:
        for found in scan.records():
            if found.usable is not None:
                write(
                    FEEDBACK_FILE,
                    training_record(found.usable, spec.record_schema, found.provenance),
                )
            if found.preference is not None:
                pair, unpaired = preference_records(found.preference, found.provenance)
                if pair is not None:
                    write(PREFERENCE_PAIRS_FILE, pair)
                for record in unpaired:
                    write(PREFERENCE_UNPAIRED_FILE, record)
    finally:
        for handle in handles.values():
            handle.close()


def _used(tally: Tally) -> int:
    """Records some stage trains on: supervised, or (with a preference stage) preference only."""
    return tally.usable + tally.preference_only


def check_malformed(tally: Tally) -> None:
    """Fail with InvalidInput when most records beyond the cursor are malformed."""
    if tally.records < MIN_RECORDS_FOR_LIMIT or tally.malformed <= MALFORMED_LIMIT * tally.records:
        return
    by_file = tally.malformed_by_file().most_common()
    named = ", ".join(f"{path} ({count})" for path, count in by_file[:5])
    if len(by_file) > 5:
        named += f" and {len(by_file) - 5} more files"
    example = tally.malformed_examples[0] if tally.malformed_examples else "none kept"
    raise invalid_input(
        f"{tally.malformed} of {tally.records} feedback records beyond the cursor are malformed "
        f"(more than {MALFORMED_LIMIT:.0%}) in {named}; e.g. {example}; check "
        "source.fields against the records' field names"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _message(spec: FeedbackStepSpec, tally: Tally) -> str:
    files = _plural(tally.files_with_new_lines(), "file")
    text = (
        f"{_plural(_used(tally), 'usable feedback record')} "
        f"({_plural(tally.new_lines, 'new line')}) "
        f"{'in' if spec.mode == 'count' else 'collected from'} {files}"
    )
    notes = []
    if tally.malformed:
        notes.append(f"{tally.malformed} malformed")
    if tally.low_rating:
        low = spec.source.min_rating
        why = "thumbs down" if low is None else f"rated below {low:g} or thumbs down"
        notes.append(f"{tally.low_rating} {why}")
    if tally.rotated:
        notes.append(f"{_plural(tally.rotated, 'rotated file')} read from the start")
    if tally.unreadable:
        notes.append(f"{_plural(tally.unreadable, 'corrupt file')} read up to the damage")
    return text + ("; " + ", ".join(notes) if notes else "")


def _details(tally: Tally, files: int) -> dict[str, Any]:
    return {
        "files": files,
        "filesWithNewLines": tally.files_with_new_lines(),
        "records": tally.records,
        "corrections": tally.corrections,
        "rejectedResponses": tally.with_rejected,
        "rotatedFiles": tally.rotated,
        "vanishedFiles": tally.vanished,
        "corruptFiles": tally.unreadable,
        "malformedExamples": tally.malformed_examples[:3],
    }


def _result(spec: FeedbackStepSpec, tally: Tally, files: int) -> StepResult:
    common = {"newLines": tally.new_lines, "malformed": tally.malformed}
    if spec.mode == "count":
        reason, uri = "Counted", None
        metrics = {RESULT_PENDING_RECORDS: _used(tally), **common, "lowRating": tally.low_rating}
    else:
        reason, uri = "Collected", spec.output_uri
        metrics = {
            "usedRecords": _used(tally),
            **common,
            "lowRating": tally.low_rating,
            "preferencePairs": tally.preference_pairs,
        }
    if spec.preference:
        metrics |= {
            "pairedRecords": tally.pairs,
            "desirableRecords": tally.desirable,
            "undesirableRecords": tally.undesirable,
        }
    return StepResult(
        step="feedback",
        ok=True,
        reason=reason,
        message=_message(spec, tally),
        output_uri=uri,
        metrics={k: float(v) for k, v in metrics.items()},
        details=_details(tally, files),
    )


def _results_json(spec: FeedbackStepSpec, tally: Tally, result: StepResult) -> dict[str, Any]:
    """The full results next to the artifact (no timestamps: re-runs hash the same)."""
    return {
        "step": "feedback",
        "mode": spec.mode,
        "source": spec.source.uri,
        "sinceCursor": spec.since_cursor_uri,
        "recordSchema": spec.record_schema,
        "message": result.message,
        "metrics": result.metrics,
        "details": {**(result.details or {}), "malformedExamples": tally.malformed_examples},
        "files": {
            path: {
                "newLines": t.new_lines,
                "usable": t.usable,
                "malformed": t.malformed,
                "lowRating": t.low_rating,
                "rotated": t.rotated,
                "corrupt": t.unreadable,
            }
            for path, t in sorted(tally.files.items())
        },
    }
