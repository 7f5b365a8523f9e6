"""Resolve references to other kubetune resources into artifact URIs, or say why not yet.

A reference is ready when the referenced resource's done condition (``Ready`` for a Dataset,
``Succeeded`` for a FinetuneJob or Compression) is True for its *current* generation and its
status names an output URI. Anything else is a :class:`Wait` with a CamelCase reason
(``DatasetNotFound``, ``DatasetNotReady``, ``DatasetFailed``, ``ModelNotFound``...): a
condition, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubetune.api.common import ArtifactRef, DatasetNameRef, DatasetRef, condition
from kubetune.api.kinds import KIND_INFO, per_kind
from kubetune.api.resources import AnyResource, Evaluation
from kubetune.api.steps import InputArtifact
from kubetune.plan.world import ObservedWorld


@dataclass(frozen=True)
class Wait:
    """A dependency that is not usable yet."""

    reason: str
    message: str
    failed: bool = False  # the dependency failed: a Warning, and it needs the user


def _noun(kind: str) -> str:
    return "Dataset" if kind == "Dataset" else "Model"


def resolve_resource(kind: str, name: str, world: ObservedWorld, role: str) -> InputArtifact | Wait:
    """The output of ``kind/name`` if it is done for its current generation, else a Wait."""
    noun = _noun(kind)
    found = world.resources.get((kind, name))
    if found is None:
        return Wait(f"{noun}NotFound", f"{role} {kind}/{name} does not exist")
    done_type = KIND_INFO[kind].done_condition
    status = found.status
    if status is None:
        return Wait(f"{noun}NotReady", f"{role} {kind}/{name} has not started yet")
    current = status.observed_generation == found.generation
    done = condition(status.conditions, done_type)
    done_now = done is not None and (done.observed_generation or status.observed_generation) == (
        found.generation
    )
    if current and status.phase == "Failed":
        detail = f": {done.reason}: {done.message}" if done is not None else ""
        return Wait(f"{noun}Failed", f"{role} {kind}/{name} failed{detail}", failed=True)
    if done is None or done.status != "True" or not done_now or not status.output_uri:
        phase = status.phase if current and status.phase else "not reconciled yet"
        return Wait(f"{noun}NotReady", f"{role} {kind}/{name} is not {done_type} ({phase})")
    return InputArtifact(uri=status.output_uri, content_hash=status.artifact_hash)


def resolve_dataset(ref: DatasetRef, world: ObservedWorld, role: str) -> InputArtifact | Wait:
    """A dataset reference: a Dataset by name, or a prepared dataset artifact URI."""
    if ref.uri is not None:
        return InputArtifact(uri=ref.uri)
    assert ref.name is not None  # the model's CEL rule sets exactly one of name or uri
    return resolve_resource("Dataset", ref.name, world, role)


def resolve_model(ref: ArtifactRef, world: ObservedWorld, role: str) -> InputArtifact | Wait:
    """A model reference: a URI, or the output of a FinetuneJob or Compression."""
    if ref.uri is not None:
        return InputArtifact(uri=ref.uri)
    assert ref.kind is not None and ref.name is not None  # enforced by the model's CEL rules
    return resolve_resource(ref.kind, ref.name, world, role)


def combine_waits(waits: list[Wait]) -> Wait | None:
    """One Wait for several unready dependencies: a failure first, all messages joined."""
    if not waits:
        return None
    first = next((w for w in waits if w.failed), waits[0])
    message = "; ".join(w.message for w in waits)
    return Wait(first.reason, message, failed=first.failed)


# The plan layer's registration of dependencies: per kind, the spec fields (python attribute
# paths) whose DatasetRef/DatasetNameRef/ArtifactRef names a resource the kind waits for and is
# woken by. tests/unit/test_kind_registry.py finds every reference field of every spec and fails
# when one is neither here nor in CHILD_TEMPLATE_FIELDS.
DEPENDENCY_FIELDS: dict[str, tuple[str, ...]] = per_kind(
    "kubetune.plan.refs.DEPENDENCY_FIELDS",
    {
        "Dataset": ("tokenizer.model",),
        "FinetuneJob": ("dataset", "model.from_"),
        "Compression": ("model", "dataset"),
        "Evaluation": (
            "candidate",
            "baseline",
            "prompts.dataset",
            "perplexity_data",
            "preference_data",
        ),
        "FeedbackLoop": ("base_dataset", "champion"),
    },
)
# Spec fields that are templates of child resources: their references are the children's
# dependencies, not the parent's.
CHILD_TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {"FeedbackLoop": ("compression", "evaluation")}


def _field(spec: object, path: str) -> object:
    value = spec
    for part in path.split("."):
        if value is None:
            return None
        value = getattr(value, part)
    return value


def referenced_resources(resource: AnyResource) -> set[tuple[str, str]]:
    """(kind, name) of every kubetune resource this one depends on (for watches/indexes)."""
    found: set[tuple[str, str]] = set()
    for path in DEPENDENCY_FIELDS[resource.kind]:
        ref = _field(resource.spec, path)
        if isinstance(ref, DatasetRef | DatasetNameRef) and ref.name is not None:
            found.add(("Dataset", ref.name))
        elif isinstance(ref, ArtifactRef) and ref.kind is not None and ref.name is not None:
            found.add((ref.kind, ref.name))
    return found


def referenced_config_maps(resource: AnyResource) -> set[str]:
    """Names of the ConfigMaps whose data the planner needs in ``world.config_maps``."""
    if isinstance(resource, Evaluation) and resource.spec.prompts.config_map is not None:
        return {resource.spec.prompts.config_map.name}
    return set()
