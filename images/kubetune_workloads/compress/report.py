"""The before/after report: ``report.json``, ``report.md``, the model card, the status summary.

Every number comes from the two :class:`Snapshot` measurements of this run; ratios are
after / before, so a ``sizeRatio`` of 0.3 means the weights take 30 % of their former bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune_workloads.compress.snapshot import Snapshot

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
MODEL_CARD = "README.md"


@dataclass
class QualityGate:
    """The optional perplexity gate and its outcome."""

    max_perplexity_increase: float
    perplexity_increase: float
    passed: bool


def ratio(after: float, before: float) -> float | None:
    return after / before if before else None


def deltas(before: Snapshot, after: Snapshot) -> dict[str, float | None]:
    """Changes from before to after (ratios are after / before)."""
    ppl_delta = ppl_increase = None
    if before.perplexity is not None and after.perplexity is not None:
        ppl_delta = after.perplexity - before.perplexity
        ppl_increase = ppl_delta / before.perplexity if before.perplexity else None
    return {
        "sizeRatio": ratio(after.bytes_on_disk, before.bytes_on_disk),
        "memoryRatio": ratio(after.memory_bytes, before.memory_bytes),
        "parameterRatio": ratio(after.parameters, before.parameters),
        "bytesSaved": float(before.bytes_on_disk - after.bytes_on_disk),
        "perplexityDelta": ppl_delta,
        "perplexityIncrease": ppl_increase,
        "latencyRatio": ratio(after.latency_seconds, before.latency_seconds),
        "tokensPerSecondRatio": ratio(after.tokens_per_second, before.tokens_per_second),
        "sparsityDelta": after.sparsity - before.sparsity,
    }


def quality_gate(limit: float | None, changes: dict[str, float | None]) -> QualityGate | None:
    """Pass/fail of ``maxPerplexityIncrease`` (a fraction of the perplexity before)."""
    increase = changes.get("perplexityIncrease")
    if limit is None or increase is None:
        return None
    return QualityGate(limit, increase, passed=increase <= limit)


def build_report(
    *,
    model_uri: str,
    input_format: str,
    steps: list[dict[str, Any]],
    before: Snapshot,
    after: Snapshot,
    notes: list[str],
    evaluation: dict[str, Any],
    gate: QualityGate | None,
) -> dict[str, Any]:
    return {
        "model": {"uri": model_uri, "format": input_format},
        "steps": steps,
        "before": before.to_json(),
        "after": after.to_json(),
        "deltas": deltas(before, after),
        "qualityGate": None
        if gate is None
        else {
            "maxPerplexityIncrease": gate.max_perplexity_increase,
            "perplexityIncrease": gate.perplexity_increase,
            "passed": gate.passed,
        },
        "evaluation": evaluation,
        "notes": notes,
    }


def summary_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The status summary (StepResult.metrics): only numbers that were measured."""
    before, after, changes = report["before"], report["after"], report["deltas"]
    values = {
        "sizeRatio": changes["sizeRatio"],
        "memoryRatio": changes["memoryRatio"],
        "perplexityBefore": before["perplexity"],
        "perplexityAfter": after["perplexity"],
        "perplexityDelta": changes["perplexityDelta"],
        "latencyRatio": changes["latencyRatio"],
        "tokensPerSecondBefore": before["tokensPerSecond"],
        "tokensPerSecondAfter": after["tokensPerSecond"],
        "sparsity": after["sparsity"],
        "paramsBefore": before["parameters"],
        "paramsAfter": after["parameters"],
        "bytesBefore": before["bytesOnDisk"],
        "bytesAfter": after["bytesOnDisk"],
        "memoryBytesBefore": before["memoryBytes"],
        "memoryBytesAfter": after["memoryBytes"],
    }
    return {k: float(v) for k, v in values.items() if v is not None}


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    (out_dir / REPORT_JSON).write_text(json.dumps(report, indent=2))
    (out_dir / REPORT_MD).write_text(render_markdown(report))
    (out_dir / MODEL_CARD).write_text(model_card(report))


def render_markdown(report: dict[str, Any]) -> str:
    before, after, changes = report["before"], report["after"], report["deltas"]
    rows = [
        ("Parameters", _int(before["parameters"]), _int(after["parameters"])),
        ("Weights on disk", _bytes(before["bytesOnDisk"]), _bytes(after["bytesOnDisk"])),
        ("Memory when loaded", _bytes(before["memoryBytes"]), _bytes(after["memoryBytes"])),
        ("Sparsity (linear weights)", f"{before['sparsity']:.1%}", f"{after['sparsity']:.1%}"),
        ("Perplexity", _num(before["perplexity"]), _num(after["perplexity"])),
        ("Latency per prompt", _secs(before["latencySeconds"]), _secs(after["latencySeconds"])),
        ("Tokens/s", _num(before["tokensPerSecond"]), _num(after["tokensPerSecond"])),
        ("Weights", _kind(before), _kind(after)),
    ]
    lines = [
        "# Compression report",
        "",
        f"Input: `{report['model']['uri']}` ({report['model']['format']}). "
        f"Steps: {', '.join(_step_name(s) for s in report['steps'])}.",
        "",
        "| | Before | After |",
        "|---|---|---|",
        *(f"| {name} | {b} | {a} |" for name, b, a in rows),
        "",
        "## Deltas",
        "",
        f"- Size on disk: {_ratio(changes['sizeRatio'])} of before "
        f"({_bytes(changes['bytesSaved'])} saved)",
        f"- Memory when loaded: {_ratio(changes['memoryRatio'])} of before",
        f"- Perplexity: {_signed(changes['perplexityDelta'])} "
        f"({_pct(changes['perplexityIncrease'])})",
        f"- Latency: {_ratio(changes['latencyRatio'])} of before",
    ]
    gate = report.get("qualityGate")
    if gate:
        verdict = "passed" if gate["passed"] else "FAILED"
        lines += [
            "",
            f"Quality gate {verdict}: perplexity grew {gate['perplexityIncrease']:.2%}, "
            f"limit {gate['maxPerplexityIncrease']:.2%}.",
        ]
    evaluation = report["evaluation"]
    lines += ["", "## How this was measured", "", _measured(evaluation)]
    if report["notes"]:
        lines += ["", "## Notes", "", *(f"- {n}" for n in report["notes"])]
    return "\n".join(lines) + "\n"


def model_card(report: dict[str, Any]) -> str:
    after = report["after"]
    quant = after["quantization"]
    load = (
        "It is a bitsandbytes-quantized checkpoint: loading needs `bitsandbytes` "
        "(the `quantization_config` in `config.json` is applied automatically)."
        if quant
        else "It loads with plain `transformers`."
    )
    header = [
        "---",
        "library_name: transformers",
        "tags: [kubetune, compressed]",
        "---",
        "",
        "# Compressed model",
        "",
        f"Produced by kubetune's Compression from `{report['model']['uri']}`. {load}",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        'model = AutoModelForCausalLM.from_pretrained("PATH")',
        'tokenizer = AutoTokenizer.from_pretrained("PATH")',
        "```",
        "",
    ]
    body = render_markdown(report).split("\n", 2)[2]
    return "\n".join(header) + body


def _measured(evaluation: dict[str, Any]) -> str:
    parts = []
    if evaluation.get("dataset"):
        parts.append(
            f"Perplexity on `{evaluation['dataset']}` (validation split): "
            f"{evaluation['tokens']} tokens in {evaluation['batches']} batches of blocks of "
            f"{evaluation['seqLen']} tokens, identical before and after."
        )
    else:
        parts.append("No dataset was given, so perplexity was not measured.")
    parts.append(
        f"Latency: greedy generation of {evaluation['maxNewTokens']} new tokens for each of "
        f"{len(evaluation['prompts'])} fixed prompts on {evaluation['device']}, after a warm-up."
    )
    return " ".join(parts)


def _step_name(step: dict[str, Any]) -> str:
    return next(iter(step), "?")


def _kind(snapshot: dict[str, Any]) -> str:
    kind: str = snapshot["quantization"] or snapshot["dtype"]
    return kind


def _int(value: float) -> str:
    return f"{int(value):,}"


def _bytes(value: float | None) -> str:
    if value is None:
        return "n/a"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GiB"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2%}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}x"


def _secs(value: float) -> str:
    return f"{value * 1000:.1f} ms"
