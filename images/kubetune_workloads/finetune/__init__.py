"""The finetune step: ``python -m kubetune_workloads finetune --spec FILE``.

:func:`run` (in :mod:`.main`, the step's entry point) trains a model as a ``FinetuneStepSpec``
says (transfer learning, domain adaptation or task SFT; full, LoRA or QLoRA; from a base, an
earlier output, or from scratch), on one process or under torchrun (DDP/FSDP), resuming from
the latest complete checkpoint, and writes an HF-format artifact with ``metrics.jsonl``,
``results.json``, a model card and a manifest (last). Modules: ``model_setup`` (what to train),
``tokenizer_setup``, ``architectures``, ``data`` (objectives), ``batching`` (packing, order),
``optim``, ``training_loop`` (the optimizer steps, eval, guards), ``checkpoints``,
``distributed``, ``tracking``, ``outputs``; what a run shows of itself: ``watchers``
(``tensorboard_sink``, ``mlflow_sink``) and ``training_report``.
"""

from __future__ import annotations

from kubetune_workloads.finetune.main import run

__all__ = ["run"]
