"""The `Evaluation` kind: real-world prompt sets, metrics, baseline comparison, gates, probes."""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

from pydantic import Field, field_validator

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.common import (
    ARTIFACT_SCHEMES,
    ArtifactRef,
    ArtifactURI,
    CommonStatus,
    DatasetRef,
    ResourceName,
    RunSettings,
    SecretRef,
    check_uri,
)

MetricName = Literal[
    "perplexity",
    "exactMatch",
    "contains",
    "regex",
    "tokenF1",
    "rouge1",
    "rouge2",
    "rougeL",
    "bleu",
    "chrf",
    "length",
    "latency",
    "tokensPerSecond",
    "judge",
    "offensiveRate",
    "preferenceAccuracy",
    "winRate",
]
METRIC_NAMES: tuple[str, ...] = get_args(MetricName)


class ChatMessage(KubeModel):
    """One chat turn."""

    role: Literal["system", "user", "assistant"] = Field(description="Speaker.")
    content: str = Field(description="Text of the turn.")


class PromptCase(KubeModel):
    """One evaluation case."""

    id: str | None = Field(None, description="Stable case id (default: its index).")
    prompt: str | None = Field(None, description="Plain prompt.")
    messages: list[ChatMessage] | None = Field(
        None, description="Chat prompt, rendered with the model's chat template."
    )
    expected: str | None = Field(None, description="Expected answer (exactMatch, contains...).")
    references: list[str] | None = Field(None, description="Reference answers (ROUGE, BLEU...).")
    pattern: str | None = Field(None, description="Regex the output must match (regex metric).")
    tags: list[str] | None = Field(None, description="Task tags for per-tag breakdowns.")
    metrics: list[MetricName] | None = Field(
        None, description="Metrics for this case only (overrides spec.metrics)."
    )

    __cel_rules__ = (
        {
            "rule": "has(self.prompt) != has(self.messages)",
            "message": "set exactly one of prompt or messages",
        },
    )


class ConfigMapPrompts(KubeModel):
    """Prompt cases (JSONL) stored in a ConfigMap key."""

    name: ResourceName = Field(description="ConfigMap name, same namespace.")
    key: str = Field("prompts.jsonl", description="Key holding JSONL prompt cases.")


class PromptSources(KubeModel):
    """Where the prompt cases come from; several sources are concatenated."""

    inline: list[PromptCase] | None = Field(
        None, min_length=1, max_length=10000, description="Cases written in the manifest."
    )
    config_map: ConfigMapPrompts | None = Field(None, description="Cases in a ConfigMap.")
    dataset: DatasetRef | None = Field(
        None, description="A Dataset whose validation split provides the cases."
    )
    uri: ArtifactURI | None = Field(None, description="A JSONL file of cases.")
    limit: int | None = Field(None, ge=1, description="Use at most this many cases.")

    __cel_rules__ = (
        {
            "rule": "has(self.inline) || has(self.configMap) || has(self.dataset) || has(self.uri)",
            "message": "give at least one prompt source: inline, configMap, dataset or uri",
        },
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        return None if v is None else check_uri(v, ARTIFACT_SCHEMES)


class MetricSpec(KubeModel):
    """A metric with its options."""

    name: MetricName = Field(description="Metric name.")
    normalize: bool = Field(
        True, description="exactMatch/contains/tokenF1: lowercase, strip punctuation and articles."
    )


class GenerationSpec(KubeModel):
    """How outputs are generated."""

    max_new_tokens: int = Field(64, ge=1, le=32768, description="Tokens generated per case.")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    temperature: float = Field(1.0, gt=0, le=10, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    seed: int = Field(0, ge=0, description="Seed for sampling.")
    stop: list[str] | None = Field(None, description="Stop strings.")
    batch_size: int = Field(16, ge=1, le=1024, description="Prompts generated together.")


class JudgeSpec(KubeModel):
    """An OpenAI-compatible chat endpoint that grades outputs with a rubric."""

    url: str = Field(
        description="Base URL, e.g. https://api.openai.com/v1.", pattern=r"^https?://\S+$"
    )
    model: str = Field(description="Judge model name.")
    api_key: SecretRef | None = Field(None, description="Secret holding the API key.")
    rubric: str = Field(
        "Rate how well the answer responds to the prompt, from 1 (useless) to 10 (perfect).",
        description="Grading instructions; the judge answers with a score.",
    )
    timeout_seconds: float = Field(30, gt=0, le=600, description="Per-request timeout.")
    max_retries: int = Field(3, ge=0, le=10, description="Retries on errors and 429.")
    requests_per_second: float = Field(2, gt=0, le=1000, description="Client-side rate limit.")


class TermPair(KubeModel):
    """Two terms swapped to build counterfactual prompts."""

    a: str = Field(min_length=1, description="First term, e.g. he.")
    b: str = Field(min_length=1, description="Second term, e.g. she.")


class BiasProbe(KubeModel):
    """Counterfactual pairs: prompts containing a term are re-asked with its counterpart."""

    name: str = Field(min_length=1, description="Probe name, e.g. gender.")
    groups: tuple[str, str] = Field(("a", "b"), description="Group labels of a and b terms.")
    pairs: list[TermPair] = Field(min_length=1, description="Term pairs to swap.")
    prompts: list[str] | None = Field(
        None, description="Extra template prompts; otherwise prompt cases containing a term."
    )
    max_score_gap: float | None = Field(
        None, ge=0, description="Fail the probe when group scores differ by more than this."
    )


class Gate(KubeModel):
    """A pass/fail rule on an aggregate metric."""

    metric: MetricName = Field(description="Metric to gate on.")
    min: float | None = Field(None, description="Candidate score must be at least this.")
    max: float | None = Field(None, description="Candidate score must be at most this.")
    max_regression: float | None = Field(
        None,
        ge=0,
        description="Candidate may be worse than the baseline by at most this (absolute).",
    )

    __cel_rules__ = (
        {
            "rule": "has(self.min) || has(self.max) || has(self.maxRegression)",
            "message": "a gate needs min, max or maxRegression",
        },
    )


class EvaluationTemplate(RunSettings):
    """An Evaluation without candidate and baseline (used by FeedbackLoop)."""

    prompts: PromptSources = Field(description="Prompt cases.")
    metrics: list[MetricSpec] = Field(
        min_length=1, max_length=32, description="Metrics computed on every case."
    )
    perplexity_data: DatasetRef | None = Field(
        None, description="Dataset whose validation split gives perplexity."
    )
    preference_data: DatasetRef | None = Field(
        None,
        description="Dataset (schema preference) whose validation split gives held-out pairs "
        "for preferenceAccuracy.",
    )
    generation: GenerationSpec = Field(default_factory=GenerationSpec, description="Decoding.")
    judge: JudgeSpec | None = Field(None, description="Judge endpoint for the judge metric.")
    bias_probes: list[BiasProbe] | None = Field(None, description="Counterfactual probes.")
    gates: list[Gate] | None = Field(None, description="Pass/fail rules.")
    max_skipped_ratio: float | None = Field(
        None,
        ge=0,
        le=1,
        description="A gate on the share of cases left out of the verdict (skipped by the "
        "candidate or, with a baseline, by either model: verdicts use only paired cases).",
    )
    bootstrap_samples: int = Field(
        1000, ge=0, le=100000, description="Bootstrap resamples for confidence intervals."
    )

    __cel_rules__: ClassVar[tuple[CelRule, ...]] = (
        {
            "rule": "!self.metrics.exists(m, m.name == 'judge') || has(self.judge)",
            "message": "the judge metric needs a judge endpoint",
            "fieldPath": ".judge",
        },
        {
            "rule": "!self.metrics.exists(m, m.name == 'perplexity') || has(self.perplexityData)",
            "message": "the perplexity metric needs perplexityData",
            "fieldPath": ".perplexityData",
        },
        {
            "rule": "!self.metrics.exists(m, m.name == 'preferenceAccuracy') "
            "|| has(self.preferenceData)",
            "message": "the preferenceAccuracy metric needs preferenceData",
            "fieldPath": ".preferenceData",
        },
        {
            "rule": "!self.metrics.exists(m, m.name == 'winRate') || has(self.judge)",
            "message": "the winRate metric needs a judge endpoint",
            "fieldPath": ".judge",
        },
    )


class EvaluationSpec(EvaluationTemplate):
    """Desired state of an Evaluation."""

    candidate: ArtifactRef = Field(description="The model under evaluation.")
    baseline: ArtifactRef | None = Field(None, description="The model to compare against.")

    __cel_rules__ = (
        *EvaluationTemplate.__cel_rules__,
        {
            "rule": "!has(self.gates) || !self.gates.exists(g, has(g.maxRegression)) "
            "|| has(self.baseline)",
            "message": "maxRegression gates need a baseline",
            "fieldPath": ".baseline",
        },
        {
            "rule": "!self.metrics.exists(m, m.name == 'winRate') || has(self.baseline)",
            "message": "the winRate metric needs a baseline to compare with",
            "fieldPath": ".baseline",
        },
    )


class EvaluationStatus(CommonStatus):
    """Observed state of an Evaluation."""

    passed: bool | None = Field(None, description="Whether every gate passed.")
    failed_gates: list[str] | None = Field(None, description="Gates that failed.")
    report_uri: str | None = Field(None, description="The HTML report.")
