"""Timing model: seconds per decode step and per prefill micro-batch, from bytes and where they live.

Per token and per layer: attention weights + the KV cache at the current context (sliding
windows capped) on the tier that holds them, the dense/shared FFN, the routed experts (VRAM
hits, CPU experts at host bandwidth or CPU compute, misses over the host link, NVMe page-ins,
prefetch overlap), the output head, kernel-launch overhead, CPU<->GPU hand-offs and multi-GPU
collectives.  Routed-expert work varies per token (which experts the trace picks, what the
cache holds) and is evaluated by the Numba kernel in `moesim.kernels.timing`; everything else
is a few numpy operations over layers.  Every quantity is a roofline: max(bytes / bandwidth,
flops / throughput) on the device that does the work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from moesim.placement import CACHE, CPU, FIDDLER, GPU, ModelProfile, Placement


# ----------------------------------------------------------------------------- routing statistics


class RoutingStats:
    """What the timing model needs from a routing trace, computed once per (model, trace).

    `experts`: (n_seqs, n_tokens, n_moe_layers, top_k) expert ids of B=1 decode streams (sequence
    0 drives the cache curves).  The first `warmup_tokens` tokens warm caches and are not timed.
    """

    def __init__(self, experts: np.ndarray, n_experts: int, warmup_tokens: int = 0):
        if experts.ndim == 3:
            experts = experts[None]
        self.experts = np.ascontiguousarray(experts)
        self.n_seqs, n_tok, self.n_moe, self.top_k = self.experts.shape
        self.n_experts = int(n_experts)
        self.warmup = int(warmup_tokens)
        self.n_steps = n_tok - self.warmup
        self._counts: dict[int, np.ndarray] = {}
        self._ep: dict[tuple[int, int], np.ndarray] = {}
        self._miss: dict[tuple[str, int], np.ndarray] = {}
        self._curve = None
        # shared read-only inputs for placements that do not use them
        self.zeros = np.zeros((self.n_steps, self.n_moe))
        self.zeros_m = np.zeros(self.n_moe)
        self.inf_m = np.full(self.n_moe, math.inf)

    # distinct experts per step and layer for a batch of B sequences
    def counts(self, batch: int) -> np.ndarray:
        b = max(1, min(int(batch), self.n_seqs))
        got = self._counts.get(b)
        if got is None:
            sel = self.experts[:b, self.warmup:]  # (b, T, M, k)
            if b == 1:
                got = np.full((self.n_steps, self.n_moe), float(self.top_k))
            else:
                stacked = np.moveaxis(sel, 0, 2).reshape(self.n_steps, self.n_moe, b * self.top_k)
                srt = np.sort(stacked, axis=2)
                got = (1 + (np.diff(srt.astype(np.int32), axis=2) != 0).sum(axis=2)).astype(np.float64)
            self._counts[b] = got
        return got

    def scale_batch(self, batch: int) -> float:
        """Sequences per step the trace can model (batches beyond the trace's sequences are
        approximated by the largest available union)."""
        return float(batch) / float(max(1, min(int(batch), self.n_seqs)))

    def ep_max_counts(self, n_gpus: int, batch: int) -> np.ndarray:
        """Experts the busiest GPU reads per step when expert e lives on GPU e mod n."""
        b = max(1, min(int(batch), self.n_seqs))
        key = (n_gpus, b)
        got = self._ep.get(key)
        if got is None:
            sel = self.experts[:b, self.warmup:]
            stacked = np.moveaxis(sel, 0, 2).reshape(self.n_steps, self.n_moe, b * self.top_k).astype(np.int64)
            srt = np.sort(stacked, axis=2)
            first = np.ones_like(srt, dtype=bool)
            first[:, :, 1:] = np.diff(srt, axis=2) != 0
            gpu_of = srt % n_gpus
            per_gpu = np.zeros((self.n_steps, self.n_moe, n_gpus))
            for g in range(n_gpus):
                per_gpu[:, :, g] = ((gpu_of == g) & first).sum(axis=2)
            got = per_gpu.max(axis=2)
            self._ep[key] = got
        return got

    def _lru_curve(self):
        if self._curve is None:
            from moesim.cache import lru_curve

            # per-layer pools counted in experts (unit sizes): independent of the quantization
            self._curve = lru_curve(
                self.experts[0], np.ones(self.n_moe, np.int64), scope="per-layer",
                warmup_tokens=self.warmup, n_experts=self.n_experts,
            )
        return self._curve

    def lru_needs(self) -> np.ndarray:
        """(T, M, k) int16: per look-up, the smallest per-layer LRU capacity (in experts) that hits,
        clipped to n_experts + 1 (first use: no capacity below n_experts hits)."""
        if self.n_moe == 0:
            return np.zeros((self.n_steps, 0, 1), np.int16)
        got = getattr(self, "_needs16", None)
        if got is None:
            got = np.ascontiguousarray(np.minimum(self._lru_curve().needs, self.n_experts + 1), dtype=np.int16)
            self._needs16 = got
        return got

    def misses(self, experts_per_layer: int, policy: str = "lru") -> np.ndarray:
        """(T, M) misses of sequence 0 with `experts_per_layer` cache slots in every MoE layer."""
        c = int(max(0, min(experts_per_layer, self.n_experts)))
        key = (policy, c)
        got = self._miss.get(key)
        if got is None:
            if c >= self.n_experts:
                got = np.zeros((self.n_steps, self.n_moe))
            elif c == 0:
                got = np.full((self.n_steps, self.n_moe), float(self.top_k))
            elif policy == "lru":
                got = self._lru_curve().misses_at(np.full(self.n_moe, c, np.int64)).astype(np.float64)
            else:
                from moesim.cache import replay

                res = replay(self.experts[0], policy, np.full(self.n_moe, c, np.int64), np.ones(self.n_moe, np.int64),
                             scope="per-layer", warmup_tokens=self.warmup, n_experts=self.n_experts)
                got = res.misses.astype(np.float64)
            self._miss[key] = got
        return got

    def prefetch_replay(self, experts_per_layer: int) -> tuple[np.ndarray, np.ndarray]:
        """LRU cache with next-layer prefetch (co-occurrence predictor learned on the warm-up prefix,
        `moesim.cache.replay`): (demand misses, expert copies over the link) per step and layer.
        Prefetched copies are spread evenly over the layers of their step."""
        c = int(max(0, min(experts_per_layer, self.n_experts)))
        key = ("prefetch", c)
        got = self._miss.get(key)
        if got is None:
            if c >= self.n_experts:
                zeros = np.zeros((self.n_steps, self.n_moe))
                got = (zeros, zeros)
            else:
                from moesim.cache import PrefetchSpec, replay

                res = replay(self.experts[0], "lru", np.full(self.n_moe, c, np.int64), np.ones(self.n_moe, np.int64),
                             scope="per-layer", warmup_tokens=self.warmup,
                             prefetch=PrefetchSpec(predictor="cooccurrence"), n_experts=self.n_experts)
                demand = res.misses.astype(np.float64)
                copies = demand + (res.prefetch.prefetch_bytes.astype(np.float64) / max(self.n_moe, 1))[:, None]
                got = (demand, copies)
            self._miss[key] = got
        return got


def dense_routing(n_steps: int = 1) -> RoutingStats:
    """A routing stand-in for dense models (no MoE layers)."""
    return RoutingStats(np.zeros((1, n_steps, 0, 1), np.uint8), n_experts=1)


# ----------------------------------------------------------------------------- decode


@dataclass(frozen=True)
class DecodeTiming:
    step_s: np.ndarray  # (T,) seconds per decode step (one token for each of the batch's sequences)
    breakdown_s: dict  # mean seconds per step by component
    bytes_per_token_by_link: dict
    hit_rate: float
    mean_step_s: float = float("nan")


def _safe_inv(x: float) -> float:
    return 1.0 / x if x > 0 else math.inf


def _roofline(nbytes, flops, inv_bw, inv_flops):
    """max(bytes / bandwidth, flops / throughput), elementwise, treating 0 x inf as 0."""
    a = np.where(nbytes > 0, nbytes * inv_bw, 0.0) if np.ndim(nbytes) else (nbytes * inv_bw if nbytes > 0 else 0.0)
    b = np.where(flops > 0, flops * inv_flops, 0.0) if np.ndim(flops) else (flops * inv_flops if flops > 0 else 0.0)
    return np.maximum(a, b)


def decode_timing(profile: ModelProfile, pl: Placement, hier, routing: RoutingStats, context: int, batch: int) -> DecodeTiming:
    """Seconds per decode step for every step of the routing trace, plus where the time goes."""
    from moesim.kernels.timing import _decode_point

    B = max(1, int(batch))
    T = routing.n_steps
    L = profile.n_layers
    M = len(profile.moe_layers)
    n = max(1, pl.n_gpus)
    split = n if pl.parallel in ("tp", "ep") else 1
    has_gpu = pl.n_gpus > 0 and hier.gpu_bandwidth_bps > 0
    inv_gbw_kv = 1.0 / (hier.gpu_bandwidth_bps * split) if has_gpu else math.inf
    # weights stream through the format's mat-vec kernel; the KV cache does not
    inv_gbw = inv_gbw_kv / profile.gpu_kernel_efficiency
    inv_gfl = 1.0 / (hier.gpu_flops * split) if has_gpu and hier.gpu_flops > 0 else 0.0
    inv_hbw = 1.0 / hier.host_bandwidth_bps
    inv_cops = 1.0 / hier.cpu_ops if hier.cpu_ops > 0 else 0.0
    inv_link = 1.0 / hier.link_bandwidth_bps if hier.link_bandwidth_bps > 0 else math.inf

    if M:
        counts = routing.counts(B)
        bscale = routing.scale_batch(B)
        if bscale != 1.0:
            counts = np.minimum(counts * bscale, float(profile.n_experts))
        gpu_counts = routing.ep_max_counts(n, B) if pl.parallel == "ep" else counts
        demand = None
        if pl.cache_home:
            if pl.prefetch:
                # link time counts every copy (demand + prefetch); the hit rate only demand misses
                demand, base = routing.prefetch_replay(pl.cache_experts_per_layer)
            else:
                base = routing.misses(pl.cache_experts_per_layer, pl.policy)
            misses = base * (counts / routing.top_k) if B > 1 else base
        else:
            misses = routing.zeros
        if pl.host_experts and pl.ram_experts_per_layer < profile.n_experts:
            base = routing.misses(pl.ram_experts_per_layer)
            ram_misses = base * (counts / routing.top_k) if B > 1 else base
        else:
            ram_misses = routing.zeros
        # with one sequence every layer reads top_k experts per step; unless a cache, NVMe paging or
        # expert parallelism makes steps differ, one row stands for every step
        if B == 1 and misses is routing.zeros and ram_misses is routing.zeros and pl.parallel != "ep":
            counts, gpu_counts, misses, ram_misses = counts[:1], counts[:1], misses[:1], ram_misses[:1]
        top_k = routing.top_k
    else:
        counts = gpu_counts = misses = ram_misses = _EMPTY_ROWS
        top_k = 0
        demand = None
    step_s = np.empty(T)
    parts = np.empty(10)
    traffic = np.empty(6)
    _decode_point(
        profile.layer_fixed_bytes, profile.layer_fixed_params, profile.layer_ffn_bytes, profile.layer_ffn_params,
        profile.kv_bytes_per_token_layer, profile.kv_window, profile.moe_layers, profile.expert_bytes, profile.expert_params,
        float(profile.output_bytes), float(profile.output_params),
        pl.fixed_on_gpu, pl.kv_on_gpu, bool(pl.output_on_gpu), pl.expert_home,
        inv_gbw, inv_gbw_kv, inv_gfl, inv_hbw, inv_cops, float(hier.link_latency_s), inv_link, 1.0 / hier.nvme_bandwidth_bps,
        bool(hier.overlaps_cpu_gpu), bool(pl.prefetch), counts, gpu_counts, misses, ram_misses,
        float(top_k), float(B), float(context), step_s, parts, traffic,
    )
    hit_rate = float(traffic[5] / traffic[4]) if (has_gpu and M and traffic[4] > 0) else float("nan")
    if M and demand is not None and traffic[4] > 0:
        d = demand * (counts / routing.top_k) if B > 1 else demand
        hit_rate = float(1.0 - d.sum() / (traffic[4] * T))  # traffic is per step

    # fixed costs per step: kernel launches, CPU<->GPU hand-offs, multi-GPU collectives
    launch_s = (hier.launch_overhead_s + hier.gpu_layer_floor_s) * pl.gpu_kernel_layers if pl.n_gpus else 0.0
    sync_s = pl.handoffs * hier.sync_latency_s if (pl.n_gpus and not hier.unified) else 0.0
    coll_s = 0.0
    ic_bytes = 0.0
    if pl.n_gpus > 1:
        act = profile.hidden_size * 2.0 * B
        inv_ic = 1.0 / hier.interconnect_bandwidth_bps if hier.interconnect_bandwidth_bps > 0 else 0.0
        if pl.parallel == "tp":
            n_coll, per_bytes = 2 * L, act * 2 * (n - 1) / n
        elif pl.parallel == "ep":
            n_coll, per_bytes = 2 * L, act * (n - 1) / n
        else:  # layer split: activations hop once per GPU boundary
            n_coll, per_bytes = n - 1, act
        coll_s = n_coll * (hier.collective_latency_s + per_bytes * inv_ic)
        ic_bytes = n_coll * per_bytes
    token_s = hier.token_overhead_s
    extra = launch_s + sync_s + coll_s + token_s
    if extra:
        step_s += extra
    mean_step_s = float(parts[9]) + extra

    breakdown = {
        "attention_weights": float(parts[0]),
        "kv_cache": float(parts[3]),
        "dense_ffn": float(parts[1]),
        "experts_gpu": float(parts[4]),
        "experts_cpu": float(parts[5]),
        "expert_fetch_link": float(parts[6]),
        "nvme_page_in": float(parts[7]),
        "overlap_hidden": -float(parts[8]),
        "output_head": float(parts[2]),
        "launch_overhead": launch_s,
        "cpu_gpu_sync": sync_s,
        "collectives": coll_s,
        "token_overhead": token_s,
    }
    # (the shared-expert FFN of MoE layers is inside experts_gpu / experts_cpu: it overlaps with them)
    kv_bytes_mean = profile.kv_bytes(context + (T - 1) / 2.0, B)
    vram_fixed = pl.vram_fixed_bytes
    host_fixed = float(profile.layer_fixed_bytes_total + profile.output_bytes) - vram_fixed
    kv_gpu_frac = pl.kv_gpu_fraction
    links = {
        "vram": (vram_fixed + traffic[2] + kv_bytes_mean * kv_gpu_frac) / B if pl.n_gpus else 0.0,
        "host_ram": (host_fixed + traffic[3] + kv_bytes_mean * (1 - kv_gpu_frac)) / B,
        "pcie": float(traffic[0]) / B,
        "nvme": float(traffic[1]) / B,
        "interconnect": ic_bytes / B,
    }
    return DecodeTiming(step_s=step_s, breakdown_s=breakdown, bytes_per_token_by_link=links, hit_rate=hit_rate,
                        mean_step_s=mean_step_s)


_EMPTY_ROWS = np.zeros((1, 0))


# ----------------------------------------------------------------------------- prefill


@dataclass(frozen=True)
class PrefillTiming:
    seconds: float
    tok_s: float
    breakdown_s: dict = field(default_factory=dict)


def prefill_timing(profile: ModelProfile, pl: Placement, hier, engine, prompt_tokens: int, context_start: int = 0) -> PrefillTiming:
    """Seconds to process a prompt of `prompt_tokens`, micro-batch by micro-batch (roofline each)."""
    from moesim.kernels.timing import _prefill_point

    P = int(prompt_tokens)
    if P <= 0:
        return PrefillTiming(0.0, float("nan"), {})
    n = max(1, pl.n_gpus)
    split = n if pl.parallel in ("tp", "ep") else 1
    has_gpu = pl.n_gpus > 0 and hier.gpu_bandwidth_bps > 0
    inv_gbw = 1.0 / (hier.gpu_bandwidth_bps * split) if has_gpu else math.inf
    inv_gfl = 1.0 / (hier.gpu_flops * split) if has_gpu and hier.gpu_flops > 0 else 0.0
    inv_cops = 1.0 / hier.cpu_ops if hier.cpu_ops > 0 else 0.0
    uploads = bool(getattr(engine, "uploads_weights_for_prefill", False)) and has_gpu and not hier.unified
    parts = np.empty(6)
    _prefill_point(
        profile.layer_fixed_bytes, profile.layer_fixed_params, profile.moe_layers, profile.expert_bytes,
        profile.expert_params, pl.expert_home, pl.fixed_on_gpu, pl.kv_on_gpu, profile.attn_flops_per_ctx_token_layer,
        profile.kv_window, float(profile.output_bytes), float(profile.output_params), bool(pl.output_on_gpu),
        float(max(profile.n_experts, 1)), float(profile.top_k), P, int(getattr(engine, "prefill_ubatch", 512) or 512),
        float(context_start), uploads, int(getattr(engine, "prefill_upload_min_batch", 32)), has_gpu,
        inv_gbw, inv_gfl, 1.0 / hier.host_bandwidth_bps, inv_cops,
        1.0 / hier.link_pageable_bandwidth_bps if hier.link_pageable_bandwidth_bps > 0 else math.inf,
        1.0 / hier.link_bandwidth_bps if hier.link_bandwidth_bps > 0 else math.inf,
        (hier.launch_overhead_s + hier.gpu_layer_floor_s) if pl.n_gpus else 0.0, parts,
    )
    total = float(parts.sum())
    names = ("gpu_weights", "cpu_weights", "upload", "attention", "overhead", "output_head")
    return PrefillTiming(seconds=total, tok_s=P / total if total > 0 else float("nan"),
                         breakdown_s={k: float(v) for k, v in zip(names, parts)})
