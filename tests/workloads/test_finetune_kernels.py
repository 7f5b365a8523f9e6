"""Speed levers that must not change results: Liger kernel selection, fused/foreach AdamW,
losses read from the device only at log steps, auto micro-batch from measured memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from kubetune.api.finetune import Hyperparameters  # noqa: E402
from kubetune_workloads.errors import WorkloadError  # noqa: E402
from kubetune_workloads.finetune import run  # noqa: E402
from kubetune_workloads.finetune.host_sync import PendingLosses  # noqa: E402
from kubetune_workloads.finetune.kernels import apply_kernels, resolve_kernels  # noqa: E402
from kubetune_workloads.finetune.optim import build_optimizer  # noqa: E402
from test_finetune_support import (  # noqa: E402
    make_dataset,
    metrics,
    results,
    save_base,
    single_thread,  # noqa: F401 - autouse fixture
    step_spec,
)

CPU = torch.device("cpu")
LIGER_INSTALLED = __import__("importlib.util").util.find_spec("liger_kernel") is not None


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("kernels")
    return {
        "base": save_base(root / "base"),
        "text": make_dataset(root / "text", "text", n_train=40, n_val=4),
    }


def _spec(**hyperparameters: Any) -> dict[str, Any]:
    return {
        "objective": "continued-pretraining",
        "method": "lora",
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "hyperparameters": {"maxSteps": 6, "batchSize": 2, "maxSeqLength": 64, **hyperparameters},
    }


def test_auto_kernels_on_cpu_train_without_liger(world: dict[str, str], tmp_path: Path) -> None:
    spec = {**_spec(), "performance": {"kernels": "auto"}}
    assert run(step_spec(tmp_path / "out", world["text"], world["base"], spec=spec)).ok
    perf = results(tmp_path / "out")["performance"]
    assert perf["kernels"] == [] and perf["attention"] == "sdpa" and perf["compiled"] is False


def test_liger_on_cpu_is_a_clear_input_error(world: dict[str, str], tmp_path: Path) -> None:
    spec = {**_spec(), "performance": {"kernels": "liger"}}
    with pytest.raises(WorkloadError) as err:
        run(step_spec(tmp_path / "out", world["text"], world["base"], spec=spec))
    assert err.value.reason == "InvalidInput" and "needs a CUDA device" in err.value.message


@pytest.mark.skipif(LIGER_INSTALLED, reason="liger-kernel is installed here")
def test_liger_without_the_package_names_the_extra() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(
        LlamaConfig(hidden_size=16, num_attention_heads=2, num_hidden_layers=1, vocab_size=32)
    )
    cuda = torch.device("cuda")  # the package check comes before any CUDA call
    with pytest.raises(WorkloadError) as err:
        resolve_kernels("liger", cuda, model)
    assert "liger-kernel" in err.value.message and "kubetune[gpu]" in err.value.message
    assert resolve_kernels("auto", cuda, model) == "none"
    assert resolve_kernels("none", cuda, model) == "none"
    assert apply_kernels(model, "none") == []


def test_adamw_is_foreach_on_cpu() -> None:
    model = torch.nn.Linear(4, 4)
    optimizer = build_optimizer(model, Hyperparameters(epochs=1), CPU)
    assert optimizer.defaults["foreach"] is True and not optimizer.defaults["fused"]


def test_pending_losses_drain_in_step_order_once() -> None:
    pending = PendingLosses(limit=3)
    for step, value in ((1, 2.5), (2, float("nan")), (3, 1.25)):
        pending.add(step, torch.tensor(value))
    assert pending.full
    drained = pending.drain()
    assert [s for s, _ in drained] == [1, 2, 3] and drained[0][1] == 2.5 and drained[2][1] == 1.25
    assert len(pending) == 0 and pending.drain() == []


def test_logged_losses_are_the_same_read_every_step_or_at_log_steps(
    world: dict[str, str], tmp_path: Path
) -> None:
    """loggingSteps 1 reads every step's loss at once (the old behaviour); loggingSteps 3 keeps
    them on the device until steps 3 and 6: the logged window means must be those of the
    per-step losses."""
    every = tmp_path / "every"
    assert run(step_spec(every, world["text"], world["base"], spec=_spec(loggingSteps=1))).ok
    per_step = {m["step"]: m["loss"] for m in metrics(every) if "loss" in m}
    windows = tmp_path / "windows"
    assert run(step_spec(windows, world["text"], world["base"], spec=_spec(loggingSteps=3))).ok
    logged = {m["step"]: m["loss"] for m in metrics(windows) if "loss" in m}
    assert sorted(logged) == [1, 3, 6]
    assert logged[1] == pytest.approx(per_step[1], abs=1e-6)
    assert logged[3] == pytest.approx((per_step[2] + per_step[3]) / 2, abs=1e-6)
    assert logged[6] == pytest.approx(sum(per_step[s] for s in (4, 5, 6)) / 3, abs=1e-6)
    assert results(windows)["tokens_seen"] == results(every)["tokens_seen"]
