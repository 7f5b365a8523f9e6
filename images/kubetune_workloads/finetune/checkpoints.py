"""Checkpoints every N steps, keep-last-K, and automatic resume.

A checkpoint is ``<root>/checkpoint-N/`` (the transformers naming). It holds the trainable
weights (``trainable.safetensors``: the adapter for LoRA/QLoRA, every weight for full
fine-tuning), ``trainer.pt`` (optimizer, scheduler, loss scaler, RNG), ``train_state.json``
(step, data position, early-stopping state) and ``metrics.jsonl`` so far. Its manifest is
written **last**: a directory without one (a pod killed mid-write) is not a checkpoint and is
ignored. The manifest's spec hash ties it to the run's spec and inputs, so a changed spec never
resumes from a stale checkpoint.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from kubetune.api.steps import FinetuneStepSpec

from kubetune_workloads import storage
from kubetune_workloads.manifest import read_manifest, spec_hash, write_manifest

log = logging.getLogger(__name__)
STEP_DIR = re.compile(r"^checkpoint-(\d+)$")
WEIGHTS_FILE = "trainable.safetensors"
TRAINER_FILE = "trainer.pt"
STATE_FILE = "train_state.json"
METRICS_FILE = "metrics.jsonl"


@dataclass
class Checkpoint:
    """What a resumed run restores."""

    step: int
    path: Path
    weights: dict[str, torch.Tensor]
    trainer: dict[str, Any]
    state: dict[str, Any]
    metrics_lines: list[str]


def checkpoint_root(step: FinetuneStepSpec) -> Path:
    """``checkpointUri`` when set, else ``OUTPUT/checkpoints``; a local cache for S3 outputs."""
    uri = step.checkpoint_uri or step.output_uri.rstrip("/") + "/checkpoints"
    local = storage.local_path(uri)
    if local is not None:
        return local
    digest = spec_hash(uri).split(":")[1][:16]
    log.warning("checkpoints for %s are kept in the local cache (resume on this node only)", uri)
    return storage.cache_root() / "checkpoints" / digest


def resume_key(step: FinetuneStepSpec) -> dict[str, Any]:
    """What must be unchanged for a checkpoint to be resumable (spec and inputs)."""
    return {
        "spec": step.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "dataset": step.dataset.model_dump(mode="json"),
        "model": step.model.model_dump(mode="json") if step.model else None,
    }


def complete_checkpoints(root: Path, key: dict[str, Any] | None = None) -> list[tuple[int, Path]]:
    """(step, path) of complete checkpoints, oldest first; matching ``key`` when given."""
    if not root.is_dir():
        return []
    wanted = spec_hash(key) if key is not None else None
    found = []
    for path in root.iterdir():
        match = STEP_DIR.match(path.name)
        if not match or not path.is_dir():
            continue
        manifest = read_manifest(path)
        if manifest is None:
            log.info("ignoring incomplete checkpoint %s (no manifest)", path)
            continue
        if wanted is not None and manifest.spec_hash != wanted:
            log.info("ignoring checkpoint %s of a different spec", path)
            continue
        found.append((int(match.group(1)), path))
    return sorted(found)


def load_latest(root: Path, key: dict[str, Any]) -> Checkpoint | None:
    """The latest complete checkpoint for this spec, or None."""
    from safetensors.torch import load_file

    checkpoints = complete_checkpoints(root, key)
    if not checkpoints:
        return None
    step, path = checkpoints[-1]
    metrics = path / METRICS_FILE
    return Checkpoint(
        step=step,
        path=path,
        weights=load_file(str(path / WEIGHTS_FILE)),
        trainer=torch.load(path / TRAINER_FILE, map_location="cpu", weights_only=True),
        state=json.loads((path / STATE_FILE).read_text()),
        metrics_lines=metrics.read_text().splitlines() if metrics.is_file() else [],
    )


def save(
    root: Path,
    step_number: int,
    *,
    weights: dict[str, torch.Tensor],
    trainer: dict[str, Any],
    state: dict[str, Any],
    metrics_file: Path | None,
    step: FinetuneStepSpec,
    keep_last: int,
) -> Path:
    """Write ``checkpoint-N/`` (manifest last), then prune to the newest ``keep_last``."""
    from safetensors.torch import save_file

    path = root / f"checkpoint-{step_number}"
    if path.exists():  # a half-written leftover of an earlier attempt
        shutil.rmtree(path)
    path.mkdir(parents=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(path / WEIGHTS_FILE)
    )
    torch.save(trainer, path / TRAINER_FILE)
    (path / STATE_FILE).write_text(json.dumps(state, indent=2))
    if metrics_file is not None and metrics_file.is_file():
        shutil.copyfile(metrics_file, path / METRICS_FILE)
    write_manifest(
        path,
        artifact="model",
        producer=step.producer,
        spec=resume_key(step),
        seed=step.spec.hyperparameters.seed,
        extra={"checkpoint": True, "step": step_number},
    )
    prune(root, keep_last, newest=step_number)
    return path


def prune(root: Path, keep_last: int, newest: int) -> None:
    """Remove all but the newest ``keep_last`` complete checkpoints, and stale partial ones."""
    complete = complete_checkpoints(root)
    for _, path in complete[:-keep_last]:
        shutil.rmtree(path, ignore_errors=True)
    kept = {p for _, p in complete[-keep_last:]}
    for path in root.iterdir():
        match = STEP_DIR.match(path.name)
        if match and path not in kept and int(match.group(1)) < newest:
            shutil.rmtree(path, ignore_errors=True)
