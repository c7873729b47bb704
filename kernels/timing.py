"""Numba kernels of the decode timing model, over tokens x layers.

Public wrapper: `moesim.timing.decode_timing`; slow references: `tests/naive_timing.py`.
Expert home codes: 0 = VRAM-resident, 1 = CPU-computed from host RAM, 2 = host RAM with a VRAM
cache (misses fetched over the link, computed on the GPU), 3 = per miss: CPU compute or fetch,
whichever is faster (Fiddler).
"""

from __future__ import annotations

import numpy as np

from moesim.kernels._jit import jit


@jit
def _expert_time_per_token(
    counts,  # (T, M) float64: distinct experts used per step and layer (union over the batch)
    gpu_counts,  # (T, M) float64: experts read by the busiest GPU (= counts unless expert-parallel)
    misses,  # (T, M) float64: VRAM-cache misses (homes 2, 3)
    ram_misses,  # (T, M) float64: host page-cache misses -> NVMe (homes 1, 2, 3)
    home,  # (M,) int8
    shared_gpu_s,  # (M,) seconds of the layer's shared/dense FFN on the GPU
    shared_cpu_s,  # (M,) seconds of the layer's shared/dense FFN on the CPU
    gpu_expert_s,  # (M,) seconds to stream one expert from VRAM
    cpu_expert_s,  # (M,) seconds to stream one expert from host RAM
    link_expert_s,  # (M,) seconds to copy one expert over the host link, latency included
    nvme_expert_s,  # (M,) seconds to page one expert in from NVMe
    gpu_flop_s,  # (M,) compute-bound floor of the layer's routed experts on the GPU
    cpu_flop_s,  # (M,) compute-bound floor of the layer's routed experts on the CPU
    overlap,  # CPU and GPU FFN work of a layer run concurrently
    prefetch,  # transfers of a layer overlap its compute
    expert_bytes,  # (M,) bytes of one expert
    out_total,  # (T,) seconds per token (incremented)
    out_parts,  # (5,) summed seconds: gpu, cpu, link, nvme, hidden by overlap (written)
    out_traffic,  # (6,) summed: link bytes, NVMe bytes, VRAM expert bytes, host expert bytes,
    #               look-ups, look-ups served from VRAM (written)
):
    n_tokens, n_moe = counts.shape
    for p in range(5):
        out_parts[p] = 0.0
    for p in range(6):
        out_traffic[p] = 0.0
    for t in range(n_tokens):
        total = 0.0
        for m in range(n_moe):
            u = counts[t, m]
            h = home[m]
            g = shared_gpu_s[m]
            c = shared_cpu_s[m]
            lk = 0.0
            nv = 0.0
            b = expert_bytes[m]
            out_traffic[4] += u
            if h == 0:
                g += max(gpu_counts[t, m] * gpu_expert_s[m], gpu_flop_s[m])
                out_traffic[2] += u * b
                out_traffic[5] += u
            elif h == 1:
                c += max(u * cpu_expert_s[m], cpu_flop_s[m])
                nv = ram_misses[t, m] * nvme_expert_s[m]
                out_traffic[3] += u * b
                out_traffic[1] += ram_misses[t, m] * b
            elif h == 2:
                g += max(u * gpu_expert_s[m], gpu_flop_s[m])
                lk = misses[t, m] * link_expert_s[m]
                nv = ram_misses[t, m] * nvme_expert_s[m]
                out_traffic[0] += misses[t, m] * b
                out_traffic[1] += ram_misses[t, m] * b
                out_traffic[2] += u * b
                out_traffic[5] += u - misses[t, m]
            else:
                mi = misses[t, m]
                out_traffic[1] += ram_misses[t, m] * b
                out_traffic[5] += u - mi
                share = cpu_flop_s[m] / u if u > 0 else 0.0
                cpu_one = max(cpu_expert_s[m], share)
                fetch_one = link_expert_s[m] + gpu_expert_s[m]
                if cpu_one < fetch_one:
                    c += mi * cpu_one
                    resident = u - mi
                    gshare = gpu_flop_s[m] * resident / u if u > 0 else 0.0
                    g += max(resident * gpu_expert_s[m], gshare)
                    out_traffic[2] += resident * b
                    out_traffic[3] += mi * b
                else:
                    lk = mi * link_expert_s[m]
                    g += max(u * gpu_expert_s[m], gpu_flop_s[m])
                    out_traffic[0] += mi * b
                    out_traffic[2] += u * b
                nv = ram_misses[t, m] * nvme_expert_s[m]
            compute = max(g, c) if overlap else g + c
            xfer = lk + nv
            layer = max(compute, xfer) if prefetch else compute + xfer
            total += layer
            out_parts[0] += g
            out_parts[1] += c
            out_parts[2] += lk
            out_parts[3] += nv
            out_parts[4] += g + c + lk + nv - layer
        out_total[t] += total


@jit
def _kv_time_per_token(context, coef_s, window, out_total):
    """Adds the KV-cache read time of every step: step t sees context + t cached tokens per layer,
    capped at the layer's window (0 = full attention).  Returns the summed cached-token count
    weighted by `coef_s` is not needed; out_total (T,) is incremented in place."""
    n_tokens = out_total.shape[0]
    n_layers = coef_s.shape[0]
    for t in range(n_tokens):
        ctx = context + t
        acc = 0.0
        for l in range(n_layers):
            w = window[l]
            eff = ctx if (w == 0 or ctx < w) else w
            acc += coef_s[l] * eff
        out_total[t] += acc
