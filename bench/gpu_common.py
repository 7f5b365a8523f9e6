"""Shared pieces of the GPU benches (``bench/gpu_*.py``): model shapes with random weights, the
data, kubetune's finetune step and the ``transformers.Trainer`` + peft baseline on the same
model and rows, peak-memory readings, and the JSON + markdown files a suite run keeps.

Every bench also runs on CPU with tiny shapes (``--device cpu``), which the smoke tests use.
"""

from __future__ import annotations

import gc
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

SHAPES: dict[str, dict[str, Any]] = {
    # Llama-3.2-1B dimensions with an untied output head (1.50B parameters): the shape of the
    # first H200 measurement (issue 20).
    "1.5b": {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
    },
    # Llama-3.2-1B as published (tied embeddings, 1.24B parameters).
    "1b": {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": True,
    },
    # Llama-3.1-8B.
    "8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
        "tie_word_embeddings": False,
    },
}
Around = Callable[[Callable[[], Any]], Any]  # runs the callable given (inside a profiler...)
WORDS = ["alpha", "beta", "gamma", "delta", "river", "stone", "light", "north", "green", "cloud"]


def pick_device(name: str) -> torch.device:
    """``cuda`` (required unless asked for cpu) or ``cpu``."""
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --device cpu (tiny shapes)")
    return torch.device("cuda")


def build(
    root: Path,
    shape: str,
    seq: int,
    tokens_needed: int,
    device: torch.device,
    workload: str = "cpt",
) -> dict[str, str]:
    """A random-weight Llama of ``shape`` saved as a model artifact (initialized on ``device``:
    seconds on a GPU even at 8B), and a dataset of at least ``tokens_needed`` tokens: text
    documents (``cpt``: continued pretraining on ``seq``-token blocks) or instruction records
    of 30 to 700 tokens (``packed``: packed into ``seq``-token rows)."""
    from kubetune_workloads.modelio import ModelInfo, save_model
    from kubetune_workloads.tokenizer_train import train_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = random.Random(0)
    docs, total = [], 0
    while total < tokens_needed * 1.3:
        docs.append(" ".join(rng.choice(WORDS) + rng.choice(["", ".", ","]) for _ in range(400)))
        total += 400
    tok = train_tokenizer(docs[:50], "bpe", vocab_size=min(300, SHAPES[shape]["vocab_size"]))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = LlamaConfig(
        **SHAPES[shape],
        max_position_embeddings=max(seq, 2048),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        dtype="bfloat16" if dtype == torch.bfloat16 else "float32",
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    save_model(model, tok, root / "base", ModelInfo(format="full", family="llama"))
    del model
    release(device)
    data = root / "data"
    data.mkdir()
    records = (
        _instructions(rng, tokens_needed) if workload == "packed" else [{"text": d} for d in docs]
    )
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return {"base": "file://" + str(root / "base"), "data": "file://" + str(data)}


def _instructions(rng: random.Random, tokens_needed: int) -> list[dict[str, str]]:
    records, total = [], 0
    while total < tokens_needed * 1.3:
        prompt, answer = rng.randint(10, 150), rng.randint(20, 550)
        records.append(
            {
                "instruction": " ".join(rng.choice(WORDS) for _ in range(prompt)),
                "output": " ".join(rng.choice(WORDS) for _ in range(answer)),
            }
        )
        total += prompt + answer
    return records


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_peak(device: torch.device) -> None:
    release(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int | None:
    """The allocator's peak since :func:`reset_peak` (None on CPU: no allocator statistics)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))


def kubetune(
    root: Path,
    uris: dict[str, str],
    *,
    steps: int,
    batch: int,
    seq: int,
    device: torch.device,
    performance: dict[str, Any] | None = None,
    qlora: bool = False,
    gradient_checkpointing: bool = False,
    name: str = "out",
    around: Around | None = None,
    workload: str = "cpt",
) -> dict[str, Any]:
    """kubetune's finetune step (LoRA r=16 on all linear layers, continued pretraining on
    ``seq``-token blocks); returns its ``results.json``. ``around`` wraps the training loop
    alone (model loading and saving excluded), e.g. in a profiler."""
    from kubetune.api.finetune import FinetuneJobSpec
    from kubetune.api.steps import FinetuneStepSpec, InputArtifact, Producer
    from kubetune_workloads.finetune import run, training_loop

    cuda = device.type == "cuda"
    body: dict[str, Any] = {
        "model": {"base": {"uri": uris["base"]}},
        "dataset": {"uri": uris["data"]},
        "objective": "instruction" if workload == "packed" else "continued-pretraining",
        "method": "qlora" if qlora else "lora",
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "targetModules": ["all-linear"]},
        "hyperparameters": {
            "maxSteps": steps,
            "batchSize": batch,
            "maxSeqLength": seq,
            "precision": "bf16" if cuda else "fp32",
            "learningRate": 1e-4,
            "loggingSteps": max(1, steps // 4),
            "gradientCheckpointing": gradient_checkpointing,
            "packing": workload == "packed",
        },
        "performance": performance or {},
    }
    if qlora:
        body["quantization"] = {
            "bits": 4,
            "quantType": "nf4",
            "computeDtype": "bf16" if cuda else "fp32",
        }
    out = root / name
    step = FinetuneStepSpec(
        producer=Producer(kind="FinetuneJob", name="bench", namespace="bench", run_id=name),
        output_uri="file://" + str(out),
        spec=FinetuneJobSpec.model_validate(body),
        dataset=InputArtifact(uri=uris["data"]),
        model=InputArtifact(uri=uris["base"]),
    )
    original = training_loop.train
    if around is not None:
        training_loop.train = lambda *a, **k: around(lambda: original(*a, **k))  # type: ignore[assignment]
    try:
        result = run(step)
    finally:
        training_loop.train = original  # type: ignore[assignment]
    if not result.ok:
        raise SystemExit(f"kubetune run failed: {result.reason}: {result.message}")
    return dict(json.loads((out / "results.json").read_text()))


def trainer_rows(root: Path, seq: int, workload: str = "cpt") -> list[dict[str, list[int]]]:
    """The same ``seq``-token blocks of the same text stream kubetune trains on (``cpt``), or
    the same tokenized instruction examples, unpacked (``packed``)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(root / "base"))
    lines = (root / "data" / "train.jsonl").read_text().splitlines()
    if workload == "packed":
        from kubetune_workloads.finetune.data import tokenize

        records = [json.loads(line) for line in lines]
        examples = tokenize(records, tok, "instruction", seq).examples
        return [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    stream: list[int] = []
    for line in lines:
        stream += tok(json.loads(line)["text"])["input_ids"] + [tok.eos_token_id]
    return [
        {"input_ids": stream[i : i + seq], "labels": stream[i : i + seq]}
        for i in range(0, len(stream) - seq, seq)
    ]


def trainer_baseline(
    root: Path,
    *,
    steps: int,
    batch: int,
    seq: int,
    device: torch.device,
    qlora: bool = False,
    gradient_checkpointing: bool = False,
    around: Around | None = None,
    workload: str = "cpt",
) -> tuple[float, Any]:
    """Plain ``transformers.Trainer`` + peft LoRA (r=16, all linear; with ``qlora`` an NF4
    bitsandbytes base prepared by ``prepare_model_for_kbit_training``): (tokens/s, model).
    ``packed`` examples are padded per batch, as a plain Trainer with a padding collator does;
    tokens/s counts real tokens (the mean example length x examples seen)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, Trainer, TrainingArguments

    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if qlora:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": str(device)}
    model = AutoModelForCausalLM.from_pretrained(str(root / "base"), **kwargs)
    if qlora:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, lora)

    def collate(batch_rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in batch_rows)
        pad = [width - len(r["input_ids"]) for r in batch_rows]
        ids = [r["input_ids"] + [0] * n for r, n in zip(batch_rows, pad, strict=True)]
        labels = [r["labels"] + [-100] * n for r, n in zip(batch_rows, pad, strict=True)]
        tensors = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
        if any(pad):
            mask = [[1] * (width - n) + [0] * n for n in pad]
            tensors["attention_mask"] = torch.tensor(mask)
        return tensors

    args = TrainingArguments(
        output_dir=str(root / "trainer"),
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=1e-4,
        bf16=cuda,
        logging_steps=steps,
        save_strategy="no",
        report_to=[],
        use_cpu=not cuda,
        remove_unused_columns=False,
        disable_tqdm=True,
        gradient_checkpointing=gradient_checkpointing and not qlora,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    rows = trainer_rows(root, seq, workload)
    mean_tokens = sum(len(r["input_ids"]) for r in rows) / len(rows)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    start = time.perf_counter()
    output = around(trainer.train) if around is not None else trainer.train()
    runtime = output.metrics.get("train_runtime") or (time.perf_counter() - start)
    return steps * batch * mean_tokens / runtime, model


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "—" if value is None else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: str | None, name: str, payload: dict[str, Any], table: str) -> None:
    """``NAME.json`` and ``NAME.md`` under ``out_dir`` (written to a temp name, then renamed)."""
    if not out_dir:
        return
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(payload, indent=2) + "\n"), (".md", table)):
        final = folder / (name + suffix)
        partial = folder / (name + suffix + ".partial")
        partial.write_text(text)
        partial.replace(final)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
