"""A tiny pipeline as a team would apply it after the platform team installed kubetune.

The quickstart (examples/quickstart), shrunk to finish in about a minute on two CPU cores and
moved from ``file://`` paths (which exist on a laptop, not in a pod) to PersistentVolumeClaims:

* ``data``: the team's claim; a seed Job (the CPU workload image, ``python -c``) copies the
  records and the feedback from a ConfigMap into it, as any upload would;
* ``kubetune-artifacts``: the operator's default artifact store (``pvc://kubetune-artifacts``);
* Dataset ``tickets`` (24 support tickets, char tokenizer, no dedup/quality/PII stages) ->
  FinetuneJob ``tune`` (a 1-layer, 32-wide Llama from scratch, 2 steps) -> Compression
  ``tune-pruned`` (magnitude pruning) and Evaluation ``tune-eval`` (4 prompts, 4 new tokens,
  rougeL >= 0) -> FeedbackLoop ``loop`` (12 feedback records, a cycle at 5, a gate any
  challenger passes, promotion by patching Deployment ``server``'s pod annotation).

Each kind's done condition (api/resources.py ``done_condition``): Dataset and FeedbackLoop
``Ready``; FinetuneJob, Compression and Evaluation ``Succeeded``.
"""

from __future__ import annotations

import json
from typing import Any

from tests.install.images import REPO

API = "kubetune.dev/v1alpha1"
TEAM_NS = "ml"
CPU_IMAGE = "ghcr.io/kubetune/workloads-cpu:0.1.0"
FEEDBACK = (
    REPO
    / "examples"
    / "feedback-local"
    / "data"
    / "feedback"
    / "default"
    / "support-assistant-loop"
    / "batch-1.jsonl"
)
LOOP = "loop"
TARGET = "server"
ANNOTATION = "model-uri"

# (kind, plural, name, done condition), in dependency order
RESOURCES: tuple[tuple[str, str, str, str], ...] = (
    ("Dataset", "datasets", "tickets", "Ready"),
    ("FinetuneJob", "finetunejobs", "tune", "Succeeded"),
    ("Compression", "compressions", "tune-pruned", "Succeeded"),
    ("Evaluation", "evaluations", "tune-eval", "Succeeded"),
    ("FeedbackLoop", "feedbackloops", LOOP, "Ready"),
)


def tickets() -> list[dict[str, str]]:
    return [
        {
            "instruction": f"How do I reset password number {i}?",
            "input": "",
            "output": "Open Settings, then Security, and choose Reset password.",
        }
        for i in range(24)
    ]


def feedback_lines(count: int = 12) -> str:
    return "".join(FEEDBACK.read_text().splitlines(keepends=True)[:count])


def storage(namespace: str = TEAM_NS) -> list[dict[str, Any]]:
    """The team's claims, the seed data and the promotion target."""
    claims = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        for name in ("data", "kubetune-artifacts")
    ]
    seed = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "seed", "namespace": namespace},
        "data": {
            "tickets.jsonl": "".join(json.dumps(t) + "\n" for t in tickets()),
            "feedback.jsonl": feedback_lines(),
        },
    }
    target = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": TARGET, "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": TARGET}},
            "template": {
                "metadata": {"labels": {"app": TARGET}, "annotations": {ANNOTATION: "none"}},
                "spec": {"containers": [{"name": "server", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    return [*claims, seed, target]


def seed_job(namespace: str = TEAM_NS, image: str = CPU_IMAGE) -> dict[str, Any]:
    """A Job copying the seed ConfigMap into the ``data`` claim (as the workloads' user)."""
    code = (
        "import os, shutil\n"
        "os.makedirs('/data/feedback', exist_ok=True)\n"
        "shutil.copy('/seed/tickets.jsonl', '/data/tickets.jsonl')\n"
        "shutil.copy('/seed/feedback.jsonl', '/data/feedback/batch-1.jsonl')\n"
        "print(sorted(os.listdir('/data')))\n"
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "seed-data", "namespace": namespace},
        "spec": {
            "backoffLimit": 1,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
                    "containers": [
                        {
                            "name": "seed",
                            "image": image,
                            "command": ["python", "-c", code],
                            "volumeMounts": [
                                {"name": "seed", "mountPath": "/seed", "readOnly": True},
                                {"name": "data", "mountPath": "/data"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "seed", "configMap": {"name": "seed"}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    ],
                }
            },
        },
    }


def _meta(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace}


def resources(namespace: str = TEAM_NS) -> list[dict[str, Any]]:
    """The pipeline's kubetune resources, in dependency order."""
    tiny_training = {"maxSteps": 2, "batchSize": 4, "maxSeqLength": 64, "seed": 7}
    dataset = {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": _meta("tickets", namespace),
        "spec": {
            "sources": [{"uri": "pvc://data/tickets.jsonl", "format": "jsonl"}],
            "schema": "instruction",
            "cleaning": {
                "exactDedup": False,
                "nearDedup": {"enabled": False},
                "quality": {"enabled": False},
            },
            "safety": {"pii": {"enabled": False}, "offensive": {"enabled": False}},
            "tokenizer": {"train": {"type": "char"}},
            "split": {"validationFraction": 0.2, "seed": 7},
        },
    }
    finetune = {
        "apiVersion": API,
        "kind": "FinetuneJob",
        "metadata": _meta("tune", namespace),
        "spec": {
            "model": {
                "architecture": {
                    "family": "llama",
                    "layers": 1,
                    "hiddenSize": 32,
                    "heads": 2,
                    "contextLength": 256,
                }
            },
            "dataset": {"name": "tickets"},
            "objective": "instruction",
            "method": "full",
            "hyperparameters": tiny_training,
        },
    }
    compression = {
        "apiVersion": API,
        "kind": "Compression",
        "metadata": _meta("tune-pruned", namespace),
        "spec": {
            "model": {"kind": "FinetuneJob", "name": "tune"},
            "steps": [{"prune": {"sparsity": 0.5}}],
            "report": {"maxNewTokens": 2, "maxEvalBatches": 1},
        },
    }
    tiny_eval = {
        "prompts": {"dataset": {"name": "tickets"}, "limit": 4},
        "metrics": [{"name": "rougeL"}],
        "generation": {"maxNewTokens": 4},
        "bootstrapSamples": 10,
    }
    evaluation = {
        "apiVersion": API,
        "kind": "Evaluation",
        "metadata": _meta("tune-eval", namespace),
        "spec": {
            "candidate": {"kind": "FinetuneJob", "name": "tune"},
            **tiny_eval,
            "gates": [{"metric": "rougeL", "min": 0.0}],
        },
    }
    loop = {
        "apiVersion": API,
        "kind": "FeedbackLoop",
        "metadata": _meta(LOOP, namespace),
        "spec": {
            "feedback": {"uri": "pvc://data/feedback/", "minRating": 3, "weight": 1},
            "baseDataset": {"name": "tickets"},
            "champion": {"kind": "FinetuneJob", "name": "tune"},
            "finetune": {
                "objective": "instruction",
                "method": "full",
                "hyperparameters": tiny_training,
            },
            "evaluation": {**tiny_eval, "gates": [{"metric": "rougeL", "maxRegression": 1.0}]},
            "triggers": {"minNewRecords": 5},
            "promotion": {
                "mode": "patch",
                "target": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": TARGET,
                    "fieldPath": f"spec.template.metadata.annotations.{ANNOTATION}",
                },
            },
        },
    }
    return [dataset, finetune, compression, evaluation, loop]


# Status fields that depend on the clock or the machine, not on what was computed.
_VOLATILE = {
    "startTime",
    "completionTime",
    "lastTransitionTime",
    "lastScanTime",
    "lastCycleTime",
    "lastScheduleTime",
    "lastUpdateTime",
    "progress",
    "logPath",
    "message",  # messages quote throughput ("6393 tokens/s") and durations
}
_VOLATILE_RESULTS = (
    "second",
    "Seconds",
    "perSecond",
    "PerSecond",
    "latency",
    "Latency",
    "wallTime",
)


# Model and report files hold timings (results.json, report.html), so their hashes, and the
# run hashes of the steps that read them, differ from run to run; a Dataset is byte-for-byte
# reproducible and keeps them.
_MODEL_HASHES = {"artifactHash", "runHash", "contentHash"}


def normalized(status: dict[str, Any] | None, kind: str = "") -> Any:
    """A status without times, throughput and latency: what an interrupted run must match."""
    volatile = _VOLATILE if kind == "Dataset" else _VOLATILE | _MODEL_HASHES

    def clean(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {
                k: clean(v, k)
                for k, v in sorted(value.items())
                if k not in volatile and not any(part in k for part in _VOLATILE_RESULTS)
            }
        if isinstance(value, list):
            return [clean(v, key) for v in value]
        return value

    return clean(status or {})
