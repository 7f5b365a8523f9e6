"""Pure planners: (resource, observed world, operator config) -> children, status, events.

No I/O, no kopf, no Kubernetes client, no torch. The kopf controllers and the local runtime
(`kubetune run`) build an :class:`ObservedWorld`, call :func:`plan`, and apply the :class:`Plan`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetune.api.kinds import per_kind
from kubetune.api.resources import AnyResource
from kubetune.plan.compression import plan_compression
from kubetune.plan.dataset import plan_dataset
from kubetune.plan.evaluation import plan_evaluation
from kubetune.plan.feedback import plan_feedback
from kubetune.plan.finetune import plan_finetune
from kubetune.plan.observe import observe_job, observe_pod
from kubetune.plan.publish import without_publish_jobs
from kubetune.plan.publish_loop import add_publish
from kubetune.plan.refs import referenced_config_maps, referenced_resources
from kubetune.plan.serving import add_run_serving
from kubetune.plan.world import (
    Event,
    ObservedJob,
    ObservedPod,
    ObservedWorld,
    OperatorConfig,
    Plan,
)

# (resource of the kind, observed world, operator config) -> plan
Planner = Callable[[Any, ObservedWorld, OperatorConfig], Plan]

# The plan layer's registration: one planner per kind of kubetune.api.kinds.
PLANNERS: dict[str, Planner] = per_kind(
    "kubetune.plan.PLANNERS",
    {
        "Dataset": plan_dataset,
        "FinetuneJob": plan_finetune,
        "Compression": plan_compression,
        "Evaluation": plan_evaluation,
        "FeedbackLoop": plan_feedback,
    },
)


def plan(resource: AnyResource, world: ObservedWorld, config: OperatorConfig) -> Plan:
    """Plan one resource: the children to create, the status to write, the events to emit."""
    # publish Jobs (spec.publish: MLflow, OCI, Hub) are planned beside the kind's own
    planned = PLANNERS[resource.kind](resource, without_publish_jobs(world), config)
    planned = add_publish(resource, world, config, planned)
    return add_run_serving(resource, world, config, planned)  # spec.publish.kserve


__all__ = [
    "PLANNERS",
    "Event",
    "ObservedJob",
    "ObservedPod",
    "ObservedWorld",
    "OperatorConfig",
    "Plan",
    "Planner",
    "observe_job",
    "observe_pod",
    "plan",
    "referenced_config_maps",
    "referenced_resources",
]
