"""The dataprep step: ``run(spec) -> StepResult``; writes the dataset artifact atomically."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from kubetune.api.steps import DataprepStepSpec, InputArtifact, StepResult

from kubetune_workloads import storage
from kubetune_workloads.dataprep import engine
from kubetune_workloads.dataprep.decontam import prompt_checksums
from kubetune_workloads.dataprep.output import code_version, dataset_version, short_version
from kubetune_workloads.dataprep.pipeline import TOKENIZER_DIR, prepare
from kubetune_workloads.dataprep.report import build_stats, data_card
from kubetune_workloads.dataprep.sources import input_checksums
from kubetune_workloads.datasetio import DATASET_INFO_FILE, DatasetInfo
from kubetune_workloads.manifest import write_manifest
from kubetune_workloads.progress import ProgressReporter

STATS_FILE = "stats.json"
CARD_FILE = "README.md"
log = logging.getLogger(__name__)


def run(step: DataprepStepSpec) -> StepResult:
    """Prepare the dataset described by ``step`` and write it to ``step.output_uri``."""
    spec = step.spec
    started = time.monotonic()
    stage = engine.staged()
    if stage is not None and stage[0] == "map":
        return _map_stage(step, *stage[1:])
    reporter = ProgressReporter("dataprep", step.progress_port)
    try:
        with storage.output_dir(step.output_uri) as out:
            tasks, shards = (stage[2], stage[1]) if stage is not None else (None, None)
            outcome = prepare(spec, out, reporter, step.tokenizer_uri, tasks, shards)
            checksums = [c for source in spec.sources for c in input_checksums(source)]
            checksums += [c for u in spec.cleaning.decontaminate or [] for c in prompt_checksums(u)]
            version = short_version(dataset_version(out, spec, step.tokenizer_uri, checksums))
            info = DatasetInfo(
                schema_=spec.record_schema,
                records=outcome.splits,
                tokens=outcome.tokens,
                format=spec.output_format,
                tokenizer=TOKENIZER_DIR if (out / TOKENIZER_DIR).is_dir() else None,
                version=version,
            )
            (out / DATASET_INFO_FILE).write_text(info.to_json() + "\n")
            stats = build_stats(spec, outcome, version)
            (out / STATS_FILE).write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
            (out / CARD_FILE).write_text(data_card(step.producer.name, spec, stats))
            inputs = [
                InputArtifact(uri=name, content_hash=checksum) for name, checksum in checksums
            ]
            if step.tokenizer_uri:
                inputs.append(InputArtifact(uri=step.tokenizer_uri))
            manifest = write_manifest(
                out,
                artifact="dataset",
                producer=step.producer,
                spec=step.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                inputs=inputs,
                seed=spec.split.seed,
                extra={
                    "version": version,
                    "codeVersion": code_version(),
                    "durationSeconds": round(time.monotonic() - started, 3),
                },
            )
    finally:
        reporter.close()
    counts = outcome.stats.stage_counts()
    train, validation = outcome.splits.get("train", 0), outcome.splits.get("validation", 0)
    metrics = {"records": float(outcome.records), "train": float(train)}
    metrics["validation"] = float(validation)
    if outcome.tokens is not None:
        metrics["tokens"] = float(outcome.tokens)
    log.info("dataset %s: %d records (%d dropped)", version, outcome.records, sum(counts.values()))
    return StepResult(
        step="dataprep",
        ok=True,
        reason="Completed",
        message=f"{outcome.records} records ({train} train, {validation} validation) "
        f"from {outcome.read} read; version {version}",
        output_uri=step.output_uri,
        content_hash=manifest.content_hash,
        metrics=metrics,
        details={
            "version": version,
            "records": outcome.records,
            "tokens": outcome.tokens,
            "stageCounts": counts,
        },
    )


def _map_stage(step: DataprepStepSpec, folder: Path, tasks: int, rank: int) -> StepResult:
    """One map task of a staged run (one pod of the map Indexed Job): its shard and counts
    go to ``folder``; a rerun after a completed task does nothing (completion marker)."""
    engine.run_map(step.spec, folder, tasks, workers=1, ranks=(rank, 1))
    result = engine.read_result(folder, rank)
    return StepResult(
        step="dataprep",
        ok=True,
        reason="Completed",
        message=f"map task {rank} of {tasks}: {result.read} records read",
        metrics={"read": float(result.read), "malformed": float(result.malformed)},
        details={"stage": "map", "rank": rank, "tasks": tasks},
    )
