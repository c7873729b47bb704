"""Slow, obviously-correct references for the timing kernel, plus small hand-built inputs
(a toy MoE profile and machines) so placement and timing can be tested without the catalogs."""

from __future__ import annotations

import numpy as np

from moesim.hierarchy import Hierarchy
from moesim.placement import ModelProfile


def expert_time_per_token(counts, gpu_counts, misses, ram_misses, home, shared_gpu_s, shared_cpu_s,
                          gpu_expert_s, cpu_expert_s, link_expert_s, nvme_expert_s, gpu_flop_s, cpu_flop_s,
                          overlap, prefetch, expert_bytes):
    """Reference of `kernels.timing._expert_time_per_token`: (per-token seconds, parts, traffic)."""
    T, M = counts.shape
    out = []
    parts = [0.0] * 5
    # link bytes, NVMe bytes, VRAM expert bytes, host expert bytes, look-ups, VRAM-served look-ups
    link_b = nvme_b = vram_b = host_b = lookups = served = 0.0
    for t in range(T):
        total = 0.0
        for m in range(M):
            u = float(counts[t][m])
            gpu = float(shared_gpu_s[m])
            cpu = float(shared_cpu_s[m])
            link = 0.0
            nvme = 0.0
            h = int(home[m])
            b = float(expert_bytes[m])
            lookups += u
            miss = float(misses[t][m])
            paged = float(ram_misses[t][m])
            if h == 0:  # resident in VRAM
                gpu += max(gpu_counts[t][m] * gpu_expert_s[m], gpu_flop_s[m])
                vram_b += u * b
                served += u
            elif h == 1:  # CPU computes from host RAM; page-ins from NVMe
                cpu += max(u * cpu_expert_s[m], cpu_flop_s[m])
                nvme = paged * nvme_expert_s[m]
                host_b += u * b
                nvme_b += paged * b
            elif h == 2:  # VRAM cache: every expert computed on the GPU, misses copied first
                gpu += max(u * gpu_expert_s[m], gpu_flop_s[m])
                link = miss * link_expert_s[m]
                nvme = paged * nvme_expert_s[m]
                link_b += miss * b
                nvme_b += paged * b
                vram_b += u * b
                served += u - miss
            else:  # Fiddler: each miss on the CPU or fetched, whichever is faster
                cpu_one = max(cpu_expert_s[m], cpu_flop_s[m] / u if u else 0.0)
                fetch_one = link_expert_s[m] + gpu_expert_s[m]
                if cpu_one < fetch_one:
                    cpu += miss * cpu_one
                    gpu += max((u - miss) * gpu_expert_s[m], gpu_flop_s[m] * (u - miss) / u if u else 0.0)
                    vram_b += (u - miss) * b
                    host_b += miss * b
                else:
                    link = miss * link_expert_s[m]
                    gpu += max(u * gpu_expert_s[m], gpu_flop_s[m])
                    link_b += miss * b
                    vram_b += u * b
                nvme = paged * nvme_expert_s[m]
                nvme_b += paged * b
                served += u - miss
            compute = max(gpu, cpu) if overlap else gpu + cpu
            layer = max(compute, link + nvme) if prefetch else compute + link + nvme
            total += layer
            parts[0] += gpu
            parts[1] += cpu
            parts[2] += link
            parts[3] += nvme
            parts[4] += gpu + cpu + link + nvme - layer
        out.append(total)
    return np.array(out), np.array(parts), np.array([link_b, nvme_b, vram_b, host_b, lookups, served])


def kv_time_per_token(context, coef_s, window, n_tokens):
    """Reference of `kernels.timing._kv_time_per_token`."""
    out = []
    for t in range(n_tokens):
        total = 0.0
        for c, w in zip(coef_s, window):
            cached = context + t
            if w:
                cached = min(cached, int(w))
            total += c * cached
        out.append(total)
    return np.array(out)


def toy_profile(n_layers=8, n_experts=16, top_k=2, expert_mb=50.0, fixed_mb=100.0, dense_first=1,
                output_mb=200.0, kv_kb_per_token=64.0, window=None) -> ModelProfile:
    """A small MoE: `dense_first` dense layers, the rest MoE, sizes in MB (1e6 bytes)."""
    L = n_layers
    moe = np.arange(dense_first, L, dtype=np.int64)
    fixed = np.full(L, fixed_mb * 1e6)
    ffn = np.full(L, fixed_mb * 0.4e6)
    expert_bytes = np.full(len(moe), expert_mb * 1e6)
    bytes_per_param = 0.5  # ~4-bit weights
    kvw = np.zeros(L, np.int64) if window is None else np.asarray(window, np.int64)
    return ModelProfile(
        model_id="toy/moe", quant="Q4", n_layers=L, hidden_size=2048,
        layer_fixed_bytes=fixed, layer_fixed_params=fixed / bytes_per_param,
        layer_ffn_bytes=ffn, layer_ffn_params=ffn / bytes_per_param,
        moe_layers=moe, expert_bytes=expert_bytes, expert_params=expert_bytes / bytes_per_param,
        n_experts=n_experts, top_k=top_k, output_bytes=output_mb * 1e6, output_params=output_mb * 1e6 / bytes_per_param,
        embedding_bytes=output_mb * 1e6, weights_bytes=float(fixed.sum() + expert_bytes.sum() * n_experts + 2 * output_mb * 1e6),
        kv_bytes_per_token_layer=np.full(L, kv_kb_per_token * 1e3 / L), kv_window=kvw,
        attn_flops_per_ctx_token_layer=np.full(L, 4.0 * 16 * 128),
    )


def toy_dense_profile(n_layers=8, fixed_mb=500.0) -> ModelProfile:
    p = toy_profile(n_layers=n_layers, n_experts=0, top_k=0, fixed_mb=fixed_mb, dense_first=n_layers)
    return p


def toy_gpu_machine(vram_gb=8.0, gpu_gbps=800.0, host_gbps=60.0, link_gbps=25.0, ram_gb=64.0, n_gpus=1,
                    overlap=False, ic_gbps=25.0) -> Hierarchy:
    return Hierarchy(
        device="toy-gpu", gpu_count=n_gpus, unified=False,
        gpu_capacity_bytes=vram_gb * 1e9, gpu_bandwidth_bps=gpu_gbps * 1e9, gpu_flops=100e12,
        host_capacity_bytes=ram_gb * 1e9, pool_capacity_bytes=float("inf"),
        host_bandwidth_bps=host_gbps * 1e9, cpu_ops=2e12,
        link_bandwidth_bps=link_gbps * 1e9, link_pageable_bandwidth_bps=link_gbps * 0.6e9, link_latency_s=10e-6,
        interconnect_bandwidth_bps=ic_gbps * 1e9 if n_gpus > 1 else 0.0, collective_latency_s=25e-6 if n_gpus > 1 else 0.0,
        nvme_bandwidth_bps=5e9, sync_latency_s=20e-6, launch_overhead_s=20e-6, token_overhead_s=100e-6, overlaps_cpu_gpu=overlap,
        numa_duplicates=False, host_sockets=1, assumptions={},
    )


def toy_cpu_machine(host_gbps=60.0, ram_gb=64.0) -> Hierarchy:
    h = toy_gpu_machine(host_gbps=host_gbps, ram_gb=ram_gb)
    from dataclasses import replace

    return replace(h, device="toy-cpu", gpu_count=0, gpu_capacity_bytes=0.0, gpu_bandwidth_bps=0.0, gpu_flops=0.0,
                   link_bandwidth_bps=0.0, link_pageable_bandwidth_bps=0.0, launch_overhead_s=0.0, sync_latency_s=0.0)


class FakeCurveRouting:
    """Minimal stand-in for RoutingStats with an exact per-layer LRU (plain Python)."""


def lru_misses_per_layer(experts: np.ndarray, capacity: int, warmup: int) -> np.ndarray:
    """(T-warmup, M) misses of an LRU with `capacity` experts per layer (plain Python)."""
    T, M, k = experts.shape
    out = np.zeros((T - warmup, M))
    for m in range(M):
        stack: list[int] = []
        for t in range(T):
            miss = 0
            for e in experts[t, m]:
                e = int(e)
                if e in stack:
                    stack.remove(e)
                else:
                    miss += 1
                stack.insert(0, e)
                if len(stack) > capacity:
                    stack.pop()
            if t >= warmup:
                out[t - warmup, m] = miss
    return out


def misses_at(needs, capacity, n_experts, top_k, counts, scale_batch):
    """Reference of `kernels.timing_batch._misses_at`."""
    T, M, k = needs.shape
    out = np.zeros((T, M))
    for t in range(T):
        for m in range(M):
            miss = 0 if capacity >= n_experts else sum(1 for j in range(k) if needs[t, m, j] > capacity)
            out[t, m] = counts[t, m] * miss / top_k if scale_batch else miss
    return out


def miss_tables(needs, expert_b, n_experts):
    """Reference of `kernels.timing_batch._miss_tables`: per capacity c, per step, missed bytes and count."""
    T, M, k = needs.shape
    nbytes = np.zeros((n_experts + 2, T))
    count = np.zeros((n_experts + 2, T))
    for c in range(n_experts + 2):
        if c >= n_experts:
            continue  # a cache of every expert never misses
        for t in range(T):
            for m in range(M):
                for j in range(k):
                    if needs[t, m, j] > c:
                        nbytes[c, t] += expert_b[m]
                        count[c, t] += 1
    return nbytes, count


def prefill_parts(fixed_b, fixed_p, moe_layers, expert_b, expert_p, home, fixed_on_gpu, kv_on_gpu, attn_flops,
                  kv_window, output_b, output_p, output_on_gpu, n_experts, top_k, prompt, ubatch, context_start,
                  uploads, min_upload, has_gpu, inv_gbw, inv_gfl, inv_hbw, inv_cops, inv_link_pageable,
                  inv_link_pinned, launch_s_per_layer):
    """Reference of `kernels.timing._prefill_point`: (gpu weights, cpu weights, upload, attention, overhead, head)."""
    parts = [0.0] * 6
    done = 0
    while done < prompt:
        nt = min(ubatch, prompt - done)
        up = uploads and nt >= min_upload and has_gpu
        for l in range(len(fixed_b)):
            flops = 2.0 * fixed_p[l] * nt
            if fixed_on_gpu[l]:
                parts[0] += max(fixed_b[l] * inv_gbw, flops * inv_gfl)
            elif up:
                parts[2] += fixed_b[l] * inv_link_pageable
                parts[1] += flops * inv_gfl
            else:
                parts[1] += max(fixed_b[l] * inv_hbw, flops * inv_cops)
        if len(moe_layers):
            distinct = n_experts * (1.0 - (1.0 - top_k / n_experts) ** nt)
            for m in range(len(moe_layers)):
                nbytes = distinct * expert_b[m]
                flops = 2.0 * expert_p[m] * top_k * nt
                if home[m] == 0:
                    parts[0] += max(nbytes * inv_gbw, flops * inv_gfl)
                elif up or (home[m] != 1 and has_gpu):
                    parts[2] += nbytes * (inv_link_pageable if up else inv_link_pinned)
                    parts[0] += flops * inv_gfl
                else:
                    parts[1] += max(nbytes * inv_hbw, flops * inv_cops)
        ctx = context_start + done + nt / 2.0
        for l in range(len(fixed_b)):
            cached = ctx if (kv_window[l] == 0 or ctx < kv_window[l]) else kv_window[l]
            parts[3] += attn_flops[l] * nt * cached * (inv_gfl if kv_on_gpu[l] else inv_cops)
        parts[4] += launch_s_per_layer * len(fixed_b)
        done += nt
    if output_on_gpu:
        parts[5] = max(output_b * inv_gbw, 2.0 * output_p * inv_gfl)
    else:
        parts[5] = max(output_b * inv_hbw, 2.0 * output_p * inv_cops)
    return np.array(parts)


def decode_steps(profile, pl, hier, counts, misses, ram_misses, context, batch):
    """Reference of `moesim.timing.decode_timing`'s step times (single GPU or layer split, no EP/TP):
    every step, every block, written out as plainly as possible."""
    T = misses.shape[0]
    has_gpu = pl.n_gpus > 0
    inv_kv_gpu = 1.0 / hier.gpu_bandwidth_bps if has_gpu else float("inf")
    inv_gbw = inv_kv_gpu / profile.gpu_kernel_efficiency
    inv_gfl = 1.0 / hier.gpu_flops if has_gpu else 0.0
    inv_hbw = 1.0 / hier.host_bandwidth_bps
    inv_cops = 1.0 / hier.cpu_ops
    moe_index = {int(l): m for m, l in enumerate(profile.moe_layers)}
    steps = []
    for t in range(T):
        total = 0.0
        for l in range(profile.n_layers):
            on_gpu = bool(pl.fixed_on_gpu[l])
            ibw, ifl = (inv_gbw, inv_gfl) if on_gpu else (inv_hbw, inv_cops)
            attn_b = profile.layer_fixed_bytes[l] - profile.layer_ffn_bytes[l]
            attn_p = profile.layer_fixed_params[l] - profile.layer_ffn_params[l]
            total += max(attn_b * ibw, 2 * attn_p * batch * ifl)
            ffn = max(profile.layer_ffn_bytes[l] * ibw, 2 * profile.layer_ffn_params[l] * batch * ifl)
            w = profile.kv_window[l]
            cached = context + t if (w == 0 or context + t < w) else w
            total += profile.kv_bytes_per_token_layer[l] * batch * cached * (inv_kv_gpu if pl.kv_on_gpu[l] else inv_hbw)
            m = moe_index.get(l)
            if m is None:
                total += ffn
                continue
            eb = profile.expert_bytes[m]
            flops = 2.0 * profile.expert_params[m] * profile.top_k * batch
            one, _, _ = expert_time_per_token(
                np.array([[counts[t, m]]]), np.array([[counts[t, m]]]), np.array([[misses[t, m]]]),
                np.array([[ram_misses[t, m]]]), np.array([pl.expert_home[m]]),
                np.array([ffn if on_gpu else 0.0]), np.array([0.0 if on_gpu else ffn]), np.array([eb * inv_gbw]),
                np.array([eb * inv_hbw]), np.array([eb / hier.link_bandwidth_bps + hier.link_latency_s
                                                    if hier.link_bandwidth_bps else float("inf")]),
                np.array([eb / hier.nvme_bandwidth_bps]), np.array([flops * inv_gfl]), np.array([flops * inv_cops]),
                hier.overlaps_cpu_gpu, pl.prefetch, np.array([eb]))
            total += one[0]
        if pl.output_on_gpu:
            total += max(profile.output_bytes * inv_gbw, 2 * profile.output_params * batch * inv_gfl)
        else:
            total += max(profile.output_bytes * inv_hbw, 2 * profile.output_params * batch * inv_cops)
        if has_gpu:
            total += (hier.launch_overhead_s + hier.gpu_layer_floor_s) * pl.gpu_kernel_layers
            total += pl.handoffs * hier.sync_latency_s
            if pl.n_gpus > 1:
                total += (pl.n_gpus - 1) * (hier.collective_latency_s + profile.hidden_size * 2.0 * batch / hier.interconnect_bandwidth_bps)
        total += hier.token_overhead_s
        steps.append(total)
    return np.array(steps)
