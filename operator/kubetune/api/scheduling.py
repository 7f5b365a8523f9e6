"""core/v1 Affinity and Toleration, typed, with kube-apiserver's pod validation as CEL rules.

These fields are copied into the pod template of every Job; a value the API server would refuse
there (an unknown operator, values with ``Exists``, ``tolerationSeconds`` without
``NoExecute``...) is rejected when the resource is applied instead of failing the Job's create.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.kube import DNSLabel, LabelMap, LabelValue, QualifiedName

# --- tolerations --------------------------------------------------------------------------


class Toleration(KubeModel):
    """A Kubernetes toleration (same fields and rules as core/v1 Toleration)."""

    key: QualifiedName | None = Field(
        None, description="Taint key the toleration applies to; empty matches every key."
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        None, description="Exists or Equal (default Equal)."
    )
    value: LabelValue | None = Field(None, description="Taint value for the Equal operator.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        None, description="For NoExecute: how long the pod stays bound after the taint appears."
    )

    __cel_rules__ = (
        {
            "rule": "has(self.key) && self.key != '' || "
            "(has(self.operator) && self.operator == 'Exists')",
            "message": "operator must be Exists when `key` is empty, which means "
            '"match all values and all keys"',
            "fieldPath": ".operator",
        },
        {
            "rule": "!has(self.operator) || self.operator != 'Exists' || "
            "!has(self.value) || self.value == ''",
            "message": "value must be empty when `operator` is 'Exists'",
            "fieldPath": ".value",
        },
        {
            "rule": "!has(self.tolerationSeconds) || "
            "(has(self.effect) && self.effect == 'NoExecute')",
            "message": "effect must be 'NoExecute' when `tolerationSeconds` is set",
            "fieldPath": ".effect",
        },
    )


# --- node affinity ------------------------------------------------------------------------

NodeSelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]

_VALUES_RULES: tuple[CelRule, ...] = (
    {
        "rule": "!(self.operator in ['In', 'NotIn']) || "
        "(has(self.values) && size(self.values) > 0)",
        "message": "must be specified when `operator` is 'In' or 'NotIn'",
        "fieldPath": ".values",
    },
    {
        "rule": "!(self.operator in ['Exists', 'DoesNotExist']) || "
        "!has(self.values) || size(self.values) == 0",
        "message": "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        "fieldPath": ".values",
    },
)


class NodeSelectorRequirement(KubeModel):
    """A node label requirement (core/v1 NodeSelectorRequirement)."""

    key: QualifiedName = Field(description="The label key.")
    operator: NodeSelectorOperator = Field(description="In, NotIn, Exists, DoesNotExist, Gt or Lt.")
    values: list[str] | None = Field(
        None,
        max_length=64,
        description="Values: non-empty for In/NotIn, empty for Exists/DoesNotExist, "
        "one integer for Gt/Lt.",
    )

    __cel_rules__: ClassVar[tuple[CelRule, ...]] = (
        *_VALUES_RULES,
        {
            "rule": "!(self.operator in ['Gt', 'Lt']) || (has(self.values) && "
            "size(self.values) == 1 && self.values[0].matches('^-?[0-9]+$'))",
            "message": "must be specified single value when `operator` is 'Lt' or 'Gt', "
            "and it must be an integer",
            "fieldPath": ".values",
        },
    )


class NodeSelectorFieldRequirement(KubeModel):
    """A node field requirement: only ``metadata.name`` with In/NotIn and one value."""

    key: Literal["metadata.name"] = Field(description="The only supported field: metadata.name.")
    operator: Literal["In", "NotIn"] = Field(description="In or NotIn.")
    values: list[str] = Field(min_length=1, max_length=1, description="Exactly one node name.")


class NodeSelectorTerm(KubeModel):
    """Requirements that must all hold (core/v1 NodeSelectorTerm)."""

    match_expressions: list[NodeSelectorRequirement] | None = Field(
        None, max_length=16, description="Requirements on node labels."
    )
    match_fields: list[NodeSelectorFieldRequirement] | None = Field(
        None, max_length=4, description="Requirements on node fields."
    )


class NodeSelector(KubeModel):
    """Terms of which at least one must hold (core/v1 NodeSelector)."""

    node_selector_terms: list[NodeSelectorTerm] = Field(
        min_length=1, max_length=8, description="ORed terms; must be non-empty."
    )


class PreferredSchedulingTerm(KubeModel):
    """A weighted preference (core/v1 PreferredSchedulingTerm)."""

    weight: int = Field(ge=1, le=100, description="Weight, in the range 1-100.")
    preference: NodeSelectorTerm = Field(description="The preferred node selector term.")


class NodeAffinity(KubeModel):
    """core/v1 NodeAffinity."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        None, description="Hard requirement."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = (
        Field(None, max_length=16, description="Soft preferences.")
    )


# --- pod affinity -------------------------------------------------------------------------


class LabelSelectorRequirement(KubeModel):
    """A label selector requirement (meta/v1 LabelSelectorRequirement)."""

    key: QualifiedName = Field(description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[LabelValue] | None = Field(
        None, max_length=64, description="Values: non-empty for In/NotIn, else empty."
    )

    __cel_rules__ = _VALUES_RULES


class LabelSelector(KubeModel):
    """meta/v1 LabelSelector."""

    match_labels: LabelMap | None = Field(None, description="Labels that must match exactly.")
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        None, max_length=16, description="Requirements that must all hold."
    )


class PodAffinityTerm(KubeModel):
    """core/v1 PodAffinityTerm."""

    label_selector: LabelSelector | None = Field(None, description="Pods to (anti-)co-locate with.")
    namespace_selector: LabelSelector | None = Field(None, description="Namespaces of the pods.")
    namespaces: list[DNSLabel] | None = Field(
        None, max_length=256, description="Namespaces of the pods (default: the pod's own)."
    )
    topology_key: QualifiedName = Field(
        description="Node label whose value defines co-location, e.g. kubernetes.io/hostname."
    )
    match_label_keys: list[QualifiedName] | None = Field(
        None, max_length=64, description="Pod label keys merged into labelSelector."
    )
    mismatch_label_keys: list[QualifiedName] | None = Field(
        None, max_length=64, description="Pod label keys merged into labelSelector as NotIn."
    )


class WeightedPodAffinityTerm(KubeModel):
    """core/v1 WeightedPodAffinityTerm."""

    weight: int = Field(ge=1, le=100, description="Weight, in the range 1-100.")
    pod_affinity_term: PodAffinityTerm = Field(description="The term.")


class PodAffinity(KubeModel):
    """core/v1 PodAffinity (and PodAntiAffinity: same fields)."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = Field(
        None, max_length=16, description="Hard requirements."
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = (
        Field(None, max_length=16, description="Soft preferences.")
    )


class Affinity(KubeModel):
    """core/v1 Affinity, copied to the pod spec."""

    node_affinity: NodeAffinity | None = Field(None, description="Node affinity.")
    pod_affinity: PodAffinity | None = Field(None, description="Pod affinity.")
    pod_anti_affinity: PodAffinity | None = Field(None, description="Pod anti-affinity.")
