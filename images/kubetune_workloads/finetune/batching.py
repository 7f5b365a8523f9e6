"""Rows -> micro-batches: sample packing, a seeded order per epoch, padding, data position.

Packing places whole examples into ``maxSeqLength`` rows (best fit). The model gets
``position_ids`` that restart at every example and no attention mask, from which transformers
builds a block-diagonal causal mask (eager, SDPA) or a flex-attention block mask, so packed
examples never attend to each other. Unpacked rows are padded to the longest row of their
batch; a batch of equally long rows gets no attention mask (transformers would otherwise
inspect it on every forward).
The first label of every example is ignored: in a packed row it would be predicted from the end
of the previous example (alone, an example's first label is never predicted either).

The ``varlen`` layout (FlashAttention paths) flattens a micro-batch into one padding-free row
with ``cu_seq_lens``/``max_length`` kwargs, which transformers hands to the varlen kernels.

The order of an epoch is a permutation seeded by ``seed + epoch``, so a run that resumes at
micro-batch N sees exactly the batches it would have seen.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

import torch

from kubetune_workloads.finetune.data import IGNORE, Example


def pack(examples: list[Example], max_len: int) -> list[Example]:
    """Best-fit packing of whole examples into rows of at most ``max_len`` tokens."""
    rows: list[Example] = []
    free: list[tuple[int, int]] = []  # sorted (free space, row index)
    for ex in sorted(examples, key=lambda e: len(e.input_ids), reverse=True):
        size = len(ex.input_ids)
        pos = bisect.bisect_left(free, (size, -1))
        if pos == len(free):
            rows.append(Example(list(ex.input_ids), list(ex.labels), [size]))
            bisect.insort(free, (max_len - size, len(rows) - 1))
            continue
        space, index = free.pop(pos)
        row = rows[index]
        row.input_ids.extend(ex.input_ids)
        row.labels.extend(ex.labels)
        row.lengths.append(size)
        bisect.insort(free, (space - size, index))
    return rows


@dataclass(frozen=True)
class BatchPlan:
    """How rows map to micro-batches for this rank."""

    rows: int
    batch_size: int
    world_size: int
    rank: int
    seed: int

    @property
    def micro_batches_per_epoch(self) -> int:
        return max(1, math.ceil(self.rows / (self.batch_size * self.world_size)))

    def indices(self, micro_step: int) -> list[int]:
        """Row indices of this rank's micro-batch number ``micro_step`` (counted from 0)."""
        epoch, offset = divmod(micro_step, self.micro_batches_per_epoch)
        gen = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.rows, generator=gen).tolist()
        start = (offset * self.world_size + self.rank) * self.batch_size
        return [order[(start + i) % self.rows] for i in range(self.batch_size)]


def collate(
    rows: list[Example], pad_id: int, device: torch.device, varlen: bool = False
) -> dict[str, Any]:
    """Tensors for one micro-batch, and ``tokens`` (real, unpadded) for throughput."""
    if varlen:
        return _collate_flat(rows, device)
    width = max(len(r.input_ids) for r in rows)
    packed = any(len(r.lengths) > 1 for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        ids[i, :n] = torch.tensor(row.input_ids)
        labels[i, :n] = torch.tensor(_document_labels(row))
        mask[i, :n] = 1
        start = 0
        for length in [*row.lengths, width - n]:
            positions[i, start : start + length] = torch.arange(length)
            start += length
    batch: dict[str, Any] = {"input_ids": ids, "labels": labels}
    if packed:
        batch["position_ids"] = positions
    elif any(len(r.input_ids) < width for r in rows):
        batch["attention_mask"] = mask  # no mask on full rows: SDPA's causal path, no mask check
    tensors = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    tokens = int(mask.sum())
    scored = int((labels[:, 1:] != IGNORE).sum())
    return {"inputs": tensors, "tokens": tokens, "scored": scored}


def _document_labels(row: Example) -> list[int]:
    """The row's labels with the first label of every document set to ``IGNORE``."""
    labels = list(row.labels)
    start = 0
    for length in row.lengths:
        if start < len(labels):
            labels[start] = IGNORE
        start += length
    return labels


def _collate_flat(rows: list[Example], device: torch.device) -> dict[str, Any]:
    """One padding-free row holding every document of ``rows``, with the cumulative document
    lengths FlashAttention's varlen kernels take (as ``DataCollatorWithFlattening`` does)."""
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    lengths: list[int] = []
    for row in rows:
        ids.extend(row.input_ids)
        labels.extend(_document_labels(row))
        for length in row.lengths:
            positions.extend(range(length))
            lengths.append(length)
    cumulative = torch.tensor([0, *lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    longest = max(lengths)
    label_tensor = torch.tensor([labels], dtype=torch.long)
    tensors = {
        "input_ids": torch.tensor([ids], dtype=torch.long).to(device, non_blocking=True),
        "labels": label_tensor.to(device, non_blocking=True),
        "position_ids": torch.tensor([positions], dtype=torch.long).to(device, non_blocking=True),
    }
    seq_lens = cumulative.to(device, non_blocking=True)
    extra: dict[str, Any] = {"cu_seq_lens_q": seq_lens, "cu_seq_lens_k": seq_lens}
    extra |= {"max_length_q": longest, "max_length_k": longest}
    scored = int((label_tensor[:, 1:] != IGNORE).sum())
    return {"inputs": tensors | extra, "tokens": len(ids), "scored": scored}
