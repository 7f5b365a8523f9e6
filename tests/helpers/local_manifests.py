"""Manifests the local-runtime tests share: a FeedbackLoop and objects it owns or deletes."""

from __future__ import annotations

from typing import Any

API = "kubetune.dev/v1alpha1"
LOOP_UID = "local-feedbackloop-loop"
OWNER: dict[str, Any] = {
    "apiVersion": API,
    "kind": "FeedbackLoop",
    "name": "loop",
    "uid": LOOP_UID,
    "controller": True,
    "blockOwnerDeletion": True,
}
LOOP: dict[str, Any] = {
    "apiVersion": API,
    "kind": "FeedbackLoop",
    "metadata": {"name": "loop"},
    "spec": {
        "feedback": {"uri": "file:///tmp/feedback/"},
        "baseDataset": {"name": "tickets"},
        "champion": {"uri": "file:///tmp/model"},
        "finetune": {"method": "full", "hyperparameters": {"maxSteps": 2}},
        "evaluation": {
            "prompts": {"dataset": {"name": "tickets"}},
            "metrics": [{"name": "rougeL"}],
            "gates": [{"metric": "rougeL", "maxRegression": 0.0}],
        },
        "triggers": {"minNewRecords": 5},
    },
}


def owned(
    kind: str, name: str, spec: dict[str, Any], owner: dict[str, Any] = OWNER
) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"kubetune.dev/feedback-loop": "loop", "kubetune.dev/cycle": "1"},
            "ownerReferences": [owner],
        },
        "spec": spec,
    }


def dataset(name: str, owner: dict[str, Any] = OWNER) -> dict[str, Any]:
    return owned(
        kind="Dataset", name=name, spec={"sources": [{"uri": "file:///d.jsonl"}]}, owner=owner
    )


def ref(api_version: str, kind: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
    }


def job(name: str, owner_uid: str, suspend: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": {"kubetune.dev/kind": "Dataset", "kubetune.dev/name": "x"},
            "ownerReferences": [
                {"kind": "Dataset", "name": "x", "uid": owner_uid, "controller": True}
            ],
        },
        "spec": {
            "suspend": suspend,
            "template": {"spec": {"containers": [{"name": "step", "image": "img"}]}},
        },
    }


def config_map(name: str, owner_uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": [{"uid": owner_uid}]},
        "data": {"spec.json": "{}"},
    }
