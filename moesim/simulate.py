"""Public entry points of the timing model: one point (`simulate`) or many (`simulate_many`).

CONTRACT between the timing model (issue 5) and the sweep (issue 6) -- extend, do not rename.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SimRequest:
    model: str  # catalog id/alias or path to a config.json / .gguf
    quant: str
    device: str  # device slug or multi-GPU system slug
    device_count: int = 1
    host: str | None = None  # cpu-kind device slug; None = the typical host for the device's class
    host_overrides: tuple[tuple[str, object], ...] = ()  # (field, value) e.g. ("mem_channels", 4)
    strategy: str = "auto"
    context: int = 4096  # tokens already in the KV cache
    batch: int = 1
    engine: str = "llama.cpp"
    prompt_tokens: int = 512  # prefill length for prefill tok/s and TTFT
    kv_type: str = "f16"
    trace: str | None = None  # path to a trace file; None = synthetic from the model family preset
    seed: int = 0


@dataclass(frozen=True, slots=True)
class SimResult:
    request: SimRequest
    strategy: str  # resolved placement (auto -> the one chosen)
    fits: bool
    reason: str  # why it does not fit / what was assumed; "" when fine
    decode_tok_s: float
    latency_mean_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    prefill_tok_s: float
    ttft_s: float
    hit_rate: float  # expert-cache / VRAM hit rate of routed-expert look-ups (nan when not applicable)
    weights_bytes: int
    kv_cache_bytes: int
    bytes_by_tier: dict[str, int] = field(default_factory=dict)  # "vram", "host", "nvme"
    bytes_per_token_by_link: dict[str, float] = field(default_factory=dict)  # "vram", "host_ram", "pcie", "nvme", "interconnect"
    time_breakdown_s: dict[str, float] = field(default_factory=dict)  # per-token seconds by component
    assumptions: dict[str, object] = field(default_factory=dict)  # bandwidths, efficiencies used
    decode_tok_s_low: float = float("nan")  # uncertainty band from calibration residuals of the group
    decode_tok_s_high: float = float("nan")
    llama_cpp_command: str = ""


def simulate(request: SimRequest) -> SimResult:
    raise NotImplementedError  # issue 5


def simulate_many(requests: list[SimRequest]) -> list[SimResult]:
    """Many points at once, sharing footprints, traces and miss-ratio curves between them."""
    raise NotImplementedError  # issue 5
