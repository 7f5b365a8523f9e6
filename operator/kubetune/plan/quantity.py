"""Kubernetes resource quantities: just enough arithmetic for the /dev/shm size."""

from __future__ import annotations

import re
from decimal import Decimal

# SI suffixes: decimal (k = 10^3 ... E = 10^18), binary (Ki = 2^10 ... Ei = 2^60), and the
# fractional n, u, m.
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("0.000000001"),
    "u": Decimal("0.000001"),
    "m": Decimal("0.001"),
    **{prefix: Decimal(10) ** (3 * power) for power, prefix in enumerate("kMGTPE", 1)},
    **{f"{prefix}i": Decimal(2) ** (10 * power) for power, prefix in enumerate("KMGTPE", 1)},
}
# apimachinery's quantity grammar (non-negative): digits, a binary or decimal SI suffix, or a
# decimal exponent (1e3).
_QUANTITY = re.compile(
    r"^\+?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE]([+-]?[0-9]+))?$"
)


def _value(quantity: str) -> Decimal:
    """The exact value of a quantity (ValueError when it is not one)."""
    match = _QUANTITY.match(quantity)
    if not match:
        raise ValueError(f"invalid quantity {quantity!r}")
    scale = Decimal(10) ** int(match.group(3)) if match.group(3) else _SUFFIX[match.group(2) or ""]
    return Decimal(match.group(1)) * scale


def to_bytes(quantity: str) -> int:
    """The value of a quantity such as ``32Gi`` or ``500M``, rounded up to a whole number."""
    return int(_value(quantity).to_integral_value(rounding="ROUND_CEILING"))


def format_bytes(value: int) -> str:
    """A byte count in the largest binary unit that divides it (``17179869184`` -> ``16Gi``)."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIX[suffix])
        if value >= unit and value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)


def half(quantity: str) -> str:
    """Half of a memory quantity, rounded up to a whole MiB."""
    mib = 2**20
    halved = -(-to_bytes(quantity) // 2)
    return format_bytes(-(-halved // mib) * mib)


def to_cores(quantity: str) -> float:
    """A CPU quantity in cores (``500m`` -> 0.5, ``2`` -> 2.0)."""
    return float(_value(quantity))
