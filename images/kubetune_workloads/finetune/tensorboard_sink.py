"""TensorBoard event files of a training run, written by rank 0 while it trains.

Where: ``<parent of the output>/tensorboard/<output name>/`` (:func:`tensorboard_uri`), beside
the artifact and not in it, so the model's content hash and manifest stay those of the model,
and ``tensorboard --logdir <parent>/tensorboard`` compares every run of a FinetuneJob. Local
and ``pvc://`` outputs are written in place (live); for ``s3://`` outputs the files are written
in the local cache and uploaded when the run ends.

A fresh run replaces an earlier attempt's event files; a resumed run (and a divergence
rollback) opens its writer with ``purge_step`` = checkpoint step + 1, so TensorBoard hides what
was logged past the checkpoint and shows one curve.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kubetune_workloads import storage
from kubetune_workloads.finetune.tracking import curve_points
from kubetune_workloads.manifest import spec_hash

log = logging.getLogger(__name__)
FLUSH_SECONDS = 10


def tensorboard_uri(output_uri: str) -> str:
    """``<parent>/tensorboard/<name>`` of an output URI (``<output>-tensorboard`` at a root)."""
    trimmed = output_uri.rstrip("/")
    scheme, rest = storage.split_uri(trimmed)
    parent, _, name = rest.rpartition("/")
    if not parent.strip("/") or not name:
        return f"{trimmed}-tensorboard"
    return f"{scheme}://{parent}/tensorboard/{name}"


class TensorBoardSink:
    """A :class:`~kubetune_workloads.finetune.tracking.MetricSink` writing event files."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        local = storage.local_path(uri)
        self.upload = local is None
        self.log_dir = local or storage.cache_root() / "tensorboard" / spec_hash(uri)[7:23]
        self.writer: Any = None

    def _open(self, purge_step: int | None) -> Any:
        from torch.utils.tensorboard import SummaryWriter

        if purge_step is None and self.log_dir.is_dir():
            for old in self.log_dir.glob("events.out.tfevents.*"):
                old.unlink()  # an earlier attempt that did not resume: its curves are stale
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log.info("TensorBoard event files: %s", self.uri)
        self.writer = SummaryWriter(
            str(self.log_dir), purge_step=purge_step, flush_secs=FLUSH_SECONDS
        )
        return self.writer

    def write(self, record: dict[str, Any]) -> None:
        writer = self.writer or self._open(None)
        for tag, value in curve_points(record).items():
            writer.add_scalar(tag, value, record["step"])

    def mark(self, step: int, event: str) -> None:
        """Log the event; a resume or rollback to ``step`` reopens the writer with
        ``purge_step`` so TensorBoard drops what was logged past it."""
        if event in ("resume", "rollback"):
            if self.writer is not None:
                self.writer.close()
            self._open(step + 1)
        writer = self.writer or self._open(None)
        writer.add_text("events", f"{event} at step {step}", step)
        writer.flush()

    def close(self) -> None:
        """Flush and close; upload the files of a remote output."""
        if self.writer is None:
            return
        self.writer.close()
        self.writer = None
        if self.upload:
            _upload(self.log_dir, self.uri)


def _upload(src: Path, uri: str) -> None:
    scheme, rest = storage.split_uri(uri)
    if scheme != "s3":
        log.warning("TensorBoard files stay in %s: cannot upload to %s", src, uri)
        return
    fs: Any = storage.s3_filesystem()
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        fs.put_file(str(path), f"{rest.rstrip('/')}/{path.relative_to(src).as_posix()}")
