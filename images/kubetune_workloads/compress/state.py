"""The model being compressed, as it moves through the steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class WorkingModel:
    """The in-memory model between steps, with what the later steps need to know about it."""

    model: Any
    tokenizer: Any
    has_adapter: bool
    quantization: dict[str, Any] | None = None
    device: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_quantized(self) -> bool:
        if self.quantization:
            return True
        config = getattr(self.model, "config", None)
        return bool(
            getattr(self.model, "is_quantized", False)
            or getattr(config, "quantization_config", None)
        )
