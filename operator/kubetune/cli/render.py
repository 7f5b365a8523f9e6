"""`kubetune plan`: every Kubernetes object the operator would create for a set of manifests.

Dependencies defined in the same set are treated as done (their status is synthesized with the
default output URI of their first run), so a reviewer sees each Job exactly as it will run.
References to resources outside the set cannot be resolved offline: those resources render no
objects, and :func:`plan_manifests` reports why (their plan's Waiting status).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kubetune.api.common import Condition
from kubetune.api.kinds import KIND_INFO
from kubetune.api.resources import AnyResource
from kubetune.plan import plan
from kubetune.plan.naming import run_id_for
from kubetune.plan.runs import output_uri
from kubetune.plan.stages import every_stage
from kubetune.plan.world import ObservedJob, ObservedWorld, OperatorConfig, Plan

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RenderedResource:
    """One input resource and its plan against the assumed world."""

    resource: AnyResource
    plan: Plan

    @property
    def waiting(self) -> str | None:
        """Why nothing was rendered for the resource, if it waits on something outside the set."""
        if self.plan.status.get("phase") != "Waiting":
            return None
        return str(self.plan.status.get("message") or "waiting")


def assume_done(resource: AnyResource, config: OperatorConfig) -> AnyResource:
    """The resource with the status of a finished first run (Ready or Succeeded)."""
    info = KIND_INFO[resource.kind]
    generation = resource.generation
    run_id = run_id_for(generation)
    done = Condition(
        type=info.done_condition,
        status="True",
        reason="Assumed",
        message="assumed done by kubetune plan",
        observed_generation=generation,
        last_transition_time=_EPOCH,
    )
    status = info.status_model(
        phase="Ready" if info.done_condition == "Ready" else "Succeeded",
        conditions=[done],
        observed_generation=generation,
        run_id=run_id,
        output_uri=output_uri(resource, run_id, config),
    )
    return resource.model_copy(update={"status": status})


def plan_manifests(
    resources: Sequence[AnyResource],
    config: OperatorConfig,
    config_maps: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
) -> list[RenderedResource]:
    """Plan every resource, in input order, with in-set dependencies assumed done.

    ``config_maps`` maps (namespace, name) to ConfigMap data found beside the manifests (an
    Evaluation's prompts).
    """
    assumed: dict[str, dict[tuple[str, str], AnyResource]] = {}
    for resource in resources:
        key = (resource.kind, resource.name)
        assumed.setdefault(resource.namespace, {})[key] = assume_done(resource, config)
    maps = config_maps or {}
    rendered = []
    for resource in resources:
        namespace = resource.namespace
        world = ObservedWorld(
            now=_EPOCH,
            resources=assumed.get(namespace, {}),
            config_maps={name: dict(data) for (ns, name), data in maps.items() if ns == namespace},
        )
        fresh = resource.model_copy(update={"status": None})
        planned = plan(fresh, world, config)

        def replan(done: tuple[ObservedJob, ...]) -> list[dict[str, Any]]:
            return plan(fresh, replace(world, jobs=done), config).children  # noqa: B023

        # A staged run (a parallel Dataset) renders every stage's Job, in order.
        planned.children = every_stage(planned.children, replan)
        rendered.append(RenderedResource(resource, planned))
    return rendered


def render_plan(
    resources: list[AnyResource],
    config: OperatorConfig,
    config_maps: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Every object the operator would create for ``resources``, in a deterministic order."""
    return [
        child
        for item in plan_manifests(resources, config, config_maps)
        for child in item.plan.children
    ]
