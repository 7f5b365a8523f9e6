"""Fixtures for the operator's integration tests: the API emulator serving kubetune's CRDs (with
their schema and CEL rules enforced by admission), the real operator running against it, and
small manifests of every kind."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubetune.controllers.credentials import KubeAccess
from kubetune.controllers.registry import build_registry
from kubetune.plan.world import OperatorConfig

from tests.emulator import Emulator, Kubelet, fast_settings, run_kopf, start_emulator
from tests.emulator.crd_admission import CrdAdmissionRegistry
from tests.emulator.resources import load_crd_files

logging.getLogger("celpy").setLevel(logging.WARNING)  # the CEL evaluator's DEBUG is very verbose
for _name in ("celpy", "celpy.NameContainer", "celpy.Evaluator", "celpy.celpy.evaluation"):
    logging.getLogger(_name).setLevel(logging.WARNING)

ROOT = Path(__file__).resolve().parents[2]
NS = "default"
FINETUNEJOBS = "finetunejobs.kubetune.dev"
DATASETS = "datasets.kubetune.dev"
COMPRESSIONS = "compressions.kubetune.dev"
EVALUATIONS = "evaluations.kubetune.dev"
FEEDBACKLOOPS = "feedbackloops.kubetune.dev"
JOBS = "jobs.batch"

CONFIG = OperatorConfig(
    cpu_image="registry.example/kubetune-cpu:test",
    cuda_image="registry.example/kubetune-cuda:test",
    artifact_store="s3://kubetune-test",
    progress_interval_seconds=0.3,
    dependency_recheck_seconds=60.0,
)


def load_crds() -> list[dict[str, Any]]:
    """The generated CRDs (crds/*.yaml)."""
    return list(load_crd_files(ROOT / "crds"))


_CRD_ADMISSION: CrdAdmissionRegistry | None = None


def admission(new: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    """kube-apiserver's checks of kubetune objects, from the CRDs alone (pruning, defaults,
    schema, CEL rules; see tests.emulator.crd_admission). The emulator applies them itself to
    every served CRD; this hook is for checking a manifest directly."""
    global _CRD_ADMISSION
    if _CRD_ADMISSION is None:
        _CRD_ADMISSION = CrdAdmissionRegistry(load_crd_files(ROOT / "crds"))
    return _CRD_ADMISSION(new, old)


@pytest.fixture()
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """The emulator; ``parametrize("emu", [False], indirect=True)`` turns the admission of
    custom resources off (built-in kinds are still validated)."""
    admit = getattr(request, "param", True)
    with start_emulator(load_crd_files(ROOT / "crds"), validate_crds=admit) as emulator:
        yield emulator


@pytest.fixture()
def kubelet(emu: Emulator) -> Kubelet:
    return Kubelet(emu)


OperatorFactory = Callable[..., AbstractContextManager[KopfRunner]]


def kube_access(emu: Emulator, directory: Path) -> KubeAccess:
    """What the operator is given to log in: a kubeconfig for the emulator, nothing more."""
    return KubeAccess(kubeconfig=str(emu.write_kubeconfig(directory / "kubeconfig")))


def operator_registry(emu: Emulator, directory: Path, **kwargs: Any) -> Any:
    """kubetune's registry, logging in by itself from a kubeconfig for the emulator."""
    kwargs.setdefault("posting_level", logging.WARNING)
    return build_registry(
        kwargs.pop("config", CONFIG), access=kube_access(emu, directory), **kwargs
    )


def run_operator_registry(emu: Emulator, registry: Any) -> AbstractContextManager[KopfRunner]:
    """Run kubetune's registry against the emulator; the test supplies no login handler."""
    return run_kopf(emu, registry, settings=fast_settings(), timeout=30, login=False)


@pytest.fixture()
def operator(emu: Emulator, tmp_path: Path) -> OperatorFactory:
    """``with operator(): ...`` runs the real operator against the emulator (restartable)."""

    def start(config: OperatorConfig = CONFIG) -> AbstractContextManager[KopfRunner]:
        return run_operator_registry(emu, operator_registry(emu, tmp_path, config=config))

    return start


# --- manifests ------------------------------------------------------------------------------


def dataset(name: str = "tickets", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "sources": [{"uri": "s3://raw/tickets.jsonl", "format": "jsonl"}],
            "schema": "instruction",
            **spec,
        },
    }


def finetune(name: str = "assistant", dataset_name: str = "tickets", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FinetuneJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": {"base": {"uri": "hf://org/tiny-llama"}},
            "dataset": {"name": dataset_name},
            "method": "lora",
            "lora": {"r": 8, "alpha": 16},
            "hyperparameters": {"maxSteps": 10},
            "resources": {"gpus": 1, "memory": "16Gi"},
            **spec,
        },
    }
    return body


def compression(name: str = "assistant-nf4", model: str = "assistant") -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "Compression",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": {"kind": "FinetuneJob", "name": model},
            "steps": [{"quantize": {"bits": 4, "quantType": "nf4"}}],
            "resources": {"gpus": 1},
        },
    }


def evaluation(name: str = "assistant-eval", candidate: str = "assistant") -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "candidate": {"kind": "FinetuneJob", "name": candidate},
            "prompts": {"uri": "s3://raw/eval.jsonl"},
            "metrics": [{"name": "rougeL"}],
            "gates": [{"metric": "rougeL", "min": 0.2}],
            "resources": {"gpus": 1},
        },
    }


def step_result(
    step: str, ok: bool = True, reason: str = "Completed", **extra: Any
) -> dict[str, Any]:
    """A pod's termination message, as the workloads write it."""
    return {"step": step, "ok": ok, "reason": reason, **extra}


def clone(body: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(body)


# --- waiting ----------------------------------------------------------------------------------


def status_of(emu: Emulator, resource: str, name: str) -> dict[str, Any]:
    obj = emu.get(resource, NS, name) or {}
    return dict(obj.get("status") or {})


def wait_phase(
    emu: Emulator, resource: str, name: str, phase: str, reason: str | None = None
) -> dict[str, Any]:
    """Wait until the resource reaches ``phase`` (and its done condition ``reason``)."""

    def done(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        if status.get("phase") != phase:
            return False
        if reason is None:
            return True
        return any(c.get("reason") == reason for c in status.get("conditions") or [])

    return emu.wait_for(resource, NS, name, done, timeout=15)


def jobs_of(emu: Emulator, kind: str, name: str) -> list[dict[str, Any]]:
    """The Jobs of a resource (by the operator's labels)."""
    return emu.objects(JOBS, NS, labels=f"kubetune.dev/kind={kind},kubetune.dev/name={name}")


def wait_job(emu: Emulator, name: str) -> dict[str, Any]:
    return emu.wait_for(JOBS, NS, name, timeout=15)


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions") or [] if c.get("type") == type_)


def events_for(emu: Emulator, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events about an object."""
    return [
        (e.get("type", ""), e.get("reason", ""), e.get("message", ""))
        for e in emu.objects("events", NS)
        if (e.get("involvedObject") or {}).get("name") == name
    ]


def wait_event(emu: Emulator, name: str, reason: str) -> tuple[str, str, str]:
    """Wait for an Event with ``reason`` about ``name`` (kopf posts Events in the background)."""
    deadline = time.monotonic() + 10
    while True:
        found = [e for e in events_for(emu, name) if e[1] == reason]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {reason} event for {name}: {events_for(emu, name)}")
        time.sleep(0.02)


def ready_dataset(emu: Emulator, kubelet: Kubelet, name: str = "tickets") -> dict[str, Any]:
    """Create a Dataset and drive its dataprep Job to success (operator running)."""
    emu.create(DATASETS, dataset(name), admit=True)
    job = f"{name}-dataprep-g1"
    wait_job(emu, job)
    kubelet.succeed(
        NS,
        job,
        step_result("dataprep", outputUri=f"s3://kubetune-test/{name}", details={"records": 42}),
    )
    return wait_phase(emu, DATASETS, name, "Ready")


def succeeded_finetune(emu: Emulator, kubelet: Kubelet, name: str = "assistant") -> dict[str, Any]:
    """A Ready Dataset and a Succeeded FinetuneJob on it (operator running)."""
    ready_dataset(emu, kubelet)
    emu.create(FINETUNEJOBS, finetune(name), admit=True)
    job = f"{name}-finetune-g1"
    wait_job(emu, job)
    kubelet.succeed(
        NS,
        job,
        step_result("finetune", outputUri=f"s3://kubetune-test/{name}", metrics={"loss": 0.5}),
    )
    return wait_phase(emu, FINETUNEJOBS, name, "Succeeded")
