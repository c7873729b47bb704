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

    def prefetch_misses(self, experts_per_layer: int) -> np.ndarray:
        """Misses left after next-layer prefetch: approximated by a cache one prediction larger
        per layer (the prefetcher brings in the next layer's likely experts ahead of use)."""
        return self.misses(experts_per_layer + self.top_k)


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


def _safe_inv(x: float) -> float:
    return 1.0 / x if x > 0 else math.inf


def _roofline(nbytes, flops, inv_bw, inv_flops):
    """max(bytes / bandwidth, flops / throughput), elementwise, treating 0 x inf as 0."""
    a = np.where(nbytes > 0, nbytes * inv_bw, 0.0) if np.ndim(nbytes) else (nbytes * inv_bw if nbytes > 0 else 0.0)
    b = np.where(flops > 0, flops * inv_flops, 0.0) if np.ndim(flops) else (flops * inv_flops if flops > 0 else 0.0)
    return np.maximum(a, b)


def decode_timing(profile: ModelProfile, pl: Placement, hier, routing: RoutingStats, context: int, batch: int) -> DecodeTiming:
    """Seconds per decode step for every step of the routing trace, plus where the time goes."""
    from moesim.kernels.timing import _expert_time_per_token, _kv_time_per_token

    B = max(1, int(batch))
    T = routing.n_steps
    L = profile.n_layers
    M = len(profile.moe_layers)
    n = max(1, pl.n_gpus)
    split = n if pl.parallel in ("tp", "ep") else 1
    has_gpu = pl.n_gpus > 0 and hier.gpu_bandwidth_bps > 0
    inv_gbw = 1.0 / (hier.gpu_bandwidth_bps * split) if has_gpu else math.inf
    inv_gfl = 1.0 / (hier.gpu_flops * split) if has_gpu and hier.gpu_flops > 0 else 0.0
    inv_hbw = 1.0 / hier.host_bandwidth_bps
    inv_cops = 1.0 / hier.cpu_ops if hier.cpu_ops > 0 else 0.0
    g = pl.fixed_on_gpu
    all_gpu = bool(g.all())
    no_gpu = not bool(g.any())

    # attention weights and FFN (everything in a block but the routed experts): roofline per layer
    ffn_b, ffn_p = profile.layer_ffn_bytes, profile.layer_ffn_params
    att_b = profile.layer_fixed_bytes - ffn_b
    att_p = profile.layer_fixed_params - ffn_p
    two_b = 2.0 * B
    if all_gpu:
        att_l = np.maximum(att_b * inv_gbw, att_p * (two_b * inv_gfl))
        ffn_l = np.maximum(ffn_b * inv_gbw, ffn_p * (two_b * inv_gfl))
    elif no_gpu:
        att_l = np.maximum(att_b * inv_hbw, att_p * (two_b * inv_cops))
        ffn_l = np.maximum(ffn_b * inv_hbw, ffn_p * (two_b * inv_cops))
    else:
        inv_bw = np.where(g, inv_gbw, inv_hbw)
        inv_fl = np.where(g, two_b * inv_gfl, two_b * inv_cops)
        att_l = np.maximum(att_b * inv_bw, att_p * inv_fl)
        ffn_l = np.maximum(ffn_b * inv_bw, ffn_p * inv_fl)
    attn_s = float(att_l.sum())
    ffn_total = float(ffn_l.sum())

    # output head
    if pl.output_on_gpu:
        head_s = max(profile.output_bytes * inv_gbw, 2.0 * profile.output_params * B * inv_gfl)
    else:
        head_s = max(profile.output_bytes * inv_hbw, 2.0 * profile.output_params * B * inv_cops)

    step_s = np.zeros(T)
    # KV cache read at every step (context grows by one per step; windows cap)
    kv_inv = np.where(pl.kv_on_gpu, inv_gbw, inv_hbw) if not (all_gpu or no_gpu) else (inv_gbw if all_gpu else inv_hbw)
    kv_coef = profile.kv_bytes_per_token_layer * (B * kv_inv)
    _kv_time_per_token(float(context), kv_coef, profile.kv_window, step_s)
    kv_mean_s = float(step_s.mean())
    kv_bytes_mean = profile.kv_bytes(context + (T - 1) / 2.0, B)

    # routed experts: per token, per MoE layer (the kernel)
    parts = np.zeros(5)
    traffic = np.zeros(6)
    traffic_rows = T
    expert_s = np.zeros(T)
    hit_rate = float("nan")
    shared_s = 0.0
    if M:
        home = pl.expert_home
        eb = profile.expert_bytes
        counts = routing.counts(B)
        bscale = routing.scale_batch(B)
        if bscale != 1.0:
            counts = np.minimum(counts * bscale, float(profile.n_experts))
        gpu_counts = routing.ep_max_counts(n, B) if pl.parallel == "ep" else counts
        host_home = pl.host_experts
        if pl.cache_home:
            base = routing.prefetch_misses(pl.cache_experts_per_layer) if pl.prefetch else routing.misses(pl.cache_experts_per_layer, pl.policy)
            misses = base * (counts / routing.top_k) if B > 1 else base
        else:
            misses = routing.zeros
        if host_home and pl.ram_experts_per_layer < profile.n_experts:
            base = routing.misses(pl.ram_experts_per_layer)
            ram_misses = base * (counts / routing.top_k) if B > 1 else base
        else:
            ram_misses = routing.zeros
        ml = profile.moe_layers
        shared = ffn_l[ml]
        if all_gpu:
            shared_gpu, shared_cpu = shared, routing.zeros_m
        elif no_gpu:
            shared_gpu, shared_cpu = routing.zeros_m, shared
        else:
            mg = g[ml]
            shared_gpu = np.where(mg, shared, 0.0)
            shared_cpu = np.where(mg, 0.0, shared)
        shared_s = float(shared.sum())
        # with one sequence, every layer reads top_k experts per step; unless a cache, NVMe paging or
        # expert parallelism makes steps differ, one row of the kernel stands for every step
        uniform = B == 1 and misses is routing.zeros and ram_misses is routing.zeros and pl.parallel != "ep"
        if uniform:
            counts, gpu_counts, misses, ram_misses = counts[:1], counts[:1], misses[:1], ram_misses[:1]
        rows = counts.shape[0]
        flops = profile.expert_params * (2.0 * routing.top_k * B)
        link_expert = eb * (1.0 / hier.link_bandwidth_bps) + hier.link_latency_s if hier.link_bandwidth_bps > 0 else routing.inf_m
        _expert_time_per_token(
            counts, gpu_counts, misses, ram_misses, home,
            shared_gpu, shared_cpu, eb * inv_gbw, eb * inv_hbw, link_expert, eb * (1.0 / hier.nvme_bandwidth_bps),
            flops * inv_gfl, flops * inv_cops, bool(hier.overlaps_cpu_gpu), bool(pl.prefetch), eb, expert_s[:rows], parts,
            traffic,
        )
        step_s += expert_s[0] if uniform else expert_s
        parts /= rows
        traffic_rows = rows
        if has_gpu and traffic[4] > 0:
            hit_rate = float(traffic[5] / traffic[4])
        dense_ffn_s = ffn_total - shared_s
    else:
        dense_ffn_s = ffn_total

    # fixed costs per step
    if pl.n_gpus:
        n_gpu_layers = int(g.sum())
        if M and not all_gpu:
            n_gpu_layers += int(((pl.expert_home != 0) & ~g[profile.moe_layers]).sum())
        launch_s = hier.launch_overhead_s * float(n_gpu_layers + (1 if pl.output_on_gpu else 0))
    else:
        launch_s = 0.0
    # CPU<->GPU hand-offs: each change of device along the layer sequence, and two per layer whose
    # routed experts run on the CPU while its attention runs on the GPU
    sync_s = 0.0
    if pl.n_gpus and not hier.unified:
        handoffs = 0
        if not all_gpu:
            handoffs += int(np.count_nonzero(g[1:] != g[:-1])) + int(bool(g[-1]) != pl.output_on_gpu)
        if M and pl.cpu_experts_on_gpu_layers:
            handoffs += 2 * pl.cpu_experts_on_gpu_layers
        sync_s = handoffs * hier.sync_latency_s
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

    fixed_s = attn_s + dense_ffn_s + head_s + launch_s + sync_s + coll_s
    step_s += fixed_s

    breakdown = {
        "attention_weights": attn_s,
        "kv_cache": kv_mean_s,
        "dense_ffn": dense_ffn_s,
        "experts_gpu": parts[0],
        "experts_cpu": parts[1],
        "expert_fetch_link": parts[2],
        "nvme_page_in": parts[3],
        "overlap_hidden": -parts[4],
        "output_head": head_s,
        "launch_overhead": launch_s,
        "cpu_gpu_sync": sync_s,
        "collectives": coll_s,
    }
    # (the shared-expert FFN of MoE layers is inside experts_gpu / experts_cpu: it overlaps with them)
    if all_gpu:
        vram_fixed = float(profile.layer_fixed_bytes.sum())
        kv_gpu_frac = 1.0
    elif no_gpu:
        vram_fixed = 0.0
        kv_gpu_frac = 0.0
    else:
        vram_fixed = float(profile.layer_fixed_bytes[g].sum())
        kv_gpu_frac = float(profile.kv_bytes_per_token_layer[pl.kv_on_gpu].sum() / profile.kv_bytes_per_token_layer.sum())
    host_fixed = float(profile.layer_fixed_bytes.sum()) - vram_fixed
    if pl.output_on_gpu:
        vram_fixed += profile.output_bytes
    else:
        host_fixed += profile.output_bytes
    links = {
        "vram": (vram_fixed + traffic[2] / traffic_rows + kv_bytes_mean * kv_gpu_frac) / B if pl.n_gpus else 0.0,
        "host_ram": (host_fixed + traffic[3] / traffic_rows + kv_bytes_mean * (1 - kv_gpu_frac)) / B,
        "pcie": traffic[0] / traffic_rows / B,
        "nvme": traffic[1] / traffic_rows / B,
        "interconnect": ic_bytes / B,
    }
    return DecodeTiming(step_s=step_s, breakdown_s=breakdown, bytes_per_token_by_link=links, hit_rate=hit_rate)


# ----------------------------------------------------------------------------- prefill


@dataclass(frozen=True)
class PrefillTiming:
    seconds: float
    tok_s: float
    breakdown_s: dict = field(default_factory=dict)


def prefill_timing(profile: ModelProfile, pl: Placement, hier, engine, prompt_tokens: int, context_start: int = 0) -> PrefillTiming:
    """Seconds to process a prompt of `prompt_tokens`, micro-batch by micro-batch (roofline each)."""
    P = int(prompt_tokens)
    if P <= 0:
        return PrefillTiming(0.0, float("nan"), {})
    ubatch = int(getattr(engine, "prefill_ubatch", 512) or 512)
    uploads = bool(getattr(engine, "uploads_weights_for_prefill", False)) and pl.n_gpus > 0 and not hier.unified
    min_upload = int(getattr(engine, "prefill_upload_min_batch", 32))
    n = max(1, pl.n_gpus)
    split = n if pl.parallel in ("tp", "ep") else 1
    inv_gbw = _safe_inv(hier.gpu_bandwidth_bps * split)
    inv_gfl = _safe_inv(hier.gpu_flops * split)
    inv_hbw = _safe_inv(hier.host_bandwidth_bps)
    inv_cops = _safe_inv(hier.cpu_ops)
    inv_link = _safe_inv(hier.link_pageable_bandwidth_bps)
    g = pl.fixed_on_gpu
    E, k = profile.n_experts, profile.top_k

    total = 0.0
    parts = {"gpu_weights": 0.0, "cpu_weights": 0.0, "upload": 0.0, "attention": 0.0, "overhead": 0.0}
    done = 0
    while done < P:
        nt = min(ubatch, P - done)
        up = uploads and nt >= min_upload
        # always-on weights
        fb, fp = profile.layer_fixed_bytes, profile.layer_fixed_params * 2 * nt
        t_gpu = float(_roofline(fb[g], fp[g], inv_gbw, inv_gfl).sum()) if g.any() else 0.0
        if up:
            t_up = float(fb[~g].sum()) * inv_link
            t_cpu = float(fp[~g].sum()) * inv_gfl
        else:
            t_up = 0.0
            t_cpu = float(_roofline(fb[~g], fp[~g], inv_hbw, inv_cops).sum())
        # routed experts: distinct experts a micro-batch touches, expected under uniform routing
        if len(profile.moe_layers):
            distinct = E * (1.0 - (1.0 - k / E) ** nt)
            eb = profile.expert_bytes
            flops = 2.0 * profile.expert_params * k * nt
            home = pl.expert_home
            on_gpu = home == GPU
            t_gpu += float(_roofline(distinct * eb[on_gpu], flops[on_gpu], inv_gbw, inv_gfl).sum())
            host = ~on_gpu
            if host.any():
                if up or (home[host] != CPU).all() and pl.n_gpus > 0:
                    inv = inv_link if up else _safe_inv(hier.link_bandwidth_bps)
                    t_up += float((distinct * eb[host]).sum()) * inv
                    t_cpu += float(flops[host].sum()) * inv_gfl
                else:
                    t_cpu += float(_roofline(distinct * eb[host], flops[host], inv_hbw, inv_cops).sum())
        # attention over the cached prefix (causal: the average query sees half the micro-batch)
        ctx_avg = context_start + done + nt / 2.0
        aflops = profile.attn_flops_per_ctx_token_layer * nt * np.where(
            profile.kv_window > 0, np.minimum(ctx_avg, profile.kv_window), ctx_avg)
        t_att = float(aflops[pl.kv_on_gpu].sum()) * inv_gfl + float(aflops[~pl.kv_on_gpu].sum()) * inv_cops
        t_over = hier.launch_overhead_s * profile.n_layers if pl.n_gpus else 0.0
        total += t_gpu + t_cpu + t_up + t_att + t_over
        parts["gpu_weights"] += t_gpu
        parts["cpu_weights"] += t_cpu
        parts["upload"] += t_up
        parts["attention"] += t_att
        parts["overhead"] += t_over
        done += nt
    # the last token's logits
    out_inv_bw, out_inv_fl = (inv_gbw, inv_gfl) if pl.output_on_gpu else (inv_hbw, inv_cops)
    head = float(_roofline(profile.output_bytes, 2 * profile.output_params, out_inv_bw, out_inv_fl))
    total += head
    parts["output_head"] = head
    return PrefillTiming(seconds=total, tok_s=P / total if total > 0 else float("nan"), breakdown_s=parts)
