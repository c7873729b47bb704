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
    # scalar accumulators: array-element updates inside the hot loop would go through memory
    p_gpu = p_cpu = p_link = p_nvme = p_hidden = 0.0
    b_link = b_nvme = b_vram = b_host = n_look = n_served = 0.0
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
            n_look += u
            if h == 0:
                g += max(gpu_counts[t, m] * gpu_expert_s[m], gpu_flop_s[m])
                b_vram += u * b
                n_served += u
            elif h == 1:
                rm = ram_misses[t, m]
                c += max(u * cpu_expert_s[m], cpu_flop_s[m])
                nv = rm * nvme_expert_s[m]
                b_host += u * b
                b_nvme += rm * b
            elif h == 2:
                mi = misses[t, m]
                rm = ram_misses[t, m]
                g += max(u * gpu_expert_s[m], gpu_flop_s[m])
                lk = mi * link_expert_s[m]
                nv = rm * nvme_expert_s[m]
                b_link += mi * b
                b_nvme += rm * b
                b_vram += u * b
                n_served += u - mi
            else:
                mi = misses[t, m]
                rm = ram_misses[t, m]
                b_nvme += rm * b
                n_served += u - mi
                share = cpu_flop_s[m] / u if u > 0 else 0.0
                cpu_one = max(cpu_expert_s[m], share)
                fetch_one = link_expert_s[m] + gpu_expert_s[m]
                if cpu_one < fetch_one:
                    c += mi * cpu_one
                    resident = u - mi
                    gshare = gpu_flop_s[m] * resident / u if u > 0 else 0.0
                    g += max(resident * gpu_expert_s[m], gshare)
                    b_vram += resident * b
                    b_host += mi * b
                else:
                    lk = mi * link_expert_s[m]
                    g += max(u * gpu_expert_s[m], gpu_flop_s[m])
                    b_link += mi * b
                    b_vram += u * b
                nv = rm * nvme_expert_s[m]
            compute = max(g, c) if overlap else g + c
            xfer = lk + nv
            layer = max(compute, xfer) if prefetch else compute + xfer
            total += layer
            p_gpu += g
            p_cpu += c
            p_link += lk
            p_nvme += nv
            p_hidden += g + c + lk + nv - layer
        out_total[t] += total
    out_parts[0] = p_gpu
    out_parts[1] = p_cpu
    out_parts[2] = p_link
    out_parts[3] = p_nvme
    out_parts[4] = p_hidden
    out_traffic[0] = b_link
    out_traffic[1] = b_nvme
    out_traffic[2] = b_vram
    out_traffic[3] = b_host
    out_traffic[4] = n_look
    out_traffic[5] = n_served


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


@jit
def _decode_point(
    fixed_b, fixed_p, ffn_b, ffn_p,  # (L,) always-on bytes/params per block and their FFN part
    kv_per_tok, kv_window,  # (L,) KV bytes per cached token per sequence; window (0 = full)
    moe_layers, expert_b, expert_p,  # (M,) block index, bytes and params of ONE routed expert
    output_b, output_p,  # output head
    fixed_on_gpu, kv_on_gpu, output_on_gpu, home,  # placement
    inv_gbw, inv_gbw_kv, inv_gfl, inv_hbw, inv_cops, link_expert_lat, inv_link, inv_nvme,  # machine (1/rates)
    overlap, prefetch,
    counts, gpu_counts, misses, ram_misses,  # (R, M) routing rows; R == 1 stands for every step
    top_k, batch, context,
    out_step,  # (T,) seconds per step (written)
    out_parts,  # (10,) attention, dense FFN, head, KV mean, experts gpu, cpu, link, nvme, hidden, mean step
    out_traffic,  # (6,) see _expert_time_per_token
):
    """One decode point: every block's attention + FFN roofline on the tier that holds it, the KV
    cache at the step's context, the output head, and the routed experts of every step."""
    n_layers = fixed_b.shape[0]
    n_moe = moe_layers.shape[0]
    n_steps = out_step.shape[0]
    two_b = 2.0 * batch
    is_moe = np.zeros(n_layers, np.bool_)
    for m in range(n_moe):
        is_moe[moe_layers[m]] = True
    attn = 0.0
    dense = 0.0
    shared_gpu = np.zeros(n_moe)
    shared_cpu = np.zeros(n_moe)
    shared_idx = np.full(n_layers, -1, np.int64)
    for m in range(n_moe):
        shared_idx[moe_layers[m]] = m
    for l in range(n_layers):
        if fixed_on_gpu[l]:
            ibw, ifl = inv_gbw, inv_gfl
        else:
            ibw, ifl = inv_hbw, inv_cops
        ab = fixed_b[l] - ffn_b[l]
        ap = fixed_p[l] - ffn_p[l]
        attn += max(ab * ibw, ap * two_b * ifl)
        f = max(ffn_b[l] * ibw, ffn_p[l] * two_b * ifl)
        m = shared_idx[l]
        if m >= 0:
            if fixed_on_gpu[l]:
                shared_gpu[m] = f
            else:
                shared_cpu[m] = f
        else:
            dense += f
    if output_on_gpu:
        head = max(output_b * inv_gbw, output_p * two_b * inv_gfl)
    else:
        head = max(output_b * inv_hbw, output_p * two_b * inv_cops)
    base = attn + dense + head
    for t in range(n_steps):
        out_step[t] = 0.0
    # KV cache: coefficient per block = bytes per cached token x batch / bandwidth of its tier
    # (full-attention blocks share one coefficient; only windowed blocks need a per-step cap)
    full = 0.0
    n_win = np.int64(0)
    for l in range(n_layers):
        if kv_window[l] == 0:
            full += kv_per_tok[l] * batch * (inv_gbw_kv if kv_on_gpu[l] else inv_hbw)
        else:
            n_win += 1
    win_coef = np.empty(n_win)
    win = np.empty(n_win, np.int64)
    j = np.int64(0)
    for l in range(n_layers):
        if kv_window[l] != 0:
            win_coef[j] = kv_per_tok[l] * batch * (inv_gbw_kv if kv_on_gpu[l] else inv_hbw)
            win[j] = kv_window[l]
            j += 1
    kv_sum = 0.0
    for t in range(n_steps):
        ctx = context + t
        acc = full * ctx
        for j in range(n_win):
            acc += win_coef[j] * (ctx if ctx < win[j] else win[j])
        out_step[t] = acc
        kv_sum += acc
    # routed experts
    gpu_e = np.empty(n_moe)
    cpu_e = np.empty(n_moe)
    link_e = np.empty(n_moe)
    nvme_e = np.empty(n_moe)
    gflop = np.empty(n_moe)
    cflop = np.empty(n_moe)
    for m in range(n_moe):
        b = expert_b[m]
        gpu_e[m] = b * inv_gbw
        cpu_e[m] = b * inv_hbw
        link_e[m] = b * inv_link + link_expert_lat
        nvme_e[m] = b * inv_nvme
        fl = expert_p[m] * 2.0 * top_k * batch
        gflop[m] = fl * inv_gfl
        cflop[m] = fl * inv_cops
    rows = counts.shape[0]
    expert_rows = np.zeros(rows)
    parts = np.zeros(5)
    if n_moe > 0:
        _expert_time_per_token(counts, gpu_counts, misses, ram_misses, home, shared_gpu, shared_cpu, gpu_e, cpu_e,
                               link_e, nvme_e, gflop, cflop, overlap, prefetch, expert_b, expert_rows, parts, out_traffic)
    else:
        for p in range(6):
            out_traffic[p] = 0.0
    total = 0.0
    for t in range(n_steps):
        out_step[t] += base + (expert_rows[0] if rows == 1 else expert_rows[t])
        total += out_step[t]
    out_parts[9] = total / n_steps
    out_parts[0] = attn
    out_parts[1] = dense
    out_parts[2] = head
    out_parts[3] = kv_sum / n_steps
    for p in range(5):
        out_parts[4 + p] = parts[p] / rows
    for p in range(6):
        out_traffic[p] /= rows


@jit
def _prefill_point(
    fixed_b, fixed_p, moe_layers, expert_b, expert_p, home, fixed_on_gpu, kv_on_gpu, attn_flops, kv_window,
    output_b, output_p, output_on_gpu, n_experts, top_k, prompt, ubatch, context_start,
    uploads, min_upload, has_gpu, inv_gbw, inv_gfl, inv_hbw, inv_cops, inv_link_pageable, inv_link_pinned,
    launch_s_per_layer,
    out_parts,  # (6,) gpu weights, cpu weights, upload, attention, overhead, output head (written)
):
    """Prefill of `prompt` tokens, micro-batch by micro-batch: each block's weights are a roofline
    (bytes / bandwidth vs flops / throughput) on the device that computes them; host-resident
    weights are uploaded to the GPU for big micro-batches when the engine does that."""
    n_layers = fixed_b.shape[0]
    n_moe = moe_layers.shape[0]
    for p in range(6):
        out_parts[p] = 0.0
    done = np.int64(0)
    while done < prompt:
        nt = min(ubatch, prompt - done)
        up = uploads and nt >= min_upload and has_gpu
        for l in range(n_layers):
            fl = 2.0 * fixed_p[l] * nt
            if fixed_on_gpu[l]:
                out_parts[0] += max(fixed_b[l] * inv_gbw, fl * inv_gfl)
            elif up:
                out_parts[2] += fixed_b[l] * inv_link_pageable
                out_parts[1] += fl * inv_gfl
            else:
                out_parts[1] += max(fixed_b[l] * inv_hbw, fl * inv_cops)
        if n_moe > 0:
            # distinct experts a micro-batch touches, expected under independent routing
            distinct = n_experts * (1.0 - (1.0 - top_k / n_experts) ** nt)
            for m in range(n_moe):
                b = distinct * expert_b[m]
                fl = 2.0 * expert_p[m] * top_k * nt
                h = home[m]
                if h == 0:
                    out_parts[0] += max(b * inv_gbw, fl * inv_gfl)
                elif up or (h != 1 and has_gpu):
                    out_parts[2] += b * (inv_link_pageable if up else inv_link_pinned)
                    out_parts[0] += fl * inv_gfl
                else:
                    out_parts[1] += max(b * inv_hbw, fl * inv_cops)
        # attention over the cached prefix (causal: the average query sees half the micro-batch)
        ctx_avg = context_start + done + nt / 2.0
        for l in range(n_layers):
            w = kv_window[l]
            eff = ctx_avg if (w == 0 or ctx_avg < w) else w
            fl = attn_flops[l] * nt * eff
            out_parts[3] += fl * (inv_gfl if kv_on_gpu[l] else inv_cops)
        out_parts[4] += launch_s_per_layer * n_layers
        done += nt
    if output_on_gpu:
        out_parts[5] = max(output_b * inv_gbw, 2.0 * output_p * inv_gfl)
    else:
        out_parts[5] = max(output_b * inv_hbw, 2.0 * output_p * inv_cops)
