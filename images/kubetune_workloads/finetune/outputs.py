"""The finetune artifact: model (adapter or full, optional merged), tokenizer, results.json,
model card. The manifest is written by the caller, last.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kubetune.api.steps import RESULTS_FILE, FinetuneStepSpec

from kubetune_workloads import modelio, storage
from kubetune_workloads.finetune.model_setup import ModelBundle
from kubetune_workloads.prompts import ALPACA

log = logging.getLogger(__name__)
MERGED_DIR = "merged"


def save_artifact(
    model: Any, bundle: ModelBundle, out: Path, step: FinetuneStepSpec, full_state: Any = None
) -> None:
    """Write the trained model (HF format, safetensors) and its tokenizer into ``out``."""
    merged = bundle.format == "adapter" and step.spec.merge_adapter
    template = instruction_template(step)
    info = modelio.ModelInfo(
        format=bundle.format,
        base_uri=bundle.base_uri if bundle.format == "adapter" else None,
        family=bundle.family,
        merged_subdir=MERGED_DIR if merged else None,
        trust_remote_code=step.spec.model.trust_remote_code,
        instruction_template=template,
        objective=step.spec.objective,
        max_seq_length=step.spec.hyperparameters.max_seq_length,
    )
    if full_state is not None:  # FSDP: the gathered weights
        model.save_pretrained(str(out), state_dict=full_state, safe_serialization=True)
    else:
        model.save_pretrained(str(out), safe_serialization=True)
    if bundle.format == "adapter":
        _point_adapter_at_base(out, bundle.base_uri)
    bundle.tokenizer.save_pretrained(str(out))
    (out / modelio.MODEL_INFO_FILE).write_text(info.model_dump_json(by_alias=True, indent=2))
    if merged:
        write_merged(out, step, template)


def instruction_template(step: FinetuneStepSpec) -> str | None:
    """The prompt format an instruction- or preference-tuned model expects (its prompts were
    rendered with it in training; None for other objectives)."""
    if step.spec.objective not in ("instruction", "preference"):
        return None
    return step.spec.prompt_template or ALPACA


def write_merged(out: Path, step: FinetuneStepSpec, template: str | None) -> None:
    """Merge the adapter into a full-precision copy of its base (also after QLoRA)."""
    loaded = modelio.load_model(
        "file://" + str(out),
        adapter="merge",
        dtype="fp32",
        trust_remote_code=step.spec.model.trust_remote_code,
        allow_pickle=step.spec.model.allow_pickle,
        device="cpu",
    )
    modelio.save_model(
        loaded.model,
        loaded.tokenizer,
        out / MERGED_DIR,
        modelio.ModelInfo(
            format="full",
            family=loaded.info.family,
            instruction_template=template,
            objective=step.spec.objective,
            max_seq_length=step.spec.hyperparameters.max_seq_length,
        ),
    )


def _point_adapter_at_base(out: Path, base_uri: str | None) -> None:
    """``base_model_name_or_path``: a local path or hub id that plain peft can open."""
    config_file = out / "adapter_config.json"
    if not base_uri or not config_file.is_file():
        return
    scheme, rest = storage.split_uri(base_uri)
    local = storage.local_path(base_uri)
    if local is not None:
        ref = str(local.resolve())
    elif scheme == "hf":
        ref = storage.parse_hf(rest)[1]
    else:
        ref = base_uri
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = ref
    config_file.write_text(json.dumps(config, indent=2))


def write_results(out: Path, results: dict[str, Any]) -> None:
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2, sort_keys=True))


def write_model_card(
    out: Path,
    step: FinetuneStepSpec,
    bundle: ModelBundle,
    results: dict[str, Any],
    data_version: str | None,
) -> None:
    """``README.md``: where the model came from, how it was trained, what it scored."""
    spec = step.spec
    hp = spec.hyperparameters.model_dump(mode="json", by_alias=True, exclude_none=True)
    base = bundle.base_uri or (step.model.uri if step.model else None)
    source = base or f"designed from scratch ({bundle.family})"
    library = "peft" if bundle.format == "adapter" else "transformers"
    lines = [
        "---",
        f"library_name: {library}",
        *([f"base_model: {base}"] if base else []),
        "tags: [kubetune, " + spec.method + ", " + spec.objective + "]",
        "---",
        "",
        f"# {step.producer.name}",
        "",
        f"Trained by kubetune ({step.producer.kind} {step.producer.namespace}/"
        f"{step.producer.name}, run {step.producer.run_id}).",
        "",
        "## Training",
        "",
        f"- Model: {source}",
        f"- Dataset: {step.dataset.uri}"
        + (f" (content {step.dataset.content_hash})" if step.dataset.content_hash else ""),
        f"- Data version: {data_version or 'unversioned'}",
        f"- Objective: {spec.objective}",
        f"- Method: {spec.method}",
    ]
    if spec.lora is not None and spec.method != "full":
        lora = spec.lora.model_dump(mode="json", by_alias=True)
        lines.append(f"- LoRA: {json.dumps(lora)}")
    if spec.quantization is not None:
        quant = spec.quantization.model_dump(mode="json", by_alias=True)
        lines.append(f"- Quantization: {json.dumps(quant)}")
    lines += ["", "### Hyperparameters", "", "| name | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in sorted(hp.items())]
    lines += ["", "## Results", "", "| metric | value |", "| --- | --- |"]
    for key, value in sorted(results.items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            lines.append(f"| {key} | {value:.6g} |")
    loader = (
        "from peft import AutoPeftModelForCausalLM\n"
        "model = AutoPeftModelForCausalLM.from_pretrained('PATH')"
        if bundle.format == "adapter"
        else "from transformers import AutoModelForCausalLM\n"
        "model = AutoModelForCausalLM.from_pretrained('PATH')"
    )
    if bundle.family == "kubetune_rnn":
        loader = "import kubetune_workloads.rnn as rnn; rnn.register()\n" + loader
    lines += ["", "## Use", "", "```python", loader, "```", ""]
    (out / "README.md").write_text("\n".join(lines))
