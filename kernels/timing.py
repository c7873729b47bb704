"""Numba kernel of the decode timing model: routed-expert time per token, over tokens x MoE layers.

The public wrapper is `moesim.timing.expert_time_per_token`; the slow reference is in
`tests/naive_timing.py`.  Home codes: 0 = VRAM-resident, 1 = CPU-computed from host RAM,
2 = host RAM with a VRAM cache (misses fetched over the link, computed on the GPU),
3 = per miss: CPU compute or fetch, whichever is faster (Fiddler).
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
    out_total,  # (T,) seconds per token (written)
    out_parts,  # (5,) summed seconds: gpu, cpu, link, nvme, hidden by overlap (written)
):
    n_tokens, n_moe = counts.shape
    for p in range(5):
        out_parts[p] = 0.0
    for t in range(n_tokens):
        total = 0.0
        for m in range(n_moe):
            u = counts[t, m]
            h = home[m]
            g = shared_gpu_s[m]
            c = shared_cpu_s[m]
            lk = 0.0
            nv = 0.0
            if h == 0:
                g += max(gpu_counts[t, m] * gpu_expert_s[m], gpu_flop_s[m])
            elif h == 1:
                c += max(u * cpu_expert_s[m], cpu_flop_s[m])
                nv = ram_misses[t, m] * nvme_expert_s[m]
            elif h == 2:
                g += max(u * gpu_expert_s[m], gpu_flop_s[m])
                lk = misses[t, m] * link_expert_s[m]
                nv = ram_misses[t, m] * nvme_expert_s[m]
            else:
                mi = misses[t, m]
                share = cpu_flop_s[m] / u if u > 0 else 0.0
                cpu_one = max(cpu_expert_s[m], share)
                fetch_one = link_expert_s[m] + gpu_expert_s[m]
                if cpu_one < fetch_one:
                    c += mi * cpu_one
                    resident = u - mi
                    gshare = gpu_flop_s[m] * resident / u if u > 0 else 0.0
                    g += max(resident * gpu_expert_s[m], gshare)
                else:
                    lk = mi * link_expert_s[m]
                    g += max(u * gpu_expert_s[m], gpu_flop_s[m])
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
        out_total[t] = total
