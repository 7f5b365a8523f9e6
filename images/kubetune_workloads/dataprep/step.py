"""The dataprep step: ``run(spec) -> StepResult``; writes the dataset artifact atomically."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from kubetune.api.dataset import DatasetSpec
from kubetune.api.steps import DataprepStepSpec, InputArtifact, StepResult

from kubetune_workloads import storage
from kubetune_workloads.dataprep import engine
from kubetune_workloads.dataprep.decontam import prompt_checksums
from kubetune_workloads.dataprep.inputs import InputChecksum
from kubetune_workloads.dataprep.output import code_version, dataset_version, short_version
from kubetune_workloads.dataprep.pipeline import TOKENIZER_DIR, Outcome, prepare
from kubetune_workloads.dataprep.report import build_stats, data_card
from kubetune_workloads.dataprep.shards import ShardFolder
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
    if stage is not None and stage.stage == "map":
        return _map_stage(step, stage)
    shards = ShardFolder(stage.shards) if stage is not None else None
    if shards is not None and stage is not None:
        shards.fetch_done(range(stage.tasks))  # the reduce runs any task still missing
    reporter = ProgressReporter("dataprep", step.progress_port)
    try:
        with storage.output_dir(step.output_uri) as out:
            tasks = stage.tasks if stage is not None else None
            folder = shards.local if shards is not None else None
            outcome = prepare(spec, out, reporter, step.tokenizer_uri, tasks, folder)
            version, content_hash = _write_artifact(step, out, outcome, started)
    finally:
        reporter.close()
    if shards is not None:
        shards.remove()  # the artifact is complete: the map shards are no longer needed
    return _result(step, outcome, version, content_hash)


def _write_artifact(
    step: DataprepStepSpec, out: Path, outcome: Outcome, started: float
) -> tuple[str, str]:
    """dataset.json, stats, data card and manifest (last) beside the data; (version, hash)."""
    spec = step.spec
    checksums = _input_checksums(spec)
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
    inputs = [InputArtifact(uri=c.uri, content_hash=c.checksum) for _, c in checksums]
    if step.tokenizer_uri:
        inputs.append(InputArtifact(uri=step.tokenizer_uri))
    manifest = write_manifest(
        out,
        artifact="dataset",
        producer=step.producer,
        # How many pods ran it (parallelism) does not change the artifact.
        spec=spec.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude={"parallelism"}
        ),
        inputs=inputs,
        seed=spec.split.seed,
        extra={
            "version": version,
            "codeVersion": code_version(),
            "durationSeconds": round(time.monotonic() - started, 3),
        },
    )
    return version, manifest.content_hash


def _input_checksums(spec: DatasetSpec) -> list[tuple[str, InputChecksum]]:
    """Every input file's checksum with its place in the spec (``sources[0]``,
    ``decontaminate[0]``), in spec order."""
    checksums = [
        (f"sources[{i}]", c)
        for i, source in enumerate(spec.sources)
        for c in input_checksums(source)
    ]
    for j, uri in enumerate(spec.cleaning.decontaminate or []):
        checksums += [(f"decontaminate[{j}]", c) for c in prompt_checksums(uri)]
    return checksums


def _result(
    step: DataprepStepSpec, outcome: Outcome, version: str, content_hash: str
) -> StepResult:
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
        content_hash=content_hash,
        metrics=metrics,
        details={
            "version": version,
            "records": outcome.records,
            "tokens": outcome.tokens,
            "stageCounts": counts,
        },
    )


def _map_stage(step: DataprepStepSpec, stage: engine.Staged) -> StepResult:
    """The map tasks of one pod of the map Indexed Job (or, locally, all of them in as many
    processes): shards and counts go to the run's shard folder; a task already complete there
    (its completion marker) is not run again, so a rerun pod redoes only its own task."""
    shards = ShardFolder(stage.shards)
    ranks = range(stage.first, stage.first + stage.count)
    done = shards.fetch_done(ranks)
    engine.run_map(
        step.spec, shards.local, stage.tasks, workers=stage.count, ranks=(stage.first, stage.count)
    )
    for rank in ranks:
        if rank not in done:
            shards.publish(rank)
    results = [engine.read_result(shards.local, rank) for rank in ranks]
    read = sum(r.read for r in results)
    which = f"task {stage.first}" if stage.count == 1 else f"tasks {ranks[0]}-{ranks[-1]}"
    return StepResult(
        step="dataprep",
        ok=True,
        reason="Completed",
        message=f"map {which} of {stage.tasks}: {read} records read",
        metrics={"read": float(read), "malformed": float(sum(r.malformed for r in results))},
        details=(
            {"stage": "map", "rank": stage.first, "tasks": stage.tasks}
            if stage.count == 1
            else {"stage": "map", "ranks": list(ranks), "tasks": stage.tasks}
        ),
    )
