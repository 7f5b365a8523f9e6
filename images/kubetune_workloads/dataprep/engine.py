"""Running the map stage of data preparation as datatrove tasks.

The per-record stages (:func:`.pipeline.map_task`) run as a datatrove pipeline step: datatrove's
task model gives each task a ``rank`` of ``world_size``, its :class:`LocalPipelineExecutor`
runs the tasks in local processes, and its completion markers (``logs/completions/RANK``) make
a rerun skip the tasks that finished, so a task killed mid-stage reruns alone. A task owns
chunks of input items round robin (:func:`.pipeline.owner`) and writes its survivors, in input
order, to ``shard-RANK.pkl`` and its counts to ``result-RANK.pkl`` (written last, atomically).
The reduce (:func:`read_mapped`) merges the shards back into input order, so the output and the
version are the same for any number of tasks. A shard is a sequence of length-prefixed pickled
frames, flushed one at a time, so the reduce follows the shards while the tasks still write
them (:func:`streamed_map`): the order-dependent stages run beside the map instead of after it.

The same step maps onto a Kubernetes Indexed Job: pod ``JOB_COMPLETION_INDEX`` runs
:func:`run_map` with ``rank`` = its index over a folder in the artifact store (a ``file://``
or ``pvc://`` URI beside the output, chosen by the operator; or ``s3://``: the task's files are
uploaded after it completes, its completion marker last). ``kubetune run`` runs that Indexed
Job as one process standing for all its indexes (``KUBETUNE_LOCAL_COMPLETIONS``): datatrove's
local executor then runs the tasks in that many worker processes.
"""

from __future__ import annotations

import heapq
import json
import os
import pickle
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from kubetune.api.contract import (
    COMPLETION_INDEX_ENV,
    DATAPREP_SHARDS_ENV,
    DATAPREP_STAGE_ENV,
    DATAPREP_TASKS_ENV,
    LOCAL_COMPLETIONS_ENV,
)
from kubetune.api.dataset import DatasetSpec

from kubetune_workloads import storage
from kubetune_workloads.errors import WorkloadError

if TYPE_CHECKING:
    from kubetune_workloads.dataprep.filters import Mapped
    from kubetune_workloads.dataprep.pipeline import TaskResult

TASKS_ENV = DATAPREP_TASKS_ENV
# Staged execution (one pod per map task, then a reduce), e.g. as a Kubernetes Indexed Job:
# STAGE=map runs the task JOB_COMPLETION_INDEX of TASKS into SHARDS (a directory every pod
# mounts, such as a PVC); STAGE=reduce merges SHARDS (running any task still missing) and
# writes the versioned artifact. Without STAGE the step runs both, in local processes.
STAGE_ENV = DATAPREP_STAGE_ENV
SHARDS_ENV = DATAPREP_SHARDS_ENV
RANK_ENV = COMPLETION_INDEX_ENV
# Set by `kubetune run` on the one local process standing for every index of an Indexed Job.
# CPU seconds of each map task of the last run in this process (benchmarks read it).
LAST_TASK_CPU: list[float] = []
# Wall seconds of the phases of the last run in this process (benchmarks print them).
LAST_PHASE_SECONDS: dict[str, float] = {}
# Below this much local input, one process is faster than starting tasks.
MIN_BYTES_PER_TASK = 4 << 20
# A shard frame: its length (8 bytes, little endian), then one pickled batch of columns.
_FRAME = struct.Struct("<Q")
# How long a reduce following a shard sleeps when its task has not written the next frame yet
# (doubling from the first to the last while it waits: polling costs the tasks CPU).
_FOLLOW_POLL_SECONDS = (0.001, 0.032)


@dataclass(frozen=True)
class Staged:
    """One stage of a staged run: which, over which shards, and this process' task indexes."""

    stage: str
    shards: str  # a folder, or a file://, pvc:// or s3:// URI
    tasks: int
    first: int = 0  # the first task index this process runs (map)
    count: int = 1  # how many (all of them for a local stand-in of the Indexed Job)


def staged() -> Staged | None:
    """The stage this process runs when the step runs one stage of a staged run."""
    stage = os.environ.get(STAGE_ENV)
    if not stage:
        return None
    if stage not in ("map", "reduce"):
        raise WorkloadError("InvalidInput", f"{STAGE_ENV} must be map or reduce, got {stage!r}")
    shards = os.environ.get(SHARDS_ENV)
    tasks_text = os.environ.get(TASKS_ENV)
    if not shards or not tasks_text:
        raise WorkloadError(
            "InvalidInput", f"{STAGE_ENV}={stage} needs {SHARDS_ENV} and {TASKS_ENV}"
        )
    tasks = _count(TASKS_ENV, tasks_text)
    local = os.environ.get(LOCAL_COMPLETIONS_ENV)
    if stage == "map" and local and RANK_ENV not in os.environ:
        return Staged(stage, shards, tasks, 0, min(_count(LOCAL_COMPLETIONS_ENV, local), tasks))
    rank = _count(RANK_ENV, os.environ.get(RANK_ENV, "0"), minimum=0)
    if rank >= tasks:
        raise WorkloadError("InvalidInput", f"{RANK_ENV}={rank} is not below {TASKS_ENV}={tasks}")
    return Staged(stage, shards, tasks, rank, 1)


def _count(name: str, text: str, minimum: int = 1) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise WorkloadError("InvalidInput", f"{name} must be an integer >= {minimum}, got {text!r}")
    return value


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_tasks(spec: DatasetSpec) -> int:
    """``KUBETUNE_DATAPREP_TASKS``, else one task per usable CPU when the local input is large
    enough to repay starting them (4 MiB per task). Remote sources (every task reads the whole
    input) run in one task unless configured."""
    configured = os.environ.get(TASKS_ENV)
    if configured:
        try:
            return max(1, int(configured))
        except ValueError as exc:
            raise WorkloadError("InvalidInput", f"{TASKS_ENV}={configured!r}") from exc
    cpus = usable_cpus()
    if cpus <= 1:
        return 1
    size = 0
    for source in spec.sources:
        path = storage.local_path(source.uri)
        if path is None:
            return 1
        if path.is_file():
            size += path.stat().st_size
        elif path.is_dir():
            size += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        else:
            return 1  # a glob or a missing path: let the reader report it
    return max(1, min(cpus, size // MIN_BYTES_PER_TASK))


class MapStep:
    """A datatrove pipeline step (``step(data, rank, world_size)``) running one map task."""

    name = "kubetune dataprep map"
    type = "kubetune"

    def __init__(self, spec: DatasetSpec, folder: str) -> None:
        self.spec = spec
        self.folder = folder

    def __call__(self, data: Any, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        from kubetune_workloads.dataprep.pipeline import map_task

        folder = Path(self.folder)
        shard = folder / f"shard-{rank:05d}.pkl"
        with shard.open("wb") as handle:

            def sink(batch: list[tuple[int, Mapped]]) -> None:
                if batch:
                    frame = pickle.dumps(_columns(batch), protocol=pickle.HIGHEST_PROTOCOL)
                    handle.write(_FRAME.pack(len(frame)) + frame)
                    handle.flush()  # a reduce following this shard may read it now

            started = time.process_time()
            try:
                result = map_task(self.spec, rank, world_size, sink)
            except WorkloadError as exc:
                # Reported to the parent through a file (the exception does not pickle).
                error = {"reason": exc.reason, "message": exc.message}
                (folder / f"error-{rank:05d}.json").write_text(json.dumps(error))
                raise RuntimeError(str(exc)) from None
            result.cpu_seconds = time.process_time() - started
        tmp = folder / f".result-{rank:05d}.pkl"
        tmp.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(folder / f"result-{rank:05d}.pkl")
        return iter(())


def run_map(
    spec: DatasetSpec,
    folder: Path,
    tasks: int,
    workers: int | None = None,
    ranks: tuple[int, int] | None = None,
) -> None:
    """Run the map tasks (all, or ``ranks`` = (first, count) of them: one pod's share) with
    datatrove's local executor; completed tasks (completion markers) are skipped."""
    from datatrove.executor.local import LocalPipelineExecutor
    from loguru import logger

    folder.mkdir(parents=True, exist_ok=True)
    first, count = ranks if ranks is not None else (0, tasks)
    _forget_incomplete(folder, range(first, first + count))
    logger.remove()  # datatrove logs through loguru: keep the step's output to our own log
    executor = LocalPipelineExecutor(
        pipeline=[MapStep(spec, str(folder))],
        tasks=tasks,
        workers=min(workers or usable_cpus(), count),
        logging_dir=str(folder / "logs"),
        skip_completed=True,
        start_method="fork",
        local_tasks=count,
        local_rank_offset=first,
    )
    try:
        executor.run()
    except Exception:
        errors = sorted(folder.glob("error-*.json"))
        if errors:
            error = json.loads(errors[0].read_text())
            raise WorkloadError(error["reason"], error["message"]) from None
        raise


def _forget_incomplete(folder: Path, ranks: range) -> None:
    """Delete what an unfinished earlier attempt of these tasks left (no completion marker):
    they run again, and a reduce following their shards must only see the new attempt."""
    for rank in ranks:
        if not (folder / "logs" / "completions" / f"{rank:05d}").is_file():
            (folder / f"shard-{rank:05d}.pkl").unlink(missing_ok=True)
            (folder / f"result-{rank:05d}.pkl").unlink(missing_ok=True)


class _MapThread:
    """:func:`run_map` in a background thread (its tasks are processes); keeps its error."""

    def __init__(self, spec: DatasetSpec, folder: Path, tasks: int) -> None:
        self.error: BaseException | None = None
        folder.mkdir(parents=True, exist_ok=True)
        _forget_incomplete(folder, range(tasks))  # before any reader looks at the folder
        self._thread = threading.Thread(
            target=self._run, args=(spec, folder, tasks), name="dataprep-map", daemon=True
        )
        self._thread.start()

    def _run(self, spec: DatasetSpec, folder: Path, tasks: int) -> None:
        try:
            run_map(spec, folder, tasks)
        except BaseException as exc:  # re-raised in the reducing thread
            self.error = exc

    def failed(self, rank: int) -> BaseException | None:
        """Why task ``rank`` will never complete (None while the map is still running)."""
        if self._thread.is_alive():
            return None
        return self.error or WorkloadError("Failed", f"map task {rank} did not complete")

    def join(self) -> None:
        self._thread.join()


@contextmanager
def streamed_map(spec: DatasetSpec, folder: Path, tasks: int) -> Iterator[Iterator[Mapped]]:
    """Run the map tasks still missing in ``folder`` (in the background) and yield the mapped
    records in input order as the tasks write them; on exit, wait for the map (the executor's
    own teardown included) and raise its error, if any. Exit once the reduce no longer needs
    the map, and before ``folder`` goes away: the executor writes its logs there."""
    background = _MapThread(spec, folder, tasks)
    try:
        yield read_mapped(folder, tasks, background.failed)
    finally:
        background.join()
    if background.error is not None:
        raise background.error


def detect_languages_async(texts: list[str]) -> Any:
    """A future of the languages of ``texts``, detected in a forked helper process (on the
    core the serial reduce leaves idle; langdetect takes about a second to load and run)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from kubetune_workloads.dataprep.curation import detect_language

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    future = pool.map(detect_language, texts)
    pool.shutdown(wait=False)
    return _Languages(future)


class _Languages:
    def __init__(self, results: Iterator[str]) -> None:
        self._results = results

    def result(self) -> list[str]:
        return list(self._results)


def read_result(folder: Path, rank: int) -> TaskResult:
    """The counts of map task ``rank`` (it must have completed)."""
    path = folder / f"result-{rank:05d}.pkl"
    if not path.is_file():
        raise WorkloadError("Failed", f"map task {rank} did not complete")
    result: TaskResult = pickle.loads(path.read_bytes())
    return result


def read_results(folder: Path, tasks: int) -> list[TaskResult]:
    """Every task's counts (all tasks must have completed)."""
    results = [read_result(folder, rank) for rank in range(tasks)]
    LAST_TASK_CPU[:] = [r.cpu_seconds for r in results]
    return results


def _columns(batch: list[tuple[int, Mapped]]) -> tuple[Any, ...]:
    """A batch of mapped records as a few arrays and plain tuples (fast to (un)pickle)."""
    rows = [(m.record.fields, m.record.meta, m.record.weight, m.record.group, m.record.words)
            for _, m in batch]  # fmt: skip
    positions = [p for p, _ in batch]
    if batch[0][1].signature is None:
        return positions, rows, None, None, None
    # a batch's records all carry a signature and shingles, or none of them do
    sigs = np.stack([m.signature for _, m in batch if m.signature is not None])
    sets = [m.shingles for _, m in batch if m.shingles is not None]
    bounds = np.cumsum([0] + [s.size for s in sets])
    return positions, rows, sigs, np.concatenate(sets), bounds


Failure = Callable[[int], "BaseException | None"]


def _frames(folder: Path, rank: int, failed: Failure | None) -> Iterator[bytes]:
    """The frames of task ``rank``'s shard, read as the task writes them: the shard is whole
    once the task's result file exists. ``failed`` says why a task will never complete."""
    path, done = folder / f"shard-{rank:05d}.pkl", folder / f"result-{rank:05d}.pkl"
    offset, handle = 0, None
    pause, longest = _FOLLOW_POLL_SECONDS
    try:
        while True:
            complete = failed is None or done.is_file()  # checked before reading: no race
            if handle is None and path.is_file():
                handle = path.open("rb")
            frame = _next_frame(handle, offset) if handle is not None else None
            if frame is not None:
                offset += _FRAME.size + len(frame)
                pause = _FOLLOW_POLL_SECONDS[0]
                yield frame
                continue
            if complete:
                if handle is None or handle.seek(0, os.SEEK_END) != offset:
                    raise WorkloadError("Failed", f"map task {rank}: shard missing or truncated")
                return
            error = failed(rank) if failed is not None else None
            if error is not None:
                raise error
            time.sleep(pause)
            pause = min(pause * 2, longest)
    finally:
        if handle is not None:
            handle.close()


def _next_frame(handle: Any, offset: int) -> bytes | None:
    """The whole frame at ``offset``, or None when it is not completely written yet."""
    handle.seek(offset)
    head = handle.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(head)
    body: bytes = handle.read(size)
    return body if len(body) == size else None


def _shard(folder: Path, rank: int, failed: Failure | None) -> Iterator[tuple[int, Mapped]]:
    from kubetune_workloads.dataprep.filters import Mapped
    from kubetune_workloads.dataprep.records import Record

    for frame in _frames(folder, rank, failed):
        positions, rows, sigs, flat, bounds = pickle.loads(frame)
        for i, (fields, meta, weight, group, words) in enumerate(rows):
            record = Record(fields, meta, weight, group, positions[i], words)
            if sigs is None:
                yield positions[i], Mapped(record, None, None)
            else:
                shingles = flat[bounds[i] : bounds[i + 1]]
                yield positions[i], Mapped(record, sigs[i], shingles)


def read_mapped(folder: Path, tasks: int, failed: Failure | None = None) -> Iterator[Mapped]:
    """Every task's mapped records, merged back into input order. With ``failed`` (the map
    still running), each shard is followed as its task writes it."""
    shards = [_shard(folder, rank, failed) for rank in range(tasks)]
    for _, mapped in heapq.merge(*shards, key=lambda item: item[0]):
        yield mapped
