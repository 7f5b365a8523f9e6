"""What stops a training run early and safely: termination signals and divergence.

:class:`GracefulStop` turns SIGTERM (Kueue preemption, a node drain, ``kubetune run`` being
stopped) and SIGINT into a request the loop honours after the current optimizer step: it
writes a complete checkpoint and exits with a retryable reason (``Preempted`` /
``Interrupted``), so the next pod resumes. Outside the loop, or on a second signal, the signal
interrupts at once as usual.

:class:`DivergenceMonitor` compares each step's loss with a reference (the lowest running median
of recent losses) and each evaluation loss with the best one (or, before any, with the loss of a
uniform guess), so an exploding run ends with
``Diverged`` (or rolls back) instead of succeeding.
"""

from __future__ import annotations

import math
import signal
import statistics
import threading
from collections import deque
from types import FrameType
from typing import Any

REASON_FOR_SIGNAL = {signal.SIGTERM: "Preempted", signal.SIGINT: "Interrupted"}


class GracefulStop:
    """SIGTERM/SIGINT handler: a request while armed, an immediate interrupt otherwise."""

    def __init__(self) -> None:
        self.armed = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in REASON_FOR_SIGNAL:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def reason(self) -> str:
        return REASON_FOR_SIGNAL.get(signal.Signals(self.signum or signal.SIGTERM), "Preempted")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum or signal.SIGTERM).name

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.armed and self.signum is None:
            self.signum = signum
            return
        raise KeyboardInterrupt


class Divergence(Exception):
    """The loss exploded; ``message`` names the step and the values."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


class DivergenceMonitor:
    """Running-median check of the training loss and best-so-far check of the eval loss."""

    def __init__(self, guard: Any, vocab_size: int | None = None) -> None:
        self.guard = guard
        self.vocab_size = vocab_size
        self.recent: deque[float] = deque(maxlen=guard.window)
        self.reference: float | None = None
        self.bad_steps: list[tuple[int, float]] = []

    def reset(self) -> None:
        """After a rollback: the diverged steps are forgotten; the healthy reference stays."""
        self.bad_steps = []

    def _threshold(self, reference: float, factor: float) -> float:
        return max(reference * factor, reference + 1.0)

    def check_loss(self, step: int, loss: float) -> None:
        if not self.guard.enabled or not math.isfinite(loss):
            return
        if self.reference is not None and loss > self._threshold(
            self.reference, self.guard.loss_factor
        ):
            self.bad_steps.append((step, loss))
            if len(self.bad_steps) >= self.guard.patience:
                first_step, first_loss = self.bad_steps[0]
                raise Divergence(
                    step,
                    f"the training loss diverged: {first_loss:.4g} at step {first_step} and "
                    f"{loss:.4g} at step {step}, {len(self.bad_steps)} steps in a row above "
                    f"{self._threshold(self.reference, self.guard.loss_factor):.4g} (reference "
                    f"{self.reference:.4g}, the lowest running median of the last "
                    f"{self.guard.window} losses); lower the learning rate",
                )
            return  # a diverged loss does not move the reference
        self.bad_steps = []
        self.recent.append(loss)
        median = statistics.median(self.recent)
        self.reference = median if self.reference is None else min(self.reference, median)

    def check_eval(self, step: int, eval_loss: float | None, best: float | None) -> None:
        """``best``: the best evaluation loss of the run so far (kept across resumes). Before
        any, the reference is the loss of guessing uniformly over the vocabulary, ln(V): a
        healthy model, even untrained, stays near or below it. (Not the training loss: an
        overfitting model's validation loss is far above it without diverging.)"""
        if not self.guard.enabled or eval_loss is None:
            return
        if best is not None:
            reference, against = best, f"a best of {best:.4g}"
        elif self.vocab_size:
            reference = math.log(self.vocab_size)
            against = f"ln(vocabulary) {reference:.4g}, the loss of a uniform guess"
        else:
            reference, against = None, "nothing to compare"
        if math.isfinite(eval_loss) and (
            reference is None or eval_loss <= self._threshold(reference, self.guard.eval_factor)
        ):
            return
        perplexity = math.exp(eval_loss) if eval_loss < 700 else math.inf
        raise Divergence(
            step,
            f"the evaluation loss exploded at step {step}: {eval_loss:.4g} (perplexity "
            f"{perplexity:.4g}) against {against}; lower the learning rate",
        )
