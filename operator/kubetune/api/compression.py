"""The `Compression` kind: merge adapters, quantize (bitsandbytes), prune, and report."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubetune.api.base import KubeModel
from kubetune.api.common import ArtifactRef, CommonStatus, DatasetRef, RunSettings
from kubetune.api.finetune import ComputeDtype
from kubetune.api.publish import PublishSpec, PublishTargetStatus


class MergeAdapterStep(KubeModel):
    """Merge LoRA adapters into a full-precision base."""

    dtype: ComputeDtype = Field("fp32", description="Dtype of the merged weights.")


class QuantizeStep(KubeModel):
    """bitsandbytes quantization, saved as a loadable quantized checkpoint."""

    bits: Literal[4, 8] = Field(description="8 (LLM.int8) or 4 (nf4/fp4).")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    double_quant: bool = Field(True, description="Quantize the quantization constants.")
    compute_dtype: ComputeDtype = Field("bf16", description="Dtype of matmuls.")
    skip_modules: list[str] = Field(
        default_factory=lambda: ["lm_head"], description="Modules left unquantized."
    )


class PruneStep(KubeModel):
    """Magnitude pruning, unstructured or structured, made permanent."""

    method: Literal["magnitude", "structured"] = Field(
        "magnitude", description="Unstructured magnitude, or structured (rows/heads/channels)."
    )
    sparsity: float = Field(ge=0, lt=1, description="Target fraction of zeroed weights.")
    scope: Literal["global", "layer"] = Field(
        "layer", description="Rank weights across the whole model or within each layer."
    )
    granularity: Literal["rows", "heads", "channels"] = Field(
        "channels", description="Structured pruning unit."
    )
    target_modules: list[str] | None = Field(
        None, description="Module name patterns to prune (default: all linear layers but lm_head)."
    )


class CompressionStep(KubeModel):
    """One step; exactly one of its fields is set. Steps run in the order given."""

    merge_adapter: MergeAdapterStep | None = Field(None, description="Merge LoRA adapters.")
    quantize: QuantizeStep | None = Field(None, description="Quantize with bitsandbytes.")
    prune: PruneStep | None = Field(None, description="Prune weights.")

    __cel_rules__ = (
        {
            "rule": "[has(self.mergeAdapter), has(self.quantize), has(self.prune)]"
            ".filter(x, x).size() == 1",
            "message": "each step sets exactly one of mergeAdapter, quantize or prune",
        },
    )


class CompressionReportSettings(KubeModel):
    """Before/after measurements and the quality gate."""

    prompts: list[str] | None = Field(
        None, description="Fixed prompts for latency and tokens/s (defaults provided)."
    )
    max_new_tokens: int = Field(32, ge=1, le=4096, description="Tokens generated per prompt.")
    max_eval_batches: int = Field(16, ge=1, description="Validation batches used for perplexity.")
    max_perplexity_increase: float | None = Field(
        None, ge=0, description="Fail when perplexity grows by more than this fraction."
    )


class CompressionTemplate(RunSettings):
    """A Compression without its source model (used by FeedbackLoop)."""

    steps: list[CompressionStep] = Field(
        min_length=1, max_length=16, description="Ordered compression steps."
    )
    dataset: DatasetRef | None = Field(
        None, description="Data whose validation split measures perplexity before and after."
    )
    report: CompressionReportSettings = Field(
        default_factory=CompressionReportSettings, description="Report and quality gate."
    )

    __cel_rules__ = (
        {
            "rule": "self.steps.filter(s, has(s.quantize)).size() <= 1",
            "message": "quantize at most once",
            "fieldPath": ".steps",
        },
        {
            "rule": "!has(self.report.maxPerplexityIncrease) || has(self.dataset)",
            "message": "maxPerplexityIncrease needs a dataset to measure perplexity on",
            "fieldPath": ".dataset",
        },
    )


class CompressionSpec(CompressionTemplate):
    """Desired state of a Compression."""

    model: ArtifactRef = Field(description="The model to compress.")
    publish: PublishSpec | None = Field(
        None, description="Registries the compressed model is published to once it is complete."
    )


class CompressionStatus(CommonStatus):
    """Observed state of a Compression."""

    size_ratio: float | None = Field(None, description="Bytes after / bytes before.")
    perplexity_delta: float | None = Field(None, description="Perplexity after - before.")
    publish: list[PublishTargetStatus] | None = Field(
        None, description="Each spec.publish target of the current run."
    )
