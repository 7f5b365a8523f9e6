"""Per-step losses kept on the device until the host needs them.

Reading a CUDA loss (``float(loss)``) waits for the GPU to finish the step, so the CPU cannot
queue the next one meanwhile. The loop keeps each optimizer step's loss as a device tensor and
reads them all with one transfer when it must: at a logging, evaluation or checkpoint step,
when stopping, or every :data:`MAX_PENDING` steps so the divergence guard stays responsive.
The values and the order in which the guard sees them are the same as reading every step.
"""

from __future__ import annotations

from typing import Any

import torch

MAX_PENDING = 50


class PendingLosses:
    """(step, loss) pairs not yet read back to the host."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self.limit = limit
        self._steps: list[int] = []
        self._losses: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, step: int, loss: torch.Tensor) -> None:
        self._steps.append(step)
        self._losses.append(loss.detach().reshape(()))

    @property
    def full(self) -> bool:
        return len(self._steps) >= self.limit

    def drain(self) -> list[tuple[int, float]]:
        """Every pending (step, loss) in step order, read with one device-to-host copy."""
        if not self._steps:
            return []
        values = torch.stack([loss.double() for loss in self._losses]).tolist()
        drained = list(zip(self._steps, values, strict=True))
        self._steps, self._losses = [], []
        return drained


def all_reduce_step(
    env: Any, loss: torch.Tensor, tokens: int, asked: bool
) -> tuple[torch.Tensor, int, bool]:
    """All ranks' mean loss (left on the device), summed tokens, and whether any rank was asked
    to stop. Reading the token count and the stop flag is the step's one host sync."""
    import torch.distributed as torch_dist

    packed = torch.stack(
        [
            loss.detach().double().reshape(()),
            torch.tensor(float(tokens), dtype=torch.float64, device=loss.device),
            torch.tensor(float(asked), dtype=torch.float64, device=loss.device),
        ]
    )
    torch_dist.all_reduce(packed)
    tokens_all, stopping = packed[1:].tolist()
    return packed[0] / env.world_size, int(tokens_all), stopping > 0
