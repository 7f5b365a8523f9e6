"""Auto micro-batch: the decision from probes (a fake probe for the pure search logic only),
the real probe on CPU with a tiny model, and the option through the finetune step."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from kubetune_workloads.errors import WorkloadError  # noqa: E402
from kubetune_workloads.finetune import run  # noqa: E402
from kubetune_workloads.finetune.batching import collate  # noqa: E402
from kubetune_workloads.finetune.data import Example  # noqa: E402
from kubetune_workloads.finetune.memory_probe import (  # noqa: E402
    candidates,
    decide,
    measure_step,
)
from kubetune_workloads.finetune.runtime import Runtime  # noqa: E402
from test_finetune_support import (  # noqa: E402
    make_dataset,
    results,
    save_base,
    single_thread,  # noqa: F401 - autouse fixture
    step_spec,
)

from tests.helpers.tiny import random_llama  # noqa: E402

MIB = 2**20


def _linear_memory(per_row: int, fixed: int, checkpointed_per_row: int) -> dict[str, object]:
    calls: list[tuple[int, bool]] = []

    def measure(size: int, checkpointing: bool) -> int | None:
        calls.append((size, checkpointing))
        return fixed + size * (checkpointed_per_row if checkpointing else per_row)

    return {"measure": measure, "calls": calls}


def test_candidates_are_powers_of_two_and_the_requested_size() -> None:
    assert candidates(1) == [1]
    assert candidates(12) == [1, 2, 4, 8, 12]
    assert candidates(16) == [1, 2, 4, 8, 16]


def test_largest_fitting_micro_batch_keeps_rows_per_step() -> None:
    fake = _linear_memory(per_row=100 * MIB, fixed=1000 * MIB, checkpointed_per_row=10 * MIB)
    plan = decide(32, 2, 1700 * MIB, fake["measure"], checkpointing=False)  # type: ignore[arg-type]
    assert (plan.batch_size, plan.accumulation, plan.gradient_checkpointing) == (4, 16, False)
    assert len(fake["calls"]) <= 3  # binary search over [1, 2, 4, 8, 16, 32]
    assert all(p.peak_bytes is not None for p in plan.probes)


def test_checkpointing_only_when_no_micro_batch_fits_without_it() -> None:
    fake = _linear_memory(per_row=900 * MIB, fixed=1000 * MIB, checkpointed_per_row=50 * MIB)
    plan = decide(8, 1, 1500 * MIB, fake["measure"], checkpointing=False)  # type: ignore[arg-type]
    assert (plan.batch_size, plan.accumulation, plan.gradient_checkpointing) == (8, 1, True)
    assert [c for _, c in fake["calls"]].count(False) >= 1  # tried without first


def test_out_of_memory_probes_and_nothing_fitting_fail_clearly() -> None:
    def measure(size: int, checkpointing: bool) -> int | None:
        return None  # every probe ran out of memory

    with pytest.raises(WorkloadError) as err:
        decide(4, 1, 10 * MIB, measure, checkpointing=False)
    assert err.value.reason == "OutOfMemory" and "micro-batch of 1" in err.value.message


def _tiny() -> object:
    return random_llama(128, kv_heads=2).train()


def test_real_probe_on_cpu_grows_with_the_batch_and_drives_the_decision() -> None:
    model = _tiny()
    rt = Runtime(torch.device("cpu"), "fp32")
    rows = [Example(list(range(3, 67)), list(range(3, 67))) for _ in range(8)]

    def measure(size: int, checkpointing: bool) -> int | None:
        batch = collate(rows[:size], 0, rt.device)["inputs"]
        return measure_step(model, batch, rt)

    one, two, four = (measure(n, False) for n in (1, 2, 4))
    assert one is not None and two is not None and four is not None
    assert one < two < four and four - two > (two - one) * 1.5
    assert all(p.grad is None for p in model.parameters())  # gradients dropped
    budget = (two + four) // 2
    plan = decide(8, 1, budget, measure, checkpointing=False)
    assert (plan.batch_size, plan.accumulation) == (2, 4)


def test_auto_micro_batch_through_the_step(tmp_path: Path) -> None:
    base = save_base(tmp_path / "base")
    data = make_dataset(tmp_path / "ds", "text", n_train=24, n_val=0)
    spec = {
        "objective": "continued-pretraining",
        "method": "lora",
        "lora": {"r": 4},
        "hyperparameters": {"maxSteps": 2, "batchSize": 4, "maxSeqLength": 64},
        "performance": {"autoMicroBatch": True, "memoryHeadroom": 0.5},
    }
    assert run(step_spec(tmp_path / "out", data, base, spec=spec)).ok
    perf = results(tmp_path / "out")["performance"]
    # a tiny model fits at the requested size in half of this machine's free memory
    assert (perf["micro_batch"], perf["gradient_accumulation_steps"]) == (4, 1)
    assert perf["gradient_checkpointing"] is False
    assert perf["memory_probes"][-1][0] == 4 and perf["memory_probes"][-1][2] > 0
