"""Structured pruning that physically removes units, where the architecture allows it.

Supported: decoder layers with a gated MLP (``gate_proj``/``up_proj``/``down_proj``, as in
Llama, Mistral, Qwen2) and attention with ``q_proj``/``k_proj``/``v_proj``/``o_proj``. Every
layer loses the same number of units, ranked by weight norms within the layer, so one config
(``intermediate_size``, ``num_attention_heads``) still describes the model. The result is
checked against a fresh model built from the updated config; any other layout is refused with
``UnsupportedArchitecture``.
"""

from __future__ import annotations

from typing import Any

from kubetune_workloads.errors import WorkloadError, invalid_input

MLP_PARTS = ("gate_proj", "up_proj", "down_proj")
ATTENTION_PARTS = ("q_proj", "k_proj", "v_proj", "o_proj")


def check_supported(model: Any, granularity: str) -> None:
    """Raise ``UnsupportedArchitecture`` unless ``granularity`` units can be removed here."""
    if granularity == "channels":
        _blocks(model, "mlp", MLP_PARTS, "channels (gated MLP intermediate channels)")
    elif granularity == "heads":
        _blocks(model, "self_attn", ATTENTION_PARTS, "heads (q/k/v/o attention)")


def prune_mlp_channels(model: Any, sparsity: float) -> str:
    """Remove ``sparsity`` of each layer's MLP intermediate channels; returns a report note."""
    import torch

    mlps = _blocks(model, "mlp", MLP_PARTS, "channels (gated MLP intermediate channels)")
    size = mlps[0].gate_proj.out_features
    keep = _kept(size, sparsity, "MLP channels")
    for mlp in mlps:
        with torch.no_grad():
            score = (
                mlp.gate_proj.weight.float().norm(dim=1)
                * mlp.up_proj.weight.float().norm(dim=1)
                * mlp.down_proj.weight.float().norm(dim=0)
            )
        index = torch.topk(score, keep).indices.sort().values
        mlp.gate_proj = _slice(mlp.gate_proj, index, dim=0)
        mlp.up_proj = _slice(mlp.up_proj, index, dim=0)
        mlp.down_proj = _slice(mlp.down_proj, index, dim=1)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = keep
    model.config.intermediate_size = keep
    _check_against_config(model)
    return (
        f"structured channels: MLP intermediate size {size} -> {keep} in {len(mlps)} layers "
        "(layers physically shrunk)."
    )


def prune_attention_heads(model: Any, sparsity: float) -> str:
    """Remove ``sparsity`` of each layer's key/value head groups (with their query heads)."""
    import torch

    attns = _blocks(model, "self_attn", ATTENTION_PARTS, "heads (q/k/v/o attention)")
    config = model.config
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = attns[0].q_proj.out_features // heads
    if attns[0].k_proj.out_features != kv_heads * head_dim:
        raise WorkloadError(
            "UnsupportedArchitecture",
            "attention projections do not match num_attention_heads/num_key_value_heads; "
            "cannot prune heads of this model",
        )
    group = heads // kv_heads
    keep = _kept(kv_heads, sparsity, "key/value head groups")
    for attn in attns:
        with torch.no_grad():
            q = attn.q_proj.weight.float().view(kv_heads, group * head_dim, -1).norm(dim=(1, 2))
            k = attn.k_proj.weight.float().view(kv_heads, head_dim, -1).norm(dim=(1, 2))
            v = attn.v_proj.weight.float().view(kv_heads, head_dim, -1).norm(dim=(1, 2))
            o = attn.o_proj.weight.float().view(-1, kv_heads, group * head_dim).norm(dim=(0, 2))
        kept_groups = torch.topk(q * k * v * o, keep).indices.sort().values
        kv_rows = _unit_rows(kept_groups, head_dim)
        q_rows = _unit_rows(kept_groups, group * head_dim)
        attn.q_proj = _slice(attn.q_proj, q_rows, dim=0)
        attn.k_proj = _slice(attn.k_proj, kv_rows, dim=0)
        attn.v_proj = _slice(attn.v_proj, kv_rows, dim=0)
        attn.o_proj = _slice(attn.o_proj, q_rows, dim=1)
        for name, value in (("num_heads", keep * group), ("num_key_value_heads", keep)):
            if hasattr(attn, name):
                setattr(attn, name, value)
    config.head_dim = head_dim
    config.num_attention_heads = keep * group
    config.num_key_value_heads = keep
    _check_against_config(model)
    return (
        f"structured heads: attention heads {heads} -> {keep * group} (key/value heads "
        f"{kv_heads} -> {keep}) in {len(attns)} layers (layers physically shrunk)."
    )


def _blocks(model: Any, attr: str, parts: tuple[str, ...], what: str) -> list[Any]:
    import torch

    blocks = [
        getattr(module, attr)
        for _, module in model.named_modules()
        if hasattr(module, "mlp") and hasattr(module, "self_attn")
    ]
    if not blocks or not all(
        isinstance(getattr(b, p, None), torch.nn.Linear) for b in blocks for p in parts
    ):
        family = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise WorkloadError(
            "UnsupportedArchitecture",
            f"structured pruning of {what} cannot shrink {family!r} models: it needs decoder "
            f"layers with {attr}.{'/'.join(parts)} linear layers. Use method: magnitude, or "
            "structured rows (zeroed, not removed).",
        )
    return blocks


def _kept(size: int, sparsity: float, what: str) -> int:
    keep = size - round(sparsity * size)
    if keep < 1:
        raise invalid_input(f"sparsity {sparsity} would remove all {size} {what}")
    return keep


def _unit_rows(units: Any, width: int) -> Any:
    import torch

    return (units[:, None] * width + torch.arange(width, device=units.device)).reshape(-1)


def _slice(linear: Any, index: Any, dim: int) -> Any:
    """A new Linear keeping ``index`` along the output (dim 0) or input (dim 1) features."""
    import torch

    weight = linear.weight.data.index_select(dim, index.to(linear.weight.device)).clone()
    out_features, in_features = weight.shape
    has_bias = linear.bias is not None
    new = torch.nn.Linear(
        in_features, out_features, bias=has_bias, device=weight.device, dtype=weight.dtype
    )
    new.weight.data.copy_(weight)
    if has_bias:
        bias = linear.bias.data if dim == 1 else linear.bias.data.index_select(0, index)
        new.bias.data.copy_(bias)
    return new


def _check_against_config(model: Any) -> None:
    """Refuse a result that the updated config would not load (a layout we did not expect)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(model.config)
    expected = {name: tuple(t.shape) for name, t in fresh.state_dict().items()}
    for name, tensor in model.state_dict().items():
        if name in expected and expected[name] != tuple(tensor.shape):
            raise WorkloadError(
                "UnsupportedArchitecture",
                f"after structured pruning, {name} has shape {tuple(tensor.shape)} but the "
                f"updated config describes {expected[name]}; this architecture cannot be shrunk",
            )
