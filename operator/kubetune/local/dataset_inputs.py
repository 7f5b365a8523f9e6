"""A Dataset runs again locally when the local files it reads change.

In a cluster a Dataset's run is decided by its spec (``status.runHash``); the content of its
inputs is hashed into its *version*, but a changed file on a volume starts nothing. Locally the
corpus is usually a file you edit, so before each `kubetune run` the local runtime takes a
**signature** of every local file a Dataset reads (``file://`` sources and decontamination sets,
and a ``file://`` tokenizer model: the path, size and modification time, in nanoseconds, of each
file they name; a directory is walked, hidden names skipped; a glob is expanded) and keeps it
with the resource. When it differs from the last run's, the Dataset's finished run is stale:
the store treats the change like a spec change (a new generation; the old run's Jobs are
removed, as a cluster's TTL would; ``status.runHash`` is dropped so the planner starts the new
generation's run instead of keeping the recorded one) and records an ``InputsChanged`` event.
The new run writes a new version, and the resources that depend on the Dataset run again
through the planners' dependency logic. Unchanged files (same size and time) keep the run.

Like ``make``, a file whose size or modification time changed counts as changed, so ``touch``
forces a rerun (which reads the same bytes and gives the same version); an input that is gone
changes nothing (the finished run stands until the files are back); remote inputs
(``s3://``, ``http(s)://``, ``hf://``) are not looked at. Nothing here is a planner: the
planners stay pure, this is the local API server's part.
"""

from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path
from typing import Any

from kubetune.api.contract import LABEL_KIND, LABEL_NAME
from kubetune.local.store import LocalState, StoredResource, now

DATASET_KIND = "Dataset"
GLOB_CHARS = frozenset("*?[")
INPUTS_CHANGED = "InputsChanged"


def local_input_uris(spec: dict[str, Any]) -> list[str]:
    """The ``file://`` URIs a Dataset spec reads: sources, decontamination sets, tokenizer."""
    uris = [str(s.get("uri") or "") for s in spec.get("sources") or []]
    uris += [str(u) for u in (spec.get("cleaning") or {}).get("decontaminate") or []]
    model = (spec.get("tokenizer") or {}).get("model") or {}
    uris.append(str(model.get("uri") or ""))
    return [u for u in uris if u.startswith("file://")]


def _files(path: Path) -> list[Path]:
    """The files a local input path names: itself, a directory's (hidden names skipped), or a
    glob's matches; empty when it names nothing."""
    text = str(path)
    if GLOB_CHARS & set(text):
        return [Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()]
    if path.is_dir():
        found = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
        return found
    return [path] if path.is_file() else []


def signature(uris: list[str]) -> str | None:
    """A hash of the path, size and modification time of every file the URIs name; None when
    one of them names nothing (a deleted corpus is no reason to prepare it again: the run
    would fail, and the finished one stands)."""
    digest = hashlib.sha256()
    for uri in uris:
        files = _files(Path(uri[len("file://") :]))
        if not files:
            return None
        digest.update(f"uri\0{uri}\n".encode())
        for file in files:
            try:
                stat = file.stat()
            except OSError:
                return None
            digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _has_run(stored: StoredResource) -> bool:
    """Whether the resource has a run of its current generation whose result could be stale
    (not merely waiting; a changed spec starts a new run anyway)."""
    status = stored.body.get("status") or {}
    current = status.get("observedGeneration") == stored.body["metadata"].get("generation")
    return current and bool(status.get("runId")) and status.get("phase") not in (None, "Waiting")


def restart_for_new_inputs(state: LocalState, stored: StoredResource) -> None:
    """Make the planner start a new run of ``stored``: a new generation, the old runs' Jobs
    removed with their executions, ``status.runHash`` dropped, an event saying why."""
    meta = stored.body["metadata"]
    meta["generation"] = int(meta.get("generation") or 1) + 1
    for key, child in list(state.children.items()):
        labels = child["metadata"].get("labels") or {}
        if (
            child["kind"] == "Job"
            and labels.get(LABEL_KIND) == stored.kind
            and labels.get(LABEL_NAME) == stored.name
        ):
            del state.children[key]
            state.executions.pop(child["metadata"]["name"], None)
    status = dict(stored.body.get("status") or {})
    status.pop("runHash", None)
    previous = status.get("runId")
    stored.body["status"] = status
    state.events.append(
        {
            "time": now().isoformat(),
            "object": stored.key_text,
            "type": "Normal",
            "reason": INPUTS_CHANGED,
            "message": f"local input files changed since run {previous}: "
            f"running generation {meta['generation']}",
        }
    )


def rerun_changed_inputs(state: LocalState) -> list[str]:
    """Before a run: restart each Dataset whose local input files changed since the last run
    (:func:`restart_for_new_inputs`) and record every Dataset's signature; the names of the
    restarted ones."""
    restarted = []
    for stored in state.resources.values():
        if stored.kind != DATASET_KIND:
            continue
        uris = local_input_uris(stored.body.get("spec") or {})
        current = signature(uris) if uris else None
        if current is None:
            continue  # nothing local to look at, or inputs missing: keep what was seen
        seen, stored.inputs_signature = stored.inputs_signature, current
        if seen is not None and seen != current and _has_run(stored):
            restart_for_new_inputs(state, stored)
            restarted.append(stored.key_text)
    return restarted
