"""One valid and one invalid object for every CEL rule of the typed API.

Shared by the model tests (pydantic evaluates the rules) and the CRD tests (the same rules
evaluated at their node of the generated schema). ``message`` names the rule; each invalid
object breaks that rule and only that rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.api.common import ArtifactRef, DatasetRef, Resources
from kubetune.api.compression import CompressionStep, CompressionTemplate
from kubetune.api.dataset import Balance, Cleaning, DatasetSpec, TokenizerSpec
from kubetune.api.evaluation import EvaluationSpec, Gate, PromptCase, PromptSources
from kubetune.api.feedback import (
    FeedbackLoopSpec,
    FeedbackPreference,
    ObjectTarget,
    Promotion,
    Triggers,
)
from kubetune.api.finetune import (
    Architecture,
    FinetuneJobSpec,
    Hyperparameters,
    ModelSource,
    TrainingSettings,
)
from kubetune.api.publish import MlflowCredentials
from kubetune.api.scheduling import NodeSelectorRequirement, Toleration
from kubetune.api.serving import KServeLora, KServeTarget
from pydantic import BaseModel


@dataclass(frozen=True)
class CelCase:
    """A rule (by message), the model owning it, and a valid and an invalid wire object."""

    model: type[BaseModel]
    message: str
    valid: dict[str, Any]
    invalid: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.model.__name__}: {self.message}"


FT = {"model": {"base": {"uri": "hf://org/model"}}, "dataset": {"name": "corpus"}}
EV = {
    "candidate": {"kind": "FinetuneJob", "name": "ft"},
    "prompts": {"inline": [{"prompt": "2+2?", "expected": "4"}]},
    "metrics": [{"name": "exactMatch"}],
}
STEPS = {"steps": [{"quantize": {"bits": 8}}]}
JUDGE = {"url": "https://judge.example.com/v1", "model": "grader"}
TARGET = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "fieldPath": "spec.x"}
LOOP = {
    "feedback": {"uri": "s3://bucket/feedback/"},
    "champion": {"uri": "s3://bucket/models/v1"},
    "finetune": {"method": "full"},
    "evaluation": {
        **{k: v for k, v in EV.items() if k != "candidate"},
        "gates": [{"metric": "exactMatch", "min": 0.5}],
    },
    "triggers": {"minNewRecords": 10},
}
LLAMA = {"family": "llama", "hiddenSize": 64, "heads": 4}

CEL_CASES: tuple[CelCase, ...] = (
    CelCase(
        ArtifactRef,
        "set either uri, or kind and name",
        {"uri": "s3://bucket/model"},
        {"uri": "s3://bucket/model", "kind": "FinetuneJob", "name": "ft"},
    ),
    CelCase(
        ArtifactRef,
        "kind and name must be set together",
        {"kind": "FinetuneJob", "name": "ft"},
        {"name": "ft"},
    ),
    CelCase(
        ArtifactRef,
        "cross-namespace references are not allowed",
        {"kind": "Compression", "name": "c"},
        {"kind": "Compression", "name": "c", "namespace": "other"},
    ),
    CelCase(
        DatasetRef,
        "set exactly one of name or uri",
        {"uri": "file:///data/prepared"},
        {"name": "corpus", "uri": "file:///data/prepared"},
    ),
    CelCase(
        DatasetRef,
        "cross-namespace references are not allowed",
        {"name": "corpus"},
        {"name": "corpus", "namespace": "other"},
    ),
    CelCase(
        KServeTarget,
        "minReplicas must not exceed maxReplicas",
        {"minReplicas": 2, "maxReplicas": 2},
        {"minReplicas": 3, "maxReplicas": 2},
    ),
    CelCase(
        KServeLora,
        "extra module names must be unique",
        {"extraModules": [{"name": "a", "uri": "s3://b/a"}, {"name": "b", "uri": "s3://b/b"}]},
        {"extraModules": [{"name": "a", "uri": "s3://b/a"}, {"name": "a", "uri": "s3://b/b"}]},
    ),
    CelCase(
        Resources,
        "multi-node jobs need gpus or cpu set per node",
        {"nodes": 2, "gpus": 8},
        {"nodes": 2},
    ),
    CelCase(
        Cleaning,
        "minChars must not exceed maxChars",
        {"minChars": 10, "maxChars": 10},
        {"minChars": 11, "maxChars": 10},
    ),
    CelCase(
        Cleaning,
        "minWords must not exceed maxWords",
        {"minWords": 1, "maxWords": 500},
        {"minWords": 600, "maxWords": 500},
    ),
    CelCase(
        Balance,
        "set exactly one of field or termGroups",
        {"termGroups": {"f": ["she"], "m": ["he"]}},
        {"field": "topic", "termGroups": {"f": ["she"]}},
    ),
    CelCase(
        Balance,
        "rebalance needs targets",
        {"field": "topic", "rebalance": True, "targets": {"billing": 0.5}},
        {"field": "topic", "rebalance": True},
    ),
    CelCase(
        TokenizerSpec,
        "set at most one of model or train",
        {"train": {"type": "char"}},
        {"train": {"type": "char"}, "model": {"uri": "hf://org/model"}},
    ),
    CelCase(
        Architecture,
        "transformer architectures need heads",
        {"family": "gru", "hiddenSize": 64},
        {"family": "llama", "hiddenSize": 64},
    ),
    CelCase(
        Architecture,
        "hiddenSize must be divisible by heads",
        LLAMA,
        {**LLAMA, "heads": 5},
    ),
    CelCase(
        Architecture,
        "heads must be divisible by kvHeads",
        {**LLAMA, "kvHeads": 2},
        {**LLAMA, "kvHeads": 3},
    ),
    CelCase(
        ModelSource,
        "set exactly one model source",
        {"from": {"kind": "FinetuneJob", "name": "earlier"}},
        {"base": {"uri": "hf://org/model"}, "architecture": LLAMA},
    ),
    CelCase(
        Hyperparameters,
        "set epochs or maxSteps",
        {"maxSteps": 100},
        {"learningRate": 0.001},
    ),
    CelCase(
        Hyperparameters,
        "set at most one of warmupRatio or warmupSteps",
        {"epochs": 1, "warmupSteps": 10},
        {"epochs": 1, "warmupSteps": 10, "warmupRatio": 0.1},
    ),
    CelCase(
        TrainingSettings,
        "lora and qlora need lora settings",
        {"method": "full"},
        {"method": "lora"},
    ),
    CelCase(
        TrainingSettings,
        "qlora requires 4-bit quantization",
        {"method": "qlora", "lora": {"r": 16}, "quantization": {"bits": 4}},
        {"method": "qlora", "lora": {"r": 16}, "quantization": {"bits": 8}},
    ),
    CelCase(
        TrainingSettings,
        "full fine-tuning cannot train a quantized model",
        {"method": "lora", "lora": {"r": 8}, "quantization": {"bits": 8}},
        {"method": "full", "quantization": {"bits": 8}},
    ),
    CelCase(
        TrainingSettings,
        "fsdp is supported for full fine-tuning only",
        {"method": "full", "distributed": {"strategy": "fsdp"}},
        {"method": "lora", "lora": {"r": 8}, "distributed": {"strategy": "fsdp"}},
    ),
    CelCase(
        TrainingSettings,
        "objective preference needs preference settings",
        {"method": "full", "objective": "preference", "preference": {"algorithm": "dpo"}},
        {"method": "full", "objective": "preference"},
    ),
    CelCase(
        TrainingSettings,
        "preference pairs cannot be packed",
        {"method": "full", "objective": "preference", "preference": {"beta": 0.1}},
        {
            "method": "full",
            "objective": "preference",
            "preference": {"beta": 0.1},
            "hyperparameters": {"maxSteps": 1, "packing": True},
        },
    ),
    CelCase(
        MlflowCredentials,
        "set both username and password, or neither",
        {"token": {"secretKeyRef": {"name": "mlflow", "key": "token"}}},
        {"username": {"secretKeyRef": {"name": "mlflow", "key": "user"}}},
    ),
    CelCase(
        FinetuneJobSpec,
        "a model designed from scratch is trained with method full",
        {**FT, "model": {"architecture": LLAMA}, "method": "full"},
        {**FT, "model": {"architecture": LLAMA}, "method": "lora", "lora": {"r": 8}},
    ),
    CelCase(
        CompressionStep,
        "each step sets exactly one of mergeAdapter, quantize or prune",
        {"prune": {"sparsity": 0.5}},
        {},
    ),
    CelCase(
        CompressionTemplate,
        "quantize at most once",
        {"steps": [{"mergeAdapter": {}}, {"quantize": {"bits": 4}}]},
        {"steps": [{"quantize": {"bits": 8}}, {"quantize": {"bits": 4}}]},
    ),
    CelCase(
        CompressionTemplate,
        "maxPerplexityIncrease needs a dataset",
        {**STEPS, "report": {"maxPerplexityIncrease": 0.1}, "dataset": {"name": "corpus"}},
        {**STEPS, "report": {"maxPerplexityIncrease": 0.1}},
    ),
    CelCase(
        PromptCase,
        "set exactly one of prompt or messages",
        {"messages": [{"role": "user", "content": "hi"}]},
        {"expected": "hello"},
    ),
    CelCase(
        PromptSources,
        "give at least one prompt source",
        {"uri": "file:///prompts.jsonl"},
        {"limit": 10},
    ),
    CelCase(
        Gate,
        "a gate needs min, max or maxRegression",
        {"metric": "bleu", "min": 0.2},
        {"metric": "bleu"},
    ),
    CelCase(
        EvaluationSpec,
        "the judge metric needs a judge endpoint",
        {**EV, "metrics": [{"name": "judge"}], "judge": JUDGE},
        {**EV, "metrics": [{"name": "judge"}]},
    ),
    CelCase(
        EvaluationSpec,
        "the perplexity metric needs perplexityData",
        {**EV, "metrics": [{"name": "perplexity"}], "perplexityData": {"name": "corpus"}},
        {**EV, "metrics": [{"name": "perplexity"}]},
    ),
    CelCase(
        EvaluationSpec,
        "the preferenceAccuracy metric needs preferenceData",
        {**EV, "metrics": [{"name": "preferenceAccuracy"}], "preferenceData": {"name": "pairs"}},
        {**EV, "metrics": [{"name": "preferenceAccuracy"}]},
    ),
    CelCase(
        EvaluationSpec,
        "the winRate metric needs a judge endpoint",
        {**EV, "metrics": [{"name": "winRate"}], "judge": JUDGE, "baseline": {"uri": "s3://b/m"}},
        {**EV, "metrics": [{"name": "winRate"}], "baseline": {"uri": "s3://b/m"}},
    ),
    CelCase(
        EvaluationSpec,
        "the winRate metric needs a baseline to compare with",
        {**EV, "metrics": [{"name": "winRate"}], "judge": JUDGE, "baseline": {"uri": "s3://b/m"}},
        {**EV, "metrics": [{"name": "winRate"}], "judge": JUDGE},
    ),
    CelCase(
        EvaluationSpec,
        "maxRegression gates need a baseline",
        {
            **EV,
            "gates": [{"metric": "exactMatch", "maxRegression": 0.01}],
            "baseline": {"uri": "hf://org/base"},
        },
        {**EV, "gates": [{"metric": "exactMatch", "maxRegression": 0.01}]},
    ),
    CelCase(
        Triggers,
        "set at least one trigger",
        {"drift": {"metric": "tokenF1", "below": 0.5}},
        {},
    ),
    CelCase(
        Promotion,
        "mode patch needs a target",
        {"mode": "patch", "target": TARGET},
        {"mode": "patch"},
    ),
    CelCase(
        Promotion,
        "approvalTimeoutSeconds needs approval: manual",
        {"approval": "manual", "approvalTimeoutSeconds": 60},
        {"approval": "auto", "approvalTimeoutSeconds": 60},
    ),
    CelCase(
        ObjectTarget,
        "must not go through a list",
        TARGET,
        {**TARGET, "fieldPath": "spec.template.spec.containers.0.image"},
    ),
    CelCase(
        Toleration,
        "operator must be Exists when `key` is empty",
        {"operator": "Exists"},
        {"operator": "Equal", "value": "x"},
    ),
    CelCase(
        Toleration,
        "value must be empty when `operator` is 'Exists'",
        {"key": "gpu", "operator": "Exists"},
        {"key": "gpu", "operator": "Exists", "value": "x"},
    ),
    CelCase(
        Toleration,
        "effect must be 'NoExecute' when `tolerationSeconds` is set",
        {"key": "gpu", "effect": "NoExecute", "tolerationSeconds": 30},
        {"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 30},
    ),
    CelCase(
        NodeSelectorRequirement,
        "must be specified when `operator` is 'In' or 'NotIn'",
        {"key": "zone", "operator": "In", "values": ["a"]},
        {"key": "zone", "operator": "In"},
    ),
    CelCase(
        NodeSelectorRequirement,
        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        {"key": "zone", "operator": "Exists"},
        {"key": "zone", "operator": "Exists", "values": ["a"]},
    ),
    CelCase(
        NodeSelectorRequirement,
        "must be specified single value when `operator` is 'Lt' or 'Gt'",
        {"key": "cores", "operator": "Gt", "values": ["8"]},
        {"key": "cores", "operator": "Gt", "values": ["eight"]},
    ),
    CelCase(
        DatasetSpec,
        "a Dataset scales out with parallelism (map pods); resources.nodes must stay 1 when "
        "parallelism is above 1",
        {"sources": [{"uri": "s3://b/d.jsonl"}], "parallelism": 4, "resources": {"cpu": "2"}},
        {
            "sources": [{"uri": "s3://b/d.jsonl"}],
            "parallelism": 4,
            "resources": {"nodes": 2, "cpu": "2"},
        },
    ),
    CelCase(
        FeedbackLoopSpec,
        "the evaluation needs gates",
        {**LOOP, "baseDataset": {"name": "tickets"}},
        {
            **LOOP,
            "baseDataset": {"name": "tickets"},
            "evaluation": {**LOOP["evaluation"], "gates": []},
        },
    ),
    CelCase(
        FeedbackLoopSpec,
        "spec.finetune is the supervised stage of a cycle",
        {**LOOP, "baseDataset": {"name": "tickets"}},
        {
            **LOOP,
            "baseDataset": {"name": "tickets"},
            "finetune": {
                **LOOP["finetune"],
                "objective": "preference",
                "preference": {"algorithm": "dpo"},
            },
        },
    ),
    CelCase(
        FeedbackLoopSpec,
        "a paired algorithm (dpo, ipo, orpo, simpo) needs preference pairs",
        {
            **LOOP,
            "baseDataset": {"name": "tickets"},
            "feedback": {**LOOP["feedback"], "fields": {"chosen": "", "rejected": ""}},
            "training": {"preference": {"algorithm": "kto"}},
        },
        {
            **LOOP,
            "baseDataset": {"name": "tickets"},
            "feedback": {
                **LOOP["feedback"],
                "fields": {"chosen": "", "rejected": "", "correction": ""},
            },
            "training": {"preference": {"algorithm": "dpo"}},
        },
    ),
    CelCase(
        FeedbackLoopSpec,
        "a preference stage needs pairs (feedback.fields.chosen and rejected, or correction) or "
        "ratings",
        {
            **LOOP,
            "baseDataset": {"name": "tickets"},
            "feedback": {**LOOP["feedback"], "fields": {"chosen": "", "correction": ""}},
            "training": {"preference": {"algorithm": "auto"}},
        },
        {
            **LOOP,
            "baseDataset": {"name": "tickets"},
            "feedback": {
                **LOOP["feedback"],
                "fields": {"chosen": "", "correction": "", "rating": ""},
            },
            "training": {"preference": {"algorithm": "auto"}},
        },
    ),
    CelCase(
        FeedbackPreference,
        "preference pairs cannot be packed",
        {"algorithm": "dpo", "hyperparameters": {"maxSteps": 5, "packing": False}},
        {"algorithm": "dpo", "hyperparameters": {"maxSteps": 5, "packing": True}},
    ),
)

# The field-level rule of ArtifactURI / SourceURI (a string node in the CRDs).
URI_RULE_MESSAGE = "must not contain a '..' path segment"
URI_VALID = "s3://bucket/models/v1..final/weights"
URI_INVALID = "s3://bucket/models/../secrets"


def case_for(message: str) -> CelCase:
    """The case whose rule message starts with ``message``'s beginning."""
    for case in CEL_CASES:
        if message.startswith(case.message):
            return case
    raise KeyError(message)
