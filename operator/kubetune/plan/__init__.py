"""Pure planners: (resource, observed world, operator config) -> children, status, events.

No I/O, no kopf, no Kubernetes client, no torch. The kopf controllers and the local runtime
(`kubetune run`) build an :class:`ObservedWorld`, call :func:`plan`, and apply the :class:`Plan`.
"""

from __future__ import annotations

from kubetune.api.resources import AnyResource, Compression, Dataset, Evaluation, FinetuneJob
from kubetune.plan.compression import plan_compression
from kubetune.plan.dataset import plan_dataset
from kubetune.plan.evaluation import plan_evaluation
from kubetune.plan.feedback import plan_feedback
from kubetune.plan.finetune import plan_finetune
from kubetune.plan.observe import observe_job, observe_pod
from kubetune.plan.refs import referenced_config_maps, referenced_resources
from kubetune.plan.world import (
    Event,
    ObservedJob,
    ObservedPod,
    ObservedWorld,
    OperatorConfig,
    Plan,
)


def plan(resource: AnyResource, world: ObservedWorld, config: OperatorConfig) -> Plan:
    """Plan one resource: the children to create, the status to write, the events to emit."""
    if isinstance(resource, Dataset):
        return plan_dataset(resource, world, config)
    if isinstance(resource, FinetuneJob):
        return plan_finetune(resource, world, config)
    if isinstance(resource, Compression):
        return plan_compression(resource, world, config)
    if isinstance(resource, Evaluation):
        return plan_evaluation(resource, world, config)
    return plan_feedback(resource, world, config)


__all__ = [
    "Event",
    "ObservedJob",
    "ObservedPod",
    "ObservedWorld",
    "OperatorConfig",
    "Plan",
    "observe_job",
    "observe_pod",
    "plan",
    "referenced_config_maps",
    "referenced_resources",
]
