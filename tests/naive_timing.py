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
