"""Deterministic names, labels and owner references of the objects a run creates.

Every child of a resource is named from the resource, the step and the run id, so planning the
same run twice gives the same names and the shell's "create when absent" is idempotent.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from kubetune.api.common import API_VERSION
from kubetune.api.contract import ANNOTATION_GENERATION as ANNOTATION_GENERATION
from kubetune.api.contract import ANNOTATION_RESOURCE as ANNOTATION_RESOURCE
from kubetune.api.contract import ANNOTATION_SPEC_HASH as ANNOTATION_SPEC_HASH
from kubetune.api.contract import LABEL_KIND as LABEL_KIND
from kubetune.api.contract import LABEL_NAME as LABEL_NAME
from kubetune.api.contract import LABEL_RUN_ID as LABEL_RUN_ID
from kubetune.api.resources import AnyResource

DNS_LABEL_MAX = 63
LABEL_VALUE_MAX = 63
HASH_LEN = 6

PART_OF = "kubetune"
MANAGED_BY = "kubetune-operator"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"

_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def short_hash(text: str, length: int = HASH_LEN) -> str:
    """A short, stable hex digest of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_id_for(generation: int) -> str:
    """The run id of a generation: one run per resource generation."""
    return f"g{generation}"


def rerun_id_for(generation: int, run_hash: str) -> str:
    """The run id of a generation re-run because its inputs changed: ``g3-1a2b3c``."""
    return f"g{generation}-{run_hash[:6]}"


def generation_of_run(run_id: str) -> int | None:
    """The generation a run id was made for (``g3``, ``g3-1a2b3c`` -> 3); None for others."""
    match = re.fullmatch(r"g(\d+)(-[0-9a-f]{6})?", run_id)
    return int(match.group(1)) if match else None


def dns_label(text: str, max_len: int = DNS_LABEL_MAX, keep_suffix: str = "") -> str:
    """``text`` + ``keep_suffix`` as a DNS-1035 label (letter first) of at most ``max_len``.

    Characters other than ``[a-z0-9-]`` become ``-`` and a name that does not start with a letter
    gets a ``kt-`` prefix (Services need DNS-1035 names). When a character had to be replaced or
    the name is too long, a hash of the original keeps distinct inputs distinct.
    ``keep_suffix`` (already DNS-safe, e.g. ``-finetune-g2``) is never cut.
    """
    base = re.sub(r"[^a-z0-9-]", "-", text.lower())
    altered = base != text
    if not base[:1].isalpha():
        base = f"kt-{base}"
    name = f"{base}{keep_suffix}"
    if not altered and len(name) <= max_len:
        return name
    digest = short_hash(f"{text}{keep_suffix}")
    room = max_len - len(keep_suffix) - len(digest) - 1
    if room < 1:
        raise ValueError(f"cannot fit {keep_suffix!r} in a {max_len}-character name")
    head = base[:room].rstrip("-")
    return f"{head}-{digest}{keep_suffix}"


def label_value(text: str) -> str:
    """``text`` as a valid label value (<= 63 characters, hash-suffixed when cut)."""
    if len(text) <= LABEL_VALUE_MAX and _LABEL_VALUE.match(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    head = cleaned[: LABEL_VALUE_MAX - HASH_LEN - 1].strip("-_.")
    return f"{head}-{short_hash(text)}" if head else short_hash(text)


def job_name(resource_name: str, step: str, run_id: str, nodes: int = 1) -> str:
    """``{name}-{step}-{run_id}``, DNS-safe; room is kept for ``-{index}`` of Indexed pods."""
    max_len = DNS_LABEL_MAX if nodes <= 1 else DNS_LABEL_MAX - len(f"-{nodes - 1}")
    return dns_label(resource_name, max_len=max_len, keep_suffix=f"-{step}-{run_id}")


def spec_config_map_name(job: str) -> str:
    """The ConfigMap holding a Job's step spec."""
    return f"{job}-spec"


def labels(resource: AnyResource, step: str, run_id: str) -> dict[str, str]:
    """The labels of every child of a run."""
    return {
        "app.kubernetes.io/name": PART_OF,
        "app.kubernetes.io/component": step,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/instance": label_value(resource.name),
        LABEL_KIND: resource.kind,
        LABEL_NAME: label_value(resource.name),
        LABEL_RUN_ID: run_id,
    }


def owner_references(resource: AnyResource) -> list[dict[str, Any]]:
    """The controller reference to the resource; empty when it has no uid yet (a dry plan)."""
    if not resource.metadata.uid:
        return []
    return [
        {
            "apiVersion": API_VERSION,
            "kind": resource.kind,
            "name": resource.name,
            "uid": resource.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def child_metadata(
    resource: AnyResource, name: str, step: str, run_id: str, extra_labels: dict[str, str]
) -> dict[str, Any]:
    """metadata of a child object: name, namespace, labels, annotations, owner reference."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": resource.namespace,
        "labels": {**labels(resource, step, run_id), **extra_labels},
        "annotations": {ANNOTATION_RESOURCE: f"{resource.kind}/{resource.name}"},
    }
    owners = owner_references(resource)
    if owners:
        meta["ownerReferences"] = owners
    return meta
