"""The kind registry: the one list of kubetune's kinds that every layer iterates.

``KIND_INFO`` holds the API facts of each kind (plural, short names, models, done condition,
printer columns), in the order the kinds depend on each other. The CRD generator, the API
reference, the validator, the CLI and the local runtime iterate it; every other layer keeps a
table of its own part of a kind (plan: the planner and the fields naming dependencies;
controllers: the kind's controller) built with :func:`per_kind`, which refuses a table that
misses a kind or names one that is not registered. Adding a kind is one entry here and one
module per layer (tests/unit/test_kind_registry.py checks every layer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from pydantic import BaseModel

from kubetune.api import resources
from kubetune.api.common import CommonStatus
from kubetune.api.compression import CompressionSpec, CompressionStatus
from kubetune.api.dataset import DatasetSpec, DatasetStatus
from kubetune.api.evaluation import EvaluationSpec, EvaluationStatus
from kubetune.api.feedback import FeedbackLoopSpec, FeedbackLoopStatus
from kubetune.api.finetune import FinetuneJobSpec, FinetuneJobStatus

T = TypeVar("T")


@dataclass(frozen=True)
class PrinterColumn:
    """An additionalPrinterColumns entry."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class KindInfo:
    """Everything the CRD and the CLI need to know about one kind."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    model: type[resources.Resource[Any, Any]]
    spec_model: type[BaseModel]
    status_model: type[CommonStatus]
    done_condition: str
    description: str
    columns: tuple[PrinterColumn, ...]


_PHASE = PrinterColumn("Phase", ".status.phase", description="Summary of the conditions.")
_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", type="date")
_GPU_SECONDS = PrinterColumn(
    "GPU-Seconds",
    ".status.usage.gpuSeconds",
    type="number",
    priority=1,
    description="GPU-seconds of the current run.",
)

KIND_INFO: dict[str, KindInfo] = {
    "Dataset": KindInfo(
        "Dataset",
        "datasets",
        "dataset",
        ("ktds", "ktdataset"),
        resources.Dataset,
        DatasetSpec,
        DatasetStatus,
        "Ready",
        "Dataset prepares versioned training data: curation, cleaning, de-duplication, PII "
        "redaction, offensive-content filtering, balance, tokenization and split.",
        (
            _PHASE,
            PrinterColumn("Schema", ".spec.schema"),
            PrinterColumn("Records", ".status.records", type="integer"),
            PrinterColumn("Tokens", ".status.tokens", type="integer", priority=1),
            PrinterColumn("Version", ".status.version", priority=1),
            _GPU_SECONDS,
            _AGE,
        ),
    ),
    "FinetuneJob": KindInfo(
        "FinetuneJob",
        "finetunejobs",
        "finetunejob",
        ("ftj", "ft"),
        resources.FinetuneJob,
        FinetuneJobSpec,
        FinetuneJobStatus,
        "Succeeded",
        "FinetuneJob trains a model: from a pretrained base, an earlier job's output, or an "
        "architecture designed from scratch; full, LoRA or QLoRA.",
        (
            _PHASE,
            PrinterColumn("Method", ".spec.method"),
            PrinterColumn("Objective", ".spec.objective", priority=1),
            PrinterColumn("Step", ".status.progress.step", type="integer"),
            PrinterColumn("Loss", ".status.progress.loss", type="number"),
            _GPU_SECONDS,
            _AGE,
        ),
    ),
    "Compression": KindInfo(
        "Compression",
        "compressions",
        "compression",
        ("ktc", "kcomp"),
        resources.Compression,
        CompressionSpec,
        CompressionStatus,
        "Succeeded",
        "Compression merges adapters, quantizes with bitsandbytes and prunes a model, and "
        "reports size, speed and quality before and after.",
        (
            _PHASE,
            PrinterColumn("Size-Ratio", ".status.sizeRatio", type="number"),
            PrinterColumn("PPL-Delta", ".status.perplexityDelta", type="number"),
            _GPU_SECONDS,
            _AGE,
        ),
    ),
    "Evaluation": KindInfo(
        "Evaluation",
        "evaluations",
        "evaluation",
        ("kteval", "keval"),
        resources.Evaluation,
        EvaluationSpec,
        EvaluationStatus,
        "Succeeded",
        "Evaluation scores a candidate model (and optionally a baseline) on prompt sets, "
        "compares them, applies gates and runs bias probes.",
        (
            _PHASE,
            PrinterColumn("Passed", ".status.passed", type="boolean"),
            PrinterColumn("Message", ".status.message", priority=1),
            _GPU_SECONDS,
            _AGE,
        ),
    ),
    "FeedbackLoop": KindInfo(
        "FeedbackLoop",
        "feedbackloops",
        "feedbackloop",
        ("ktfl", "kfl"),
        resources.FeedbackLoop,
        FeedbackLoopSpec,
        FeedbackLoopStatus,
        "Ready",
        "FeedbackLoop accumulates feedback, retrains, evaluates the challenger against the "
        "champion and promotes it when the gates pass.",
        (
            _PHASE,
            PrinterColumn("Generation", ".status.generation", type="integer"),
            PrinterColumn("Pending", ".status.pendingRecords", type="integer"),
            PrinterColumn("Champion", ".status.champion", priority=1),
            _AGE,
        ),
    ),
}


def kind_info(kind: str) -> KindInfo:
    """The registry entry of a kind, or a clear error."""
    try:
        return KIND_INFO[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(KIND_INFO)}") from None


def parse_resource(body: Mapping[str, Any]) -> resources.AnyResource:
    """The typed resource of a manifest or stored body, by its kind's model; raises pydantic's
    ValidationError (a ValueError), or ValueError for a kind that is not registered."""
    parsed = kind_info(str(body["kind"])).model.model_validate(body)
    # every registered model is a member of AnyResource (tests/unit/test_kind_registry.py)
    return cast("resources.AnyResource", parsed)


KINDS: tuple[str, ...] = tuple(KIND_INFO)


class KindRegistryError(RuntimeError):
    """A layer's per-kind table does not match the kind registry."""


def per_kind(layer: str, entries: Mapping[str, T]) -> dict[str, T]:
    """A layer's table of one entry per registered kind, in registry order.

    Raises :class:`KindRegistryError` at import time when the table misses a kind (a new kind
    not wired into that layer) or names an unregistered one."""
    missing = [k for k in KINDS if k not in entries]
    unknown = sorted(k for k in entries if k not in KIND_INFO)
    if missing or unknown:
        raise KindRegistryError(
            f"{layer}: the per-kind table must have one entry per kind in "
            f"kubetune.api.kinds.KIND_INFO; missing {missing}, unknown {unknown}"
        )
    return {kind: entries[kind] for kind in KINDS}
