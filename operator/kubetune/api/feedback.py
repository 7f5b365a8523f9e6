"""The `FeedbackLoop` kind: gather feedback, retrain, evaluate challenger vs champion, promote."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from kubetune.api.base import KubeModel
from kubetune.api.common import (
    ARTIFACT_SCHEMES,
    ArtifactRef,
    ArtifactURI,
    CommonStatus,
    Credentials,
    DatasetNameRef,
    check_uri,
)
from kubetune.api.compression import CompressionTemplate
from kubetune.api.evaluation import EvaluationTemplate, MetricName
from kubetune.api.finetune import Hyperparameters, PreferenceKnobs, TrainingSettings
from kubetune.api.publish import PublishSpec, PublishTargetStatus
from kubetune.api.serving import Rollout


class FeedbackFields(KubeModel):
    """Names of the fields in a feedback record (an empty name: the field is not used).

    A record without a named field simply lacks it; an empty name is for a column that exists
    but must be ignored (``null`` would be pruned by the API server and fall back to the default).
    """

    prompt: str = Field("prompt", description="The user's prompt.")
    response: str = Field("response", description="The model's response.")
    rating: str = Field("rating", description="A numeric rating. Empty: not used.")
    correction: str = Field("correction", description="A corrected response. Empty: not used.")
    chosen: str = Field(
        "chosen", description="Preferred response (preference pairs). Empty: not used."
    )
    rejected: str = Field("rejected", description="Rejected response. Empty: not used.")


class FeedbackSource(KubeModel):
    """Where feedback records accumulate (JSONL files under a prefix)."""

    uri: ArtifactURI = Field(description="Prefix (s3://, pvc://, file://) holding JSONL files.")
    fields: FeedbackFields = Field(default_factory=FeedbackFields, description="Field names.")
    min_rating: float | None = Field(
        None, description="Records rated below this are used only through their correction."
    )
    weight: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Sampling weight of the feedback against the base dataset's sources.",
    )
    credentials: Credentials | None = Field(
        None, description="Secrets to read the feedback (default: spec.finetune.credentials)."
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        return check_uri(v, ARTIFACT_SCHEMES)


class DriftTrigger(KubeModel):
    """Retrain when the champion's score on the evaluation falls below a threshold."""

    metric: MetricName = Field(description="Metric watched.")
    below: float = Field(description="Threshold.")


class Triggers(KubeModel):
    """When a new cycle starts (any trigger suffices)."""

    min_new_records: int | None = Field(
        None, ge=1, description="Start when this many new feedback records accumulated."
    )
    schedule: str | None = Field(
        None,
        description="Cron schedule (5 fields), e.g. '0 3 * * 1'.",
        pattern=r"^(@(hourly|daily|weekly|monthly|yearly)|(\S+\s+){4}\S+)$",
    )
    drift: DriftTrigger | None = Field(None, description="Champion-score trigger.")
    check_interval_seconds: int = Field(
        600,
        ge=30,
        le=7 * 24 * 3600,
        description="How often new records are counted (minNewRecords) and the champion is "
        "re-scored (drift).",
    )

    __cel_rules__ = (
        {
            "rule": "has(self.minNewRecords) || has(self.schedule) || has(self.drift)",
            "message": "set at least one trigger: minNewRecords, schedule or drift",
        },
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from croniter import croniter

        if not croniter.is_valid(v) or (not v.startswith("@") and len(v.split()) != 5):
            raise ValueError(f"invalid cron schedule {v!r}")
        return v


# Path segments a merge patch cannot go through: list indexes and the list fields of the
# objects a promotion usually patches (Deployments, StatefulSets, InferenceServices...).
LIST_FIELDS = (
    "[0-9]+",
    "containers",
    "initContainers",
    "ephemeralContainers",
    "env",
    "envFrom",
    "volumes",
    "volumeMounts",
    "ports",
    "args",
    "command",
    "tolerations",
    "imagePullSecrets",
    "hostAliases",
    "finalizers",
    "ownerReferences",
    "conditions",
)


class ObjectTarget(KubeModel):
    """An object whose field is patched with the champion's URI on promotion."""

    api_version: str = Field(description="apiVersion of the object, e.g. apps/v1.")
    kind: str = Field(description="Kind of the object.")
    name: str = Field(description="Name, in the same namespace.")
    field_path: str = Field(
        description="Dotted path of the field set to the model URI, e.g. "
        "spec.template.metadata.annotations.model",
        pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-/]+)*$",
        max_length=1024,
    )

    __cel_rules__ = (
        {
            "rule": "!self.fieldPath.matches('(^|[.])(" + "|".join(LIST_FIELDS) + ")([.]|$)')",
            "message": "must not go through a list (a numeric index or a list field such as "
            "containers or env): a merge patch would replace the whole list with a map",
            "fieldPath": ".fieldPath",
        },
    )


class Promotion(KubeModel):
    """What promotion does."""

    mode: Literal["status", "patch"] = Field(
        "status", description="status: record the champion only; patch: also patch a target."
    )
    target: ObjectTarget | None = Field(None, description="The object to patch.")
    approval: Literal["auto", "manual"] = Field(
        "auto",
        description="auto: a challenger that passes its gates is promoted; manual: it waits in "
        "AwaitingApproval until the annotation kubetune.dev/approve=cN promotes it or "
        "kubetune.dev/reject=cN rejects it (`kubetune approve`).",
    )
    approval_timeout_seconds: int | None = Field(
        None,
        ge=1,
        le=90 * 24 * 3600,
        description="With manual approval: a challenger not approved within this many seconds "
        "of its evaluation is rejected. Unset: it waits until approved or rejected.",
    )
    publish: PublishSpec | None = Field(
        None,
        description="Registries each cycle's challenger is published to (alias 'challenger' "
        "while it is evaluated); on promotion the alias/tag 'champion' moves to it.",
    )

    __cel_rules__ = (
        {
            "rule": "self.mode != 'patch' || has(self.target)",
            "message": "mode patch needs a target",
            "fieldPath": ".target",
        },
        {
            "rule": "!has(self.approvalTimeoutSeconds) || "
            "(has(self.approval) && self.approval == 'manual')",
            "message": "approvalTimeoutSeconds needs approval: manual (with auto a challenger "
            "that passes its gates is promoted at once; nothing waits to time out)",
            "fieldPath": ".approvalTimeoutSeconds",
        },
    )


FeedbackPreferenceAlgorithm = Literal["auto", "dpo", "ipo", "orpo", "simpo", "kto"]
PAIRED_ALGORITHMS = ("dpo", "ipo", "orpo", "simpo")


def _named(field: str) -> str:
    """CEL: the feedback field is in use (unset means its default name, not empty)."""
    return (
        f"(!has(self.feedback.fields) || !has(self.feedback.fields.{field}) "
        f"|| self.feedback.fields.{field} != '')"
    )


_PAIRS_NAMED = f"(({_named('chosen')} && {_named('rejected')}) || {_named('correction')})"
_PREFERENCE_SET = "has(self.training) && has(self.training.preference)"


class FeedbackPreference(PreferenceKnobs):
    """A preference stage fed by the cycle's pairs and ratings (TRL's DPO, IPO, ORPO, SimPO, KTO).

    Pairs are ``chosen``/``rejected`` records and corrections (the correction preferred to the
    response); ratings label a response desirable (rated at least ``feedback.minRating``, or
    above 0 when unset) or undesirable, as KTO's unpaired form.
    """

    algorithm: FeedbackPreferenceAlgorithm = Field(
        "auto",
        description="auto: dpo when the cycle collected pairs, kto when it has only ratings "
        "(thumbs up/down), no preference stage when neither; or dpo, ipo, orpo, simpo (pairs) "
        "or kto (ratings, and pairs split into a desirable and an undesirable answer).",
    )
    stage: Literal["after-sft", "instead-of-sft"] = Field(
        "after-sft",
        description="after-sft: a second FinetuneJob trains from the SFT FinetuneJob's output; "
        "instead-of-sft: the cycle trains only the preference stage, from the champion.",
    )
    hyperparameters: Hyperparameters | None = Field(
        None,
        description="The preference stage's hyperparameters (preference tuning usually wants a "
        "lower learningRate); default: spec.finetune.hyperparameters, without packing.",
    )

    __cel_rules__ = (
        {
            "rule": "!has(self.hyperparameters) || !has(self.hyperparameters.packing) "
            "|| !self.hyperparameters.packing",
            "message": "preference pairs cannot be packed; set hyperparameters.packing false",
            "fieldPath": ".hyperparameters.packing",
        },
    )


class FeedbackTraining(KubeModel):
    """How a cycle trains beyond the supervised template (``spec.finetune``)."""

    preference: FeedbackPreference | None = Field(
        None,
        description="A preference stage after (or instead of) the supervised stage, fed by the "
        "collected pairs and ratings.",
    )


class FeedbackLoopSpec(KubeModel):
    """Desired state of a FeedbackLoop."""

    feedback: FeedbackSource = Field(description="Where feedback accumulates.")
    base_dataset: DatasetNameRef = Field(
        description="The Dataset (by name) mixed with the new feedback: its schema, cleaning "
        "and safety settings are applied to the feedback too."
    )
    champion: ArtifactRef = Field(description="The model in production at the start.")
    finetune: TrainingSettings = Field(description="Template of each cycle's FinetuneJob.")
    compression: CompressionTemplate | None = Field(
        None, description="Optional Compression applied to each challenger."
    )
    evaluation: EvaluationTemplate = Field(
        description="Evaluation of challenger (candidate) vs champion (baseline); its gates decide."
    )
    training: FeedbackTraining | None = Field(
        None,
        description="Training beyond spec.finetune: a preference stage (DPO/KTO...) fed by "
        "pairs and ratings.",
    )
    triggers: Triggers = Field(description="When to start a cycle.")
    max_concurrent_runs: int = Field(1, ge=1, le=16, description="Cycles running at once.")
    promotion: Promotion = Field(default_factory=Promotion, description="On a passed evaluation.")
    history_limit: int = Field(10, ge=1, le=100, description="Cycles kept in status.history.")
    suspend: bool = Field(
        False, description="Start no new cycles (a running cycle finishes; nothing is deleted)."
    )

    __cel_rules__ = (
        {
            "rule": "has(self.evaluation.gates) && size(self.evaluation.gates) > 0",
            "message": "the evaluation needs gates: they decide whether a challenger is promoted",
            "fieldPath": ".evaluation.gates",
        },
        {
            "rule": "self.finetune.objective != 'preference'",
            "message": "spec.finetune is the supervised stage of a cycle; set preference tuning "
            "in spec.training.preference (algorithm, beta, stage), not finetune.objective",
            "fieldPath": ".finetune.objective",
        },
        {
            "rule": f"!({_PREFERENCE_SET}) || "
            "!(self.training.preference.algorithm in "
            f"{list(PAIRED_ALGORITHMS)}) || {_PAIRS_NAMED}",
            "message": "a paired algorithm (dpo, ipo, orpo, simpo) needs preference pairs: "
            "feedback.fields.chosen and rejected (or correction) must not be empty",
            "fieldPath": ".training.preference.algorithm",
        },
        {
            "rule": f"!({_PREFERENCE_SET}) || {_PAIRS_NAMED} || {_named('rating')}",
            "message": "a preference stage needs pairs (feedback.fields.chosen and rejected, or "
            "correction) or ratings (feedback.fields.rating); all of them are empty",
            "fieldPath": ".training.preference",
        },
    )


class ApprovalRequest(KubeModel):
    """A challenger that passed its gates and waits for a person (promotion.approval manual)."""

    run_id: str = Field(description="The cycle (c3): approve with kubetune.dev/approve=c3.")
    challenger: str | None = Field(None, description="URI of the model that would be promoted.")
    evaluation: str = Field(description="Name of the cycle's Evaluation.")
    report_uri: str | None = Field(None, description="The evaluation's HTML report.")
    feedback_uri: str | None = Field(
        None, description="The feedback the challenger learned from (the collected JSONL)."
    )
    results: dict[str, float] | None = Field(None, description="The evaluation's scores.")
    since: datetime | None = Field(None, description="When the evaluation passed.")
    deadline: datetime | None = Field(
        None, description="When it is rejected unless approved (promotion.approvalTimeoutSeconds)."
    )


class FeedbackLoopStatus(CommonStatus):
    """Observed state of a FeedbackLoop."""

    champion: str | None = Field(None, description="URI of the current champion (served).")
    champion_cycle: int | None = Field(
        None, description="Cycle whose challenger is the champion; unset: spec.champion."
    )
    champion_training_uri: str | None = Field(
        None, description="Model the next cycle trains from (the champion before compression)."
    )
    generation: int = Field(0, description="Cycles completed (promoted or not).")
    cycles: int = Field(0, description="Cycles started.")
    pending_records: int | None = Field(
        None, description="Feedback records that arrived since the latest cycle started."
    )
    last_cycle_time: datetime | None = Field(None, description="Start of the latest cycle.")
    last_schedule_time: datetime | None = Field(
        None, description="Latest schedule time that started (or skipped) a cycle."
    )
    last_scan_time: datetime | None = Field(None, description="When records were last counted.")
    last_manual_trigger: str | None = Field(
        None, description="The value of the kubetune.dev/trigger annotation last acted on."
    )
    drift_score: float | None = Field(
        None, description="The champion's latest score on the drift metric."
    )
    active_runs: list[str] | None = Field(None, description="Cycles running now (c1, c2...).")
    awaiting_approval: list[ApprovalRequest] | None = Field(
        None, description="Challengers that passed their gates and wait for approval."
    )
    publish: list[PublishTargetStatus] | None = Field(
        None, description="Where the champion alias stands in each promotion.publish target."
    )
    rollout: Rollout | None = Field(
        None, description="The champion's rollout to promotion.publish.kserve (canary, soak)."
    )
