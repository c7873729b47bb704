"""Parsing sizes and cache capacities given by people (`24GB`, `512MiB`, `300`, `25%`).

GB/MB/KB/TB are powers of 10, GiB/MiB/KiB/TiB powers of 2 (the README's convention); `B` is bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moesim.errors import MoesimError

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes in a size such as ``24GB``, ``512MiB``, ``1.5 GiB`` or ``4096`` (plain number = bytes).

    Fractional results are rounded down to whole bytes. Raises MoesimError on anything else."""
    if isinstance(text, bool):
        raise MoesimError(f"not a size: {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise MoesimError(f"a size must not be negative, got {text}")
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise MoesimError(f"not a size: '{text}' (expected e.g. 24GB, 512MiB or a number of bytes)")
    number, unit = match.groups()
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise MoesimError(f"unknown size unit '{unit}' in '{text}' (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
    if "." in number:
        whole, _, frac = number.partition(".")
        # exact decimal arithmetic: no float rounding for values like 0.1GB
        numerator = int(whole or "0") * 10 ** len(frac) + int(frac or "0")
        return numerator * factor // 10 ** len(frac)
    return int(number) * factor


@dataclass(frozen=True)
class CapacitySpec:
    """A cache capacity as a person wrote it: ``experts`` (a count), ``bytes`` or ``percent``."""

    kind: str
    value: float

    def to_bytes(self, expert_bytes_by_layer, n_experts: int) -> int:
        """Bytes for a model whose MoE layers have ``n_experts`` experts of the given sizes.

        A count of experts is measured in average experts (total routed bytes / routed experts), so with
        one size per expert it is exact; a percentage is of all routed experts' bytes."""
        sizes = [int(b) for b in expert_bytes_by_layer if int(b) > 0]
        total = sum(sizes) * int(n_experts)
        if self.kind == "bytes":
            return int(self.value)
        if self.kind == "percent":
            return int(total * self.value // 100)
        n_items = len(sizes) * int(n_experts)
        return int(self.value) * total // n_items if n_items else 0


def parse_capacity(text: str) -> CapacitySpec:
    """``N`` (experts), a size with a unit (``24GB``, ``512MiB``) or ``P%`` of all routed experts."""
    raw = str(text).strip()
    if raw.endswith("%"):
        try:
            percent = float(raw[:-1])
        except ValueError:
            raise MoesimError(f"not a percentage: '{text}'") from None
        if not 0 <= percent <= 100:
            raise MoesimError(f"a capacity percentage must be in 0..100, got '{text}'")
        return CapacitySpec("percent", percent)
    if raw.isdigit():
        return CapacitySpec("experts", int(raw))
    if raw.startswith("-"):
        raise MoesimError(f"a capacity must not be negative, got '{text}'")
    if not re.search(r"[a-zA-Z]", raw):
        raise MoesimError(f"not a capacity: '{text}' (a whole number of experts, a size like 24GB, or P%)")
    return CapacitySpec("bytes", parse_size(raw))
