"""Document-masked packing: a packed row's loss is the token-weighted sum of its documents'
losses on every attention path that runs on CPU (eager, SDPA, flex forward, the flattened
varlen layout), and the fast paths compute what the reference path computes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from kubetune_workloads.errors import WorkloadError  # noqa: E402
from kubetune_workloads.finetune import run  # noqa: E402
from kubetune_workloads.finetune.attention import (  # noqa: E402
    AttentionPath,
    apply_attention,
    resolve_attention,
)
from kubetune_workloads.finetune.batching import collate, pack  # noqa: E402
from kubetune_workloads.finetune.data import IGNORE, Example  # noqa: E402
from test_finetune_support import (  # noqa: E402
    make_dataset,
    metrics,
    results,
    save_base,
    single_thread,  # noqa: F401 - autouse fixture
    step_spec,
)

from tests.helpers.tiny import random_llama  # noqa: E402

VOCAB = 97
CPU = torch.device("cpu")


def _model(implementation: str) -> Any:
    model = random_llama(VOCAB, kv_heads=2).eval()
    apply_attention(model, AttentionPath(implementation), strict=True)
    return model


def _documents() -> list[Example]:
    """Documents of different lengths; some score every token (their first label included,
    which a packed row must not predict from the previous document), some only a suffix."""
    gen = torch.Generator().manual_seed(3)
    docs = []
    for index, length in enumerate([9, 17, 5, 23, 12, 30, 7, 14]):
        ids = torch.randint(3, VOCAB, (length,), generator=gen).tolist()
        labels = list(ids) if index % 2 == 0 else [IGNORE] * (length // 2) + ids[length // 2 :]
        docs.append(Example(ids, labels))
    return docs


def _loss_sum(model: Any, rows: list[Example], varlen: bool = False) -> tuple[float, int]:
    """(loss x scored tokens, scored tokens) of one micro-batch, as the training loop weighs it."""
    batch = collate(rows, 0, CPU, varlen=varlen)
    with torch.no_grad():
        loss = model(**batch["inputs"], use_cache=False).loss
    return float(loss) * batch["scored"], batch["scored"]


def _per_document(model: Any, docs: list[Example]) -> float:
    total, scored = 0.0, 0
    for doc in docs:
        doc_sum, doc_scored = _loss_sum(model, [doc])
        total, scored = total + doc_sum, scored + doc_scored
    return total / scored


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_packed_loss_is_the_token_weighted_sum_of_document_losses(implementation: str) -> None:
    model = _model(implementation)
    docs = _documents()
    rows = pack(docs, 48)
    assert any(len(row.lengths) > 2 for row in rows)  # really packed
    packed, scored = _loss_sum(model, rows)
    assert scored == sum(int((torch.tensor(d.labels[1:]) != IGNORE).sum()) for d in docs)
    assert packed / scored == pytest.approx(_per_document(model, docs), abs=1e-5)


def test_flattened_varlen_layout_scores_the_same_tokens_and_loss() -> None:
    """The FlashAttention layout (one padding-free row, cu_seq_lens) on SDPA, which reads the
    same document boundaries from the position ids."""
    model = _model("sdpa")
    docs = _documents()
    rows = pack(docs, 48)
    padded, scored = _loss_sum(model, rows)
    flat, flat_scored = _loss_sum(model, rows, varlen=True)
    assert flat_scored == scored
    assert flat / flat_scored == pytest.approx(padded / scored, abs=1e-5)
    batch = collate(rows, 0, CPU, varlen=True)["inputs"]
    lengths = [n for row in rows for n in row.lengths]
    assert batch["input_ids"].shape == (1, sum(lengths))
    assert batch["cu_seq_lens_q"].tolist() == [0, *torch.tensor(lengths).cumsum(0).tolist()]
    assert batch["max_length_q"] == max(lengths)


def test_unpacked_rows_flattened_equal_padded_rows() -> None:
    model = _model("sdpa")
    rows = _documents()[:4]
    padded, scored = _loss_sum(model, rows)
    flat, flat_scored = _loss_sum(model, rows, varlen=True)
    assert (flat_scored, flat / flat_scored) == (scored, pytest.approx(padded / scored, abs=1e-5))


def test_flex_attention_document_mask_matches_eager_with_mask() -> None:
    """Flex attention (forward: torch has no flex backward on CPU) with the document block mask
    transformers builds from the position ids, against eager with the materialized mask."""
    docs = _documents()
    collated = collate(pack(docs, 48), 0, CPU)
    outputs = {}
    for implementation in ("eager", "flex_attention"):
        with torch.no_grad():
            outputs[implementation] = _model(implementation)(**collated["inputs"], use_cache=False)
    eager, flex = outputs["eager"], outputs["flex_attention"]
    assert torch.allclose(eager.logits, flex.logits, atol=1e-5)
    assert float(flex.loss) == pytest.approx(_per_document(_model("eager"), docs), abs=1e-5)


def test_attention_paths_resolve_per_device() -> None:
    assert resolve_attention("auto", CPU) == AttentionPath("sdpa")
    # on a GPU without FlashAttention packages (no CUDA call is made to decide this):
    # flex only where there are documents to keep apart
    if importlib.util.find_spec("flash_attn") is None:
        cuda = torch.device("cuda")
        assert resolve_attention("auto", cuda, packed=True) == AttentionPath("flex_attention")
        assert resolve_attention("auto", cuda, packed=False) == AttentionPath("sdpa")
    assert resolve_attention("eager", CPU) == AttentionPath("eager")
    for name, words in (
        ("flex_attention", "no flex-attention backward on CPU"),
        ("flash_attention_2", "needs a CUDA device"),
        ("flash_attention_3", "needs a CUDA device"),
    ):
        with pytest.raises(WorkloadError) as err:
            resolve_attention(name, CPU)
        assert err.value.reason == "InvalidInput" and words in err.value.message


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("packing")
    return {
        "base": save_base(root / "base"),
        "instruction": make_dataset(root / "ds", "instruction", n_train=32, n_val=0),
    }


def _packed_run(world: dict[str, str], out: Path, attention: str) -> list[float]:
    spec = {
        "objective": "instruction",
        "method": "lora",
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "hyperparameters": {"packing": True, "maxSteps": 4, "batchSize": 2, "loggingSteps": 1},
        "performance": {"attention": attention},
    }
    assert run(step_spec(out, world["instruction"], world["base"], spec=spec)).ok
    assert results(out)["performance"]["attention"] == attention
    return [m["loss"] for m in metrics(out) if "loss" in m]


def test_training_on_sdpa_equals_eager_reference(world: dict[str, str], tmp_path: Path) -> None:
    """Fast path off (eager, materialized mask) == on (SDPA) through the finetune step."""
    eager = _packed_run(world, tmp_path / "eager", "eager")
    sdpa = _packed_run(world, tmp_path / "sdpa", "sdpa")
    assert len(eager) == 4
    assert sdpa == pytest.approx(eager, abs=1e-5)


def test_a_named_gpu_attention_path_on_cpu_fails_clearly(
    world: dict[str, str], tmp_path: Path
) -> None:
    spec = {
        "objective": "instruction",
        "method": "lora",
        "lora": {"r": 4},
        "performance": {"attention": "flash_attention_2"},
    }
    with pytest.raises(WorkloadError) as err:
        run(step_spec(tmp_path / "out", world["instruction"], world["base"], spec=spec))
    assert err.value.reason == "InvalidInput"
    assert "flash_attention_2 cannot train here" in err.value.message


def test_full_rows_need_no_attention_mask() -> None:
    model = _model("sdpa")
    gen = torch.Generator().manual_seed(5)
    rows = [Example(ids, ids) for ids in torch.randint(3, VOCAB, (3, 20), generator=gen).tolist()]
    batch = collate(rows, 0, CPU)["inputs"]
    assert "attention_mask" not in batch and "position_ids" not in batch
    with torch.no_grad():
        bare = model(**batch, use_cache=False).loss
        masked = model(**batch, attention_mask=torch.ones(3, 20), use_cache=False).loss
    assert float(bare) == pytest.approx(float(masked), abs=1e-6)
    assert "attention_mask" in collate([*rows, Example([5, 6], [5, 6])], 0, CPU)["inputs"]
