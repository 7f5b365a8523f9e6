"""The `FinetuneJob` kind: transfer learning, domain adaptation and task SFT; full, LoRA, QLoRA."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.common import (
    ARTIFACT_SCHEMES,
    ArtifactRef,
    CommonStatus,
    DatasetRef,
    Progress,
    RunSettings,
)
from kubetune.api.publish import (
    MlflowCredentials,
    PublishSpec,
    PublishTargetStatus,
    TrackingUri,
)

Objective = Literal["continued-pretraining", "instruction", "chat", "preference"]
PreferenceAlgorithm = Literal["dpo", "ipo", "orpo", "simpo", "kto"]
Method = Literal["full", "lora", "qlora"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
ComputeDtype = Literal["bf16", "fp16", "fp32"]


class BaseModelRef(KubeModel):
    """A pretrained model by URI."""

    uri: str = Field(
        description="hf://ORG/NAME[@REVISION], s3://..., pvc://CLAIM/PATH or file:///PATH.",
        pattern=r"^(hf|s3|pvc|file)://\S+$",
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        from kubetune.api.common import check_uri

        return check_uri(v, ARTIFACT_SCHEMES)


class Architecture(KubeModel):
    """A model designed from scratch: a decoder-only transformer or a character-level RNN."""

    family: Literal["llama", "gpt2", "qwen2", "lstm", "gru"] = Field(
        description="Transformer family (llama, gpt2, qwen2) or recurrent cell (lstm, gru)."
    )
    layers: int = Field(2, ge=1, le=128, description="Transformer blocks or RNN layers.")
    hidden_size: int = Field(128, ge=8, le=16384, description="Hidden (model) dimension.")
    heads: int | None = Field(None, ge=1, le=256, description="Attention heads (transformers).")
    kv_heads: int | None = Field(
        None, ge=1, le=256, description="Key/value heads for grouped-query attention."
    )
    intermediate_size: int | None = Field(
        None, ge=8, description="MLP width (default 4x hidden for gpt2, ~2.7x for llama)."
    )
    vocab_size: int | None = Field(
        None, ge=16, le=1048576, description="Vocabulary size (default: the tokenizer's)."
    )
    context_length: int = Field(512, ge=16, le=1048576, description="Maximum sequence length.")
    embedding_size: int | None = Field(None, ge=8, description="RNN input embedding size.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout probability.")

    __cel_rules__ = (
        {
            "rule": "self.family in ['lstm', 'gru'] || has(self.heads)",
            "message": "transformer architectures need heads",
            "fieldPath": ".heads",
        },
        {
            "rule": "!has(self.heads) || self.hiddenSize % self.heads == 0",
            "message": "hiddenSize must be divisible by heads",
            "fieldPath": ".hiddenSize",
        },
        {
            "rule": "!has(self.kvHeads) || (has(self.heads) && self.heads % self.kvHeads == 0)",
            "message": "heads must be divisible by kvHeads",
            "fieldPath": ".kvHeads",
        },
    )


class TokenizerSource(KubeModel):
    """Where the tokenizer comes from when the model has none."""

    from_dataset: bool = Field(
        True, description="Use the tokenizer the Dataset trained, when it ships one."
    )
    train: Literal["bpe", "char"] | None = Field(
        None, description="Train one on the training split."
    )
    vocab_size: int = Field(4096, ge=64, le=262144, description="Vocabulary size when training.")


class ModelSource(KubeModel):
    """Exactly one of base, from or architecture."""

    base: BaseModelRef | None = Field(None, description="Pretrained model (transfer learning).")
    from_: ArtifactRef | None = Field(
        None,
        alias="from",
        description="Continue from the output of an earlier FinetuneJob or Compression.",
    )
    architecture: Architecture | None = Field(None, description="Design a model from scratch.")
    tokenizer: TokenizerSource | None = Field(None, description="Tokenizer, when not the model's.")
    trust_remote_code: bool = Field(
        False, description="Allow model code from the model repository. Off by default."
    )
    allow_pickle: bool = Field(
        False, description="Allow pickle (.bin/.pt) weights. Off: only safetensors are loaded."
    )

    __cel_rules__ = (
        {
            "rule": "[has(self.base), has(self.from), has(self.architecture)]"
            ".filter(x, x).size() == 1",
            "message": "set exactly one model source: base, from or architecture",
        },
    )


class LoraSpec(KubeModel):
    """LoRA adapter settings (peft)."""

    r: int = Field(ge=1, le=1024, description="LoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        min_length=1,
        description="Module names to adapt, or all-linear.",
    )
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    use_rslora: bool = Field(False, description="Rank-stabilized scaling alpha/sqrt(r).")


class QuantizationSpec(KubeModel):
    """bitsandbytes quantization of the frozen base."""

    bits: Literal[4, 8] = Field(4, description="4 (QLoRA) or 8 (LLM.int8).")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    double_quant: bool = Field(True, description="Quantize the quantization constants too.")
    compute_dtype: ComputeDtype = Field("bf16", description="Dtype of matmuls.")


class PreferenceKnobs(KubeModel):
    """The knobs of the preference losses, as TRL names them (shared with a FeedbackLoop's
    ``training.preference``)."""

    beta: float = Field(
        0.1,
        gt=0,
        description="dpo/ipo/kto: deviation from the reference (ipo: tau); orpo: weight of the "
        "odds-ratio term (lambda); simpo: reward scale.",
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="dpo/simpo: probability that a pair's label is flipped."
    )
    simpo_gamma: float = Field(0.5, ge=0, description="simpo: target reward margin (gamma).")
    sft_weight: float = Field(
        0.0,
        ge=0,
        description="simpo: weight of the chosen answer's NLL added to the loss (CPO alpha).",
    )
    desirable_weight: float = Field(1.0, gt=0, description="kto: weight of desirable examples.")
    undesirable_weight: float = Field(1.0, gt=0, description="kto: weight of undesirable examples.")


class PreferenceSpec(PreferenceKnobs):
    """Preference tuning (objective preference): the loss and its knobs, as TRL defines them."""

    algorithm: PreferenceAlgorithm = Field(
        "dpo",
        description="dpo (sigmoid), ipo, orpo, simpo (reference-free) or kto (unpaired "
        "desirable/undesirable completions).",
    )


class Hyperparameters(KubeModel):
    """Training hyperparameters (TRL/Axolotl names, camelCase)."""

    epochs: float | None = Field(None, gt=0, le=1000, description="Passes over the data.")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps (overrides epochs).")
    learning_rate: float = Field(2e-4, gt=0, le=1, description="Peak learning rate.")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="LR schedule after warmup."
    )
    warmup_ratio: float | None = Field(
        None, ge=0, lt=1, description="Warmup as a fraction of total steps."
    )
    warmup_steps: int | None = Field(None, ge=0, description="Warmup in steps.")
    batch_size: int = Field(8, ge=1, le=4096, description="Per-device micro-batch size.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024, description="Micro-batches/step.")
    max_seq_length: int = Field(512, ge=8, le=1048576, description="Tokens per sequence.")
    packing: bool = Field(False, description="Pack short samples into full sequences.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    precision: Precision = Field("auto", description="auto = bf16 on capable GPUs, else fp32.")
    seed: int = Field(42, ge=0, description="Seed of initialization, shuffling and dropout.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    optimizer: Literal["adamw", "adamw_8bit", "paged_adamw_8bit", "sgd"] = Field(
        "adamw", description="Optimizer; the 8-bit ones come from bitsandbytes."
    )
    logging_steps: int = Field(10, ge=1, description="Log metrics every N steps.")

    __cel_rules__ = (
        {
            "rule": "has(self.epochs) || has(self.maxSteps)",
            "message": "set epochs or maxSteps",
        },
        {
            "rule": "!(has(self.warmupRatio) && has(self.warmupSteps))",
            "message": "set at most one of warmupRatio or warmupSteps",
        },
    )


class EvalSettings(KubeModel):
    """Validation during training."""

    every_steps: int | None = Field(
        None, ge=1, description="Evaluate on the validation split every N steps."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after N evaluations without improvement."
    )


class Checkpointing(KubeModel):
    """Checkpoints and automatic resume."""

    every_steps: int | None = Field(None, ge=1, description="Save a checkpoint every N steps.")
    keep_last: int = Field(2, ge=1, le=100, description="Checkpoints to keep.")
    resume: Literal["auto", "never"] = Field(
        "auto", description="auto: resume from the latest complete checkpoint on restart."
    )
    grace_period_seconds: int = Field(
        300,
        ge=1,
        le=86400,
        description="The pod's terminationGracePeriodSeconds: time after SIGTERM (preemption, "
        "node drain) to finish the optimizer step and write a complete checkpoint.",
    )


class DivergenceGuard(KubeModel):
    """Stop (or roll back) a run whose loss explodes instead of reporting success."""

    enabled: bool = Field(True, description="Check the training and evaluation losses.")
    loss_factor: float = Field(
        4.0,
        gt=1,
        description="A step's loss counts as diverged above max(factor x reference, reference "
        "+ 1), the reference being the lowest running median of the recent losses.",
    )
    window: int = Field(20, ge=1, le=1000, description="Steps in the running median.")
    patience: int = Field(
        5, ge=1, description="Consecutive diverged steps that fail (or roll back) the run."
    )
    eval_factor: float = Field(
        4.0,
        gt=1,
        description="An evaluation loss above max(factor x best, best + 1) is a divergence.",
    )
    rollback: bool = Field(
        False,
        description="Roll back to the last complete checkpoint with a lower learning rate "
        "instead of failing (needs checkpointing.everySteps).",
    )
    rollback_lr_factor: float = Field(
        0.5, gt=0, lt=1, description="Learning-rate multiplier applied at each rollback."
    )
    max_rollbacks: int = Field(2, ge=1, le=10, description="Rollbacks before the run fails.")


class Distributed(KubeModel):
    """Data-parallel strategy when more than one process trains."""

    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="DDP, or FSDP (full fine-tuning only)."
    )


class Performance(KubeModel):
    """How the training step runs fast on the hardware it gets (numerics stay the same)."""

    attention: Literal[
        "auto", "sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3"
    ] = Field(
        "auto",
        description="Attention kernel. auto: FlashAttention varlen when installed on a GPU, "
        "else flex attention with a document mask on a GPU, else SDPA. Packed documents never "
        "attend to each other on any path.",
    )
    kernels: Literal["auto", "liger", "none"] = Field(
        "auto",
        description="Fused Liger kernels (linear+cross-entropy, RMSNorm, SwiGLU, RoPE). auto: "
        "on a GPU when liger-kernel is installed (extra gpu); liger: required.",
    )
    compile: bool = Field(False, description="torch.compile the model (pays on long runs).")
    auto_micro_batch: bool = Field(
        False,
        description="Probe forward+backward on the device and use the largest micro-batch up "
        "to batchSize that fits (gradient checkpointing if none does); gradient accumulation "
        "grows to keep the tokens per optimizer step.",
    )
    memory_headroom: float = Field(
        0.1, ge=0, lt=0.9, description="Fraction of device memory auto mode leaves free."
    )


class MlflowTracking(KubeModel):
    """Log the run's parameters and per-step metrics to an MLflow tracking server."""

    tracking_uri: TrackingUri
    experiment: str = Field(
        description="Experiment name (created when missing).", min_length=1, max_length=256
    )
    run_name: str | None = Field(
        None, max_length=256, description="MLflow run name (default: NAME-RUNID)."
    )
    credentials: MlflowCredentials | None = Field(None, description="Secrets of the server.")
    required: bool = Field(
        False,
        description="Fail the run (TrackingUnavailable, retried) when the server cannot be "
        "reached at the start. Default: warn and train on without MLflow.",
    )

    @field_validator("tracking_uri", mode="before")
    @classmethod
    def _no_userinfo(cls, v: object) -> object:
        if isinstance(v, str) and "@" in v.split("://", 1)[-1].split("/", 1)[0]:
            raise ValueError(
                "trackingUri must not carry credentials: put them in a Secret and reference it "
                "from tracking.mlflow.credentials"
            )
        return v


class Tracking(KubeModel):
    """Experiment tracking besides the TensorBoard event files every run writes."""

    mlflow: MlflowTracking | None = Field(None, description="An MLflow tracking server.")


class TrainingSettings(RunSettings):
    """Everything of a FinetuneJob except what to train and on which data (used by templates)."""

    objective: Objective = Field(
        "instruction",
        description="continued-pretraining (domain adaptation on raw text), instruction, chat "
        "or preference (DPO/IPO/ORPO/SimPO/KTO on preference pairs).",
    )
    method: Method = Field("lora", description="full, lora or qlora.")
    preference: PreferenceSpec | None = Field(
        None, description="Objective preference: algorithm (dpo, ipo, orpo, simpo, kto) and beta."
    )
    lora: LoraSpec | None = Field(None, description="LoRA settings (lora and qlora).")
    quantization: QuantizationSpec | None = Field(
        None, description="Quantization of the frozen base (qlora: 4-bit)."
    )
    hyperparameters: Hyperparameters = Field(
        default_factory=lambda: Hyperparameters(epochs=1), description="Hyperparameters."
    )
    evaluation: EvalSettings = Field(default_factory=EvalSettings, description="Validation.")
    checkpointing: Checkpointing = Field(
        default_factory=Checkpointing, description="Checkpoints and resume."
    )
    divergence: DivergenceGuard = Field(
        default_factory=DivergenceGuard, description="Divergence guard (on by default)."
    )
    distributed: Distributed = Field(default_factory=Distributed, description="Parallelism.")
    performance: Performance = Field(
        default_factory=Performance, description="Attention kernel, fused kernels, compile."
    )
    tracking: Tracking | None = Field(
        None, description="Experiment tracking (MLflow); TensorBoard files are always written."
    )
    merge_adapter: bool = Field(
        False, description="Also write a merged full model next to the adapter."
    )
    prompt_template: str | None = Field(
        None,
        description="Instruction objective: template with {instruction}, {input}; "
        "default is the Alpaca template.",
    )

    __cel_rules__: ClassVar[tuple[CelRule, ...]] = (
        {
            "rule": "self.method == 'full' || has(self.lora)",
            "message": "lora and qlora need lora settings (at least r)",
            "fieldPath": ".lora",
        },
        {
            "rule": "self.method != 'qlora' || (has(self.quantization) "
            "&& self.quantization.bits == 4)",
            "message": "qlora requires 4-bit quantization",
            "fieldPath": ".quantization.bits",
        },
        {
            "rule": "self.method != 'full' || !has(self.quantization)",
            "message": "full fine-tuning cannot train a quantized model",
            "fieldPath": ".quantization",
        },
        {
            "rule": "(self.objective == 'preference') == has(self.preference)",
            "message": "objective preference needs preference settings (algorithm, beta), "
            "and preference settings need objective preference",
            "fieldPath": ".preference",
        },
        {
            "rule": "self.objective != 'preference' || !self.hyperparameters.packing",
            "message": "preference pairs cannot be packed; set hyperparameters.packing false",
            "fieldPath": ".hyperparameters.packing",
        },
        {
            "rule": "self.distributed.strategy != 'fsdp' || self.method == 'full'",
            "message": "fsdp is supported for full fine-tuning only",
            "fieldPath": ".distributed.strategy",
        },
    )


class FinetuneJobSpec(TrainingSettings):
    """Desired state of a FinetuneJob."""

    model: ModelSource = Field(description="What to train: base, from or architecture.")
    dataset: DatasetRef = Field(description="Training data: a Dataset or a dataset artifact.")
    publish: PublishSpec | None = Field(
        None, description="Registries the trained model is published to once it is complete."
    )

    __cel_rules__ = (
        *TrainingSettings.__cel_rules__,
        {
            "rule": "!has(self.model.architecture) || self.method == 'full'",
            "message": "a model designed from scratch is trained with method full",
            "fieldPath": ".method",
        },
    )


class MlflowRun(KubeModel):
    """The MLflow run a FinetuneJob run logged to."""

    run_id: str = Field(description="MLflow run id.")
    experiment_id: str = Field(description="MLflow experiment id.")
    url: str = Field(description="The run's page on the tracking server.")


class FinetuneJobStatus(CommonStatus):
    """Observed state of a FinetuneJob."""

    progress: Progress | None = Field(None, description="Live progress of the current run.")
    report_uri: str | None = Field(
        None, description="The HTML training report (curves, checkpoints, resumes)."
    )
    tensorboard_uri: str | None = Field(
        None, description="The run's TensorBoard event files (tensorboard --logdir)."
    )
    mlflow: MlflowRun | None = Field(None, description="The MLflow run (spec.tracking.mlflow).")
    publish: list[PublishTargetStatus] | None = Field(
        None, description="Each spec.publish target of the current run."
    )
