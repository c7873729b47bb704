"""Placement strategies: where every byte of a model lives, named like the flags people use.

A placement takes a `ModelProfile` (bytes and parameters per layer, per expert) and a `Hierarchy`
and decides, per layer, whether the always-on weights (attention, dense/shared FFN, router,
norms) sit in VRAM or host RAM, and per MoE layer where the routed experts live:

- `GPU`   resident in VRAM, read at VRAM bandwidth;
- `CPU`   resident in host RAM, computed by the CPU (llama.cpp `--n-cpu-moe`, ktransformers);
- `CACHE` resident in host RAM, with a VRAM cache filled over the host link; misses are fetched,
          then computed on the GPU (`expert-cache:POLICY`);
- `FIDDLER` like CACHE, but each miss is either fetched or computed on the CPU, whichever is faster.

It accounts memory per tier and refuses (fits=False + reason) what does not fit.  Routed experts
that fit neither in VRAM nor RAM are paged in from NVMe through the OS page cache (llama.cpp
mmap), modelled as an LRU over experts, so such a placement still "fits" but says why it is slow.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from moesim.errors import MoesimError
from moesim.timing_layout import (  # refusal codes, shared with the batch kernel
    KIND_CODES,
    R_BACKEND,
    R_CACHE_BUDGET,
    R_DENSE,
    R_ENGINE,
    R_HOST,
    R_NO_GPU,
    R_NO_LINK,
    R_NOT_UNIFIED,
    R_VRAM,
)

GPU, CPU, CACHE, FIDDLER = 0, 1, 2, 3
HOME_NAMES = {GPU: "gpu", CPU: "cpu", CACHE: "cache", FIDDLER: "cpu-or-fetch"}

SIMPLE_STRATEGIES = ("auto", "gpu", "cpu", "unified", "cpu-moe", "cpu-or-fetch", "ktransformers")
PARAM_STRATEGIES = ("ngl", "n-cpu-moe", "expert-cache", "tp", "ep")
STRATEGY_HELP = (
    "gpu | cpu | unified | auto | ngl:N | cpu-moe | n-cpu-moe:N | expert-cache:POLICY[:BYTES][:prefetch] "
    "| cpu-or-fetch | tp:N | ep:N | ktransformers"
)


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """Bytes and parameters of one (model, quant), per layer -- what the timing model reads.

    Arrays are float64.  `layer_fixed_*` cover everything in a block except routed experts.
    `expert_*` are per MoE layer (index m), for ONE routed expert.
    """

    model_id: str
    quant: str
    n_layers: int
    hidden_size: int
    layer_fixed_bytes: np.ndarray  # (L,)
    layer_fixed_params: np.ndarray  # (L,)
    layer_ffn_bytes: np.ndarray  # (L,) the dense FFN or shared-expert part of layer_fixed_bytes
    layer_ffn_params: np.ndarray  # (L,)
    moe_layers: np.ndarray  # (M,) int64 layer indices
    expert_bytes: np.ndarray  # (M,)
    expert_params: np.ndarray  # (M,)
    n_experts: int
    top_k: int
    output_bytes: float
    output_params: float
    embedding_bytes: float
    weights_bytes: float
    kv_bytes_per_token_layer: np.ndarray  # (L,) bytes per cached token per layer (one sequence)
    kv_window: np.ndarray  # (L,) int64, 0 = full attention
    attn_flops_per_ctx_token_layer: np.ndarray  # (L,) flops per query token per cached token
    gpu_kernel_efficiency: float = 1.0  # GPU mat-vec bandwidth fraction of this weight-format mix (vs F16)
    # derived in __post_init__ (read for every point, so computed once)
    layer_fixed_bytes_total: float = field(init=False, default=0.0)
    kv_per_token_total: float = field(init=False, default=0.0)
    has_window: bool = field(init=False, default=False)
    is_moe: bool = field(init=False, default=False)
    routed_bytes: float = field(init=False, default=0.0)

    def __post_init__(self):
        setter = object.__setattr__
        for name in ("layer_fixed_bytes", "layer_fixed_params", "layer_ffn_bytes", "layer_ffn_params", "expert_bytes",
                     "expert_params", "kv_bytes_per_token_layer", "attn_flops_per_ctx_token_layer"):
            setter(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        setter(self, "moe_layers", np.ascontiguousarray(self.moe_layers, dtype=np.int64))
        setter(self, "kv_window", np.ascontiguousarray(self.kv_window, dtype=np.int64))
        setter(self, "layer_fixed_bytes_total", float(self.layer_fixed_bytes.sum()))
        setter(self, "kv_per_token_total", float(self.kv_bytes_per_token_layer.sum()))
        setter(self, "has_window", bool((self.kv_window > 0).any()))
        setter(self, "is_moe", bool(self.n_experts > 0 and len(self.moe_layers) > 0))
        setter(self, "routed_bytes", float(self.expert_bytes.sum() * self.n_experts))

    def kv_bytes(self, context: float, batch: int = 1, layer_mask: np.ndarray | None = None) -> float:
        """KV-cache bytes at `context` tokens (sliding-window layers capped at their window)."""
        if layer_mask is None and not self.has_window:
            return self.kv_per_token_total * context * batch
        eff = np.where(self.kv_window > 0, np.minimum(context, self.kv_window), context)
        per_layer = self.kv_bytes_per_token_layer * eff * batch
        if layer_mask is not None:
            per_layer = per_layer[layer_mask]
        return float(per_layer.sum())


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """A parsed `--strategy` value."""

    kind: str  # gpu, cpu, unified, auto, ngl, cpu-moe, n-cpu-moe, expert-cache, cpu-or-fetch, tp, ep, ktransformers
    n: int = 0
    policy: str = "lru"
    cache_bytes: int | None = None  # expert-cache budget; None = all leftover VRAM
    prefetch: bool = False

    @property
    def name(self) -> str:
        if self.kind in ("ngl", "n-cpu-moe", "tp", "ep"):
            return f"{self.kind}:{self.n}"
        if self.kind == "expert-cache":
            parts = ["expert-cache", self.policy]
            if self.cache_bytes is not None:
                parts.append(str(self.cache_bytes))
            if self.prefetch:
                parts.append("prefetch")
            return ":".join(parts)
        return self.kind


_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?$", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """'24GB', '512MiB' or plain bytes -> bytes.  Negative or malformed -> MoesimError."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise MoesimError(f"cannot read size '{text}': use bytes or a number with a unit like 24GB or 512MiB")
    unit = m.group(2).lower() if m.group(2) else None
    return int(float(m.group(1)) * _UNITS[unit])


def parse_strategy(text: str) -> StrategySpec:
    """Parse a strategy name like `n-cpu-moe:20` or `expert-cache:lru:8GB`; bad ones -> MoesimError."""
    raw = text.strip().lower()
    if raw in SIMPLE_STRATEGIES:
        return StrategySpec(kind=raw)
    head, _, rest = raw.partition(":")
    if head in ("ngl", "n-cpu-moe", "tp", "ep"):
        try:
            n = int(rest)
        except ValueError:
            raise MoesimError(f"strategy '{text}' needs an integer, e.g. {head}:4") from None
        if n < 0 or (head in ("tp", "ep") and n < 1):
            raise MoesimError(f"strategy '{text}': the count must be {'>= 1' if head in ('tp', 'ep') else '>= 0'}")
        return StrategySpec(kind=head, n=n)
    if head == "expert-cache":
        parts = [p for p in rest.split(":") if p] if rest else []
        policy = parts.pop(0) if parts else "lru"
        prefetch = False
        cache_bytes = None
        for part in parts:
            if part == "prefetch":
                prefetch = True
            else:
                cache_bytes = parse_size(part)
        known = _known_policies()
        if known and policy not in known:
            from moesim.errors import unknown_id_error

            raise unknown_id_error("policy", policy, known)
        return StrategySpec(kind="expert-cache", policy=policy, cache_bytes=cache_bytes, prefetch=prefetch)
    raise MoesimError(f"unknown strategy '{text}'; use {STRATEGY_HELP}")


def _known_policies() -> tuple[str, ...]:
    try:
        from moesim.cache import POLICIES
    except Exception:  # the kernels package may not be importable yet; LRU is always modelled
        return ("lru",)
    return tuple(POLICIES)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where everything lives for one strategy on one machine, and whether it fits."""

    strategy: str
    fits: bool
    reason: str
    parallel: str  # "none" | "layer" | "tp" | "ep"
    n_gpus: int
    fixed_on_gpu: np.ndarray  # (L,) bool: always-on weights of the layer in VRAM
    kv_on_gpu: np.ndarray  # (L,) bool
    output_on_gpu: bool
    expert_home: np.ndarray  # (M,) int8: GPU / CPU / CACHE / FIDDLER
    cache_experts_per_layer: int  # VRAM cache slots per MoE layer for CACHE/FIDDLER homes
    ram_experts_per_layer: int  # host-RAM-resident experts per layer for host homes (< E: NVMe paging)
    policy: str
    prefetch: bool
    bytes_by_tier: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    # derived once at construction (read by the timing model for every step)
    cache_home: bool = False  # some MoE layer uses the VRAM expert cache (CACHE / FIDDLER)
    host_experts: bool = False  # some MoE layer keeps its experts in host RAM
    cpu_experts_on_gpu_layers: int = 0  # layers with GPU attention and CPU experts (two hand-offs each)
    gpu_kernel_layers: int = 0  # blocks (+ output head) that launch GPU kernels every step
    handoffs: int = 0  # CPU<->GPU hand-offs per step
    vram_fixed_bytes: float = 0.0  # always-on weights + output head read from VRAM each step
    kv_gpu_fraction: float = 0.0

    @property
    def uses_gpu(self) -> bool:
        return bool(self.fixed_on_gpu.any() or self.output_on_gpu or (self.expert_home != CPU).any())


_CONST: dict = {}


def _const(n: int, value, dtype) -> np.ndarray:
    """A cached read-only array of `n` copies of `value`."""
    key = (n, value, np.dtype(dtype).char)
    got = _CONST.get(key)
    if got is None:
        got = np.full(n, value, dtype=dtype)
        got.flags.writeable = False
        _CONST[key] = got
    return got


def _refuse(name: str, reason: str, profile: ModelProfile) -> Placement:
    L, M = profile.n_layers, len(profile.moe_layers)
    return Placement(
        strategy=name, fits=False, reason=reason, parallel="none", n_gpus=0,
        fixed_on_gpu=np.zeros(L, bool), kv_on_gpu=np.zeros(L, bool), output_on_gpu=False,
        expert_home=np.full(M, CPU, np.int8), cache_experts_per_layer=0, ram_experts_per_layer=profile.n_experts,
        policy="lru", prefetch=False, bytes_by_tier={},
    )


def _gb(x: float) -> str:
    return f"{x / 1e9:.1f} GB"


def refusal_reason(code: int, name: str, model_id: str, need: float = 0.0, cap: float = 0.0, unified: bool = False,
                   engine_notes: tuple[str, str] = ("", "")) -> str:
    """The one-line reason a placement does not fit; `engine_notes` is the hierarchy's (engine, backend) text."""
    if code == R_ENGINE:
        return f"{name}: {engine_notes[0]}"
    if code == R_BACKEND:
        return f"{name}: {engine_notes[1]}"
    if code == R_NO_GPU:
        return f"{name} needs a GPU; this is a CPU-only machine (use cpu)"
    if code == R_NOT_UNIFIED:
        return "unified needs a unified-memory machine (use gpu)"
    if code == R_DENSE:
        return f"{name} needs routed experts; {model_id} is a dense model"
    if code == R_NO_LINK:
        return f"{name} needs a host link; on unified memory every expert is already GPU-resident"
    if code == R_VRAM:
        where = "GPU-usable unified memory" if unified else "VRAM"
        return f"{name} needs {_gb(need)} of {where} but {_gb(cap)} is usable"
    if code == R_CACHE_BUDGET:
        return f"{name}: cache of {_gb(need)} does not fit, only {_gb(cap)} VRAM is left"
    if code == R_HOST:
        return f"{name} needs {_gb(need)} of host RAM for non-expert weights and KV but {_gb(cap)} is usable"
    return ""


def cache_note(slots: int, nbytes: float) -> str:
    return f"VRAM expert cache: {slots} experts per layer ({_gb(nbytes)})"


def nvme_note(ram_slots: int, n_experts: int, nvme_bytes: float) -> str:
    return f"host RAM holds {ram_slots}/{n_experts} experts per offloaded layer; {_gb(nvme_bytes)} paged from NVMe (mmap)"


def numa_note(sockets: int) -> str:
    return f"routed experts duplicated on {sockets} NUMA nodes"


def place(spec: StrategySpec, profile: ModelProfile, hier, context: int, batch: int, overhead_bytes: float) -> Placement:
    """Lay the model out for one (non-auto) strategy; refuse what does not fit.

    `overhead_bytes`: compute buffers + runtime per GPU (from the footprint's engine model).
    Raises MoesimError only for strategies that cannot be expressed on this machine at all
    (tp:3 on one GPU); placements that merely do not fit come back with fits=False.
    """
    name = spec.name
    L = profile.n_layers
    M = len(profile.moe_layers)
    E = profile.n_experts
    kind = spec.kind
    n_gpus = hier.gpu_count

    if kind in ("tp", "ep"):
        if spec.n > max(n_gpus, 0) or n_gpus == 0:
            raise MoesimError(f"strategy {name} needs {spec.n} GPUs but the machine has {n_gpus}")
        if spec.n != n_gpus:
            raise MoesimError(f"strategy {name} on {n_gpus} GPUs: use {kind}:{n_gpus} (all devices of the machine)")
    if kind == "auto":
        raise ValueError("resolve auto with choose_auto, not place()")

    # --- which strategies the engine runs here, and which make sense on this machine / model
    if not hier.runs(kind):
        return _refuse(name, refusal_reason(hier.engine_refusal_code, name, profile.model_id,
                                            engine_notes=hier.engine_notes), profile)
    if n_gpus == 0 and kind != "cpu":
        return _refuse(name, refusal_reason(R_NO_GPU, name, profile.model_id), profile)
    if kind == "unified" and not hier.unified:
        return _refuse(name, refusal_reason(R_NOT_UNIFIED, name, profile.model_id), profile)
    if kind in ("cpu-moe", "n-cpu-moe", "expert-cache", "cpu-or-fetch", "ktransformers", "ep") and not profile.is_moe:
        return _refuse(name, refusal_reason(R_DENSE, name, profile.model_id), profile)
    if kind in ("expert-cache", "cpu-or-fetch") and hier.unified:
        return _refuse(name, refusal_reason(R_NO_LINK, name, profile.model_id), profile)

    # shared read-only arrays for the common layouts (placements are built for every sweep point)
    fixed_on_gpu = _const(L, True, np.bool_)
    output_on_gpu = n_gpus > 0
    home = _const(M, GPU, np.int8)
    parallel = "layer" if n_gpus > 1 else "none"
    notes: list[str] = []

    if kind == "cpu":
        fixed_on_gpu = _const(L, False, np.bool_)
        output_on_gpu = False
        home = _const(M, CPU, np.int8)
        parallel = "none"
    elif kind == "ngl":
        n_gpu_layers = min(spec.n, L)
        # llama.cpp offloads the LAST n layers; the output head joins once n exceeds the block count
        fixed_on_gpu = np.arange(L) >= L - n_gpu_layers
        output_on_gpu = spec.n > L
        if M:
            home = np.where(fixed_on_gpu[profile.moe_layers], GPU, CPU).astype(np.int8)
    elif kind in ("cpu-moe", "n-cpu-moe"):
        n_layers_cpu = L if kind == "cpu-moe" else spec.n
        # llama.cpp --n-cpu-moe N: routed experts of blocks 0..N-1 stay in host RAM
        home = _const(M, CPU, np.int8) if kind == "cpu-moe" else np.where(profile.moe_layers < n_layers_cpu, CPU, GPU).astype(np.int8)
    elif kind == "ktransformers":
        home = _const(M, CPU, np.int8)
        parallel = "none"
    elif kind == "expert-cache":
        home = _const(M, CACHE, np.int8)
    elif kind == "cpu-or-fetch":
        home = _const(M, FIDDLER, np.int8)
    elif kind == "tp":
        parallel = "tp"
    elif kind == "ep":
        parallel = "ep"
    # gpu / unified: everything on the GPU(s)

    kv_on_gpu = fixed_on_gpu
    all_fixed_gpu = kind not in ("cpu", "ngl")  # only these two move whole blocks to the CPU
    if all_fixed_gpu:
        expert_gpu = home == GPU if kind in ("cpu-moe", "n-cpu-moe") else None
    gpus_used = n_gpus if (kind != "cpu" and (kind != "ngl" or spec.n > 0)) else 0

    # --- memory per tier (fast paths: most strategies keep every block's always-on part on the GPU)
    fixed_total = profile.layer_fixed_bytes_total
    kv_total = profile.kv_bytes(context, batch)
    if all_fixed_gpu:
        if kind in ("gpu", "unified", "tp", "ep"):
            gpu_experts = profile.routed_bytes
        elif expert_gpu is not None:
            gpu_experts = float(profile.expert_bytes[expert_gpu].sum()) * E
        else:  # ktransformers, expert-cache, cpu-or-fetch: every routed expert lives in host RAM
            gpu_experts = 0.0
        gpu_weights = fixed_total + gpu_experts + profile.output_bytes
        host_fixed = profile.embedding_bytes  # llama.cpp keeps token_embd in host memory: one row per token
        host_experts = profile.routed_bytes - gpu_experts
        kv_gpu, kv_host = kv_total, 0.0
    else:
        on = float(profile.layer_fixed_bytes[fixed_on_gpu].sum()) if gpus_used else 0.0
        gpu_experts = float(profile.expert_bytes[home == GPU].sum()) * E if (M and gpus_used) else 0.0
        gpu_weights = on + gpu_experts + (profile.output_bytes if output_on_gpu else 0.0)
        host_fixed = fixed_total - on + (0.0 if output_on_gpu else profile.output_bytes) + profile.embedding_bytes
        host_experts = profile.routed_bytes - gpu_experts
        kv_gpu = profile.kv_bytes(context, batch, kv_on_gpu) if gpus_used else 0.0
        kv_host = kv_total - kv_gpu
    if kind == "ktransformers" and hier.numa_duplicates and hier.host_sockets > 1:
        host_experts *= hier.host_sockets
        notes.append(numa_note(hier.host_sockets))
    host_fixed += kv_host

    vram_total_needed = gpu_weights + kv_gpu + (overhead_bytes * gpus_used if gpus_used else 0.0)
    vram_capacity = hier.gpu_capacity_bytes * max(gpus_used, 1) if gpus_used else 0.0
    cache_experts = 0
    cache_bytes_used = 0.0

    if gpus_used and vram_total_needed > vram_capacity:
        reason = refusal_reason(R_VRAM, name, profile.model_id, vram_total_needed, vram_capacity, hier.unified)
        return _refuse(name, reason + fitting_alternative(spec, profile, hier, context, batch, overhead_bytes), profile)

    if kind in ("expert-cache", "cpu-or-fetch"):
        leftover = vram_capacity - vram_total_needed
        budget = leftover if spec.cache_bytes is None else float(spec.cache_bytes)
        if budget > leftover + 1e-6:
            return _refuse(name, refusal_reason(R_CACHE_BUDGET, name, profile.model_id, budget, leftover), profile)
        per_slot = float(profile.expert_bytes.sum())  # one expert in every MoE layer
        cache_experts = int(min(E, max(0.0, budget) // per_slot)) if per_slot > 0 else 0
        cache_bytes_used = cache_experts * per_slot
        notes.append(cache_note(cache_experts, cache_bytes_used))

    # host RAM (unified: what the CPU side holds comes out of the same pool)
    host_capacity = hier.host_capacity_bytes
    if hier.unified:
        host_capacity = max(0.0, hier.pool_capacity_bytes - vram_total_needed)
    ram_experts = E
    nvme_bytes = 0.0
    if host_fixed > host_capacity:
        return _refuse(name, refusal_reason(R_HOST, name, profile.model_id, host_fixed, host_capacity), profile)
    if host_fixed + host_experts > host_capacity:
        # routed experts beyond RAM are paged from NVMe (mmap); the page cache keeps the hottest
        per_slot = host_experts / E
        ram_experts = int(max(0.0, host_capacity - host_fixed) // per_slot) if per_slot > 0 else 0
        ram_experts = min(ram_experts, E)
        nvme_bytes = host_experts - ram_experts * per_slot
        notes.append(nvme_note(ram_experts, E, nvme_bytes))
    bytes_by_tier = {
        "vram": int(round(vram_total_needed + cache_bytes_used)) if gpus_used else 0,
        "host": int(round(host_fixed + min(host_experts, max(0.0, host_capacity - host_fixed)))),
        "nvme": int(round(nvme_bytes)),
    }
    if gpus_used > 1:
        bytes_by_tier["vram_per_gpu"] = int(round((vram_total_needed + cache_bytes_used) / gpus_used))
    reason = "; ".join(n for n in notes if "NVMe" in n)
    # per-step constants the timing model reads: kernel-launching blocks, CPU<->GPU hand-offs
    if not gpus_used:
        gpu_kernel_layers = handoffs = 0
        vram_fixed = kv_gpu_fraction = 0.0
    elif all_fixed_gpu:
        n_cpu_exp = int((home == CPU).sum()) if M else 0
        gpu_kernel_layers = L + 1
        handoffs = 2 * n_cpu_exp if kind != "ktransformers" else 2 * M
        vram_fixed = fixed_total + profile.output_bytes
        kv_gpu_fraction = 1.0
    else:
        g = fixed_on_gpu
        gpu_kernel_layers = int(g.sum()) + int(output_on_gpu)
        handoffs = int(np.count_nonzero(g[1:] != g[:-1])) + int(bool(g[-1]) != output_on_gpu)
        vram_fixed = float(profile.layer_fixed_bytes[g].sum()) + (profile.output_bytes if output_on_gpu else 0.0)
        kv_gpu_fraction = kv_gpu / kv_total if kv_total > 0 else 0.0
    return Placement(
        strategy=name, fits=True, reason=reason, parallel=parallel if gpus_used else "none",
        n_gpus=gpus_used, fixed_on_gpu=fixed_on_gpu, kv_on_gpu=kv_on_gpu, output_on_gpu=output_on_gpu,
        expert_home=home, cache_experts_per_layer=cache_experts, ram_experts_per_layer=ram_experts,
        policy=spec.policy, prefetch=spec.prefetch, bytes_by_tier=bytes_by_tier, notes=tuple(notes),
        cache_home=kind in ("expert-cache", "cpu-or-fetch") and M > 0, host_experts=host_experts > 0,
        gpu_kernel_layers=gpu_kernel_layers, handoffs=handoffs, vram_fixed_bytes=vram_fixed, kv_gpu_fraction=kv_gpu_fraction,
        cpu_experts_on_gpu_layers=handoffs // 2 if all_fixed_gpu else 0,
    )


def auto_candidates(profile: ModelProfile, hier, context: int, batch: int, overhead_bytes: float) -> list[StrategySpec]:
    """The strategies `auto` compares, like llama.cpp `--fit`: all-on-GPU first (with several GPUs:
    layer split, tensor and expert parallel); only when none of those fits, the least offload that
    fits (fewest expert layers / most GPU layers), ktransformers' CPU experts and the CPU -- of those, the
    ones the hierarchy's engine implements and runs (never a what-if placement such as an expert cache)."""
    if hier.gpu_count == 0:
        return _engine_runs([StrategySpec("cpu")], hier)
    if hier.unified:
        return _engine_runs([StrategySpec("unified"), StrategySpec("cpu"),
                             StrategySpec("ngl", n=_max_ngl(profile, hier, context, batch, overhead_bytes))], hier)
    out = [StrategySpec("gpu")]
    if hier.gpu_count > 1:
        out.append(StrategySpec("tp", n=hier.gpu_count))
        if profile.is_moe:
            out.append(StrategySpec("ep", n=hier.gpu_count))
    if profile.is_moe:
        n = _min_n_cpu_moe(profile, hier, context, batch, overhead_bytes)
        if n is not None:
            out.append(StrategySpec("n-cpu-moe", n=n))
        out.append(StrategySpec("ktransformers"))
    out.append(StrategySpec("ngl", n=_max_ngl(profile, hier, context, batch, overhead_bytes)))
    out.append(StrategySpec("cpu"))
    # de-duplicate while keeping order
    seen, uniq = set(), []
    for s in out:
        if s.name not in seen:
            seen.add(s.name)
            uniq.append(s)
    return _engine_runs(uniq, hier)


def _engine_runs(candidates: list[StrategySpec], hier) -> list[StrategySpec]:
    """The candidates the hierarchy's engine implements and can run here; where it runs none of them,
    the first one, so that `auto` is refused with the engine's reason."""
    runnable = [spec for spec in candidates if hier.auto_kinds_mask >> KIND_CODES[spec.kind] & 1]
    return runnable or candidates[:1]


def _vram_free_for_weights(profile: ModelProfile, hier, overhead_bytes: float) -> float:
    return hier.gpu_capacity_bytes * hier.gpu_count - overhead_bytes * hier.gpu_count


def _min_n_cpu_moe(profile, hier, context, batch, overhead_bytes) -> int | None:
    """Smallest N for `--n-cpu-moe N` whose VRAM need fits (None if even all experts on CPU do not)."""
    free = _vram_free_for_weights(profile, hier, overhead_bytes)
    fixed = float(profile.layer_fixed_bytes.sum()) + profile.output_bytes + profile.kv_bytes(context, batch)
    per_layer = profile.expert_bytes * profile.n_experts
    total_exp = float(per_layer.sum())
    # moving blocks 0..N-1 removes the experts of MoE layers with index < N
    moved = np.concatenate([[0.0], np.cumsum(per_layer)])  # after k MoE layers
    need = fixed + total_exp - moved  # need[k]: first k MoE layers on CPU
    ok = np.nonzero(need <= free)[0]
    if len(ok) == 0:
        return None
    k = int(ok[0])
    if k == 0:
        return 0
    return int(profile.moe_layers[k - 1]) + 1


def fitting_alternative(spec: StrategySpec, profile: ModelProfile, hier, context: int, batch: int,
                        overhead_bytes: float) -> str:
    """For an `n-cpu-moe:N` / `ngl:N` that needs too much VRAM, the nearest N that fits, as a hint to append
    to the refusal ("" when there is none or the kind has no N to adjust)."""
    if spec.kind == "n-cpu-moe":
        n = _min_n_cpu_moe(profile, hier, context, batch, overhead_bytes)
        if n is not None and n > spec.n:
            return f"; the smallest N that fits is n-cpu-moe:{n}"
        return "; even with every expert on the CPU the rest does not fit" if n is None else ""
    if spec.kind == "ngl":
        n = _max_ngl(profile, hier, context, batch, overhead_bytes)
        if n < spec.n:
            return f"; the largest N that fits is ngl:{n}" if n > 0 else "; not even one layer fits"
    return ""


def _max_ngl(profile, hier, context, batch, overhead_bytes) -> int:
    """Largest `-ngl N` whose VRAM need fits (0 if none)."""
    free = _vram_free_for_weights(profile, hier, overhead_bytes)
    L = profile.n_layers
    per_layer = profile.layer_fixed_bytes.copy()
    per_layer[profile.moe_layers] += profile.expert_bytes * profile.n_experts
    per_layer += profile.kv_bytes_per_token_layer * np.where(
        profile.kv_window > 0, np.minimum(context, profile.kv_window), context) * batch
    # last n layers on the GPU
    rev = np.concatenate([[0.0], np.cumsum(per_layer[::-1])])
    ok = np.nonzero(rev <= free)[0]
    n = int(ok[-1]) if len(ok) else 0
    if n == L and rev[L] + profile.output_bytes <= free:
        return L + 1
    return n


LLAMA_CPP_ENGINES = ("llama.cpp", "ik_llama.cpp")  # both build `llama-server` with the same offload flags


def llama_cpp_command(spec_name: str, model_file: str, context: int, batch: int, n_gpus: int, hier=None,
                      engine: str = "llama.cpp") -> str:
    """The llama.cpp command line that reproduces a placement (or says there is none); empty for engines
    that are not llama.cpp builds (a llama-server line would not reproduce their run), except the
    ktransformers placement, which gets its own launcher."""
    kind, _, arg = spec_name.partition(":")
    if engine not in LLAMA_CPP_ENGINES and kind != "ktransformers":
        return ""
    ctx = f"-c {max(context, 1) * max(batch, 1)}"
    par = f" -np {batch}" if batch > 1 else ""
    base = f"llama-server -m {model_file}"
    if kind in ("gpu", "unified"):
        split = " --split-mode layer" if n_gpus > 1 else ""
        return f"{base} -ngl 999{split} {ctx}{par}"
    if kind == "cpu":
        return f"{base} -ngl 0 {ctx}{par}"
    if kind == "ngl":
        return f"{base} -ngl {arg} {ctx}{par}"
    if kind == "cpu-moe":
        return f"{base} -ngl 999 --cpu-moe {ctx}{par}"
    if kind == "n-cpu-moe":
        return f"{base} -ngl 999 --n-cpu-moe {arg} {ctx}{par}"
    if kind == "tp":
        return f"{base} -ngl 999 --split-mode row {ctx}{par}"
    if kind == "ktransformers":
        return f"# ktransformers: python -m ktransformers.local_chat --gguf_path {model_file} (routed experts on CPU, attention + KV on GPU)"
    if kind in ("expert-cache", "cpu-or-fetch"):
        return f"# no llama.cpp flag for a VRAM expert cache; closest: {base} -ngl 999 --cpu-moe {ctx}{par}"
    return ""
