"""Batch evaluation of many sweep points of ONE (model, quant, context, batch, trace) in one call.

Mirrors `moesim.placement.place` / `auto_candidates` and `moesim.timing.decode_timing` /
`prefill_timing` exactly (LRU caches, no prefetch) so a sweep pays one Python->Numba call per
group instead of several per point; `tests/test_timing_batch.py` checks it against that
per-point path (the reference).  Public wrapper: `moesim.simulate.simulate_many`.
"""

from __future__ import annotations

import numpy as np

from moesim.kernels._jit import jit
from moesim.kernels.timing import _decode_point, _prefill_point

from moesim.timing_layout import *  # noqa: F401,F403  (column and code constants)
GPU_HOME, CPU_HOME, CACHE_HOME, FIDDLER_HOME = 0, 1, 2, 3


@jit
def _misses_at(needs, capacity, n_experts, top_k, counts, scale_batch, out):
    """(T, M) LRU misses with `capacity` slots per layer from per-look-up stack needs; batch > 1 scales
    sequence 0's misses by the batch's distinct experts per step.  A cache that holds every expert is
    filled at load time and never misses."""
    n_steps, n_moe, k = needs.shape
    if capacity >= n_experts:
        out[:, :] = 0.0
        return
    for t in range(n_steps):
        for m in range(n_moe):
            mi = np.int64(0)
            for j in range(k):
                mi += needs[t, m, j] > capacity  # branch-free so the loop vectorises
            out[t, m] = mi
    if scale_batch:
        for t in range(n_steps):
            for m in range(n_moe):
                out[t, m] = counts[t, m] * out[t, m] / top_k


@jit
def _miss_tables(needs, expert_b, n_experts, out_bytes, out_count):
    """Per capacity c (0..n_experts) and step t: LRU-missed expert bytes and miss count summed over
    the MoE layers, from the per-look-up stack needs (clipped to n_experts + 1).  A look-up with need d
    misses at every capacity c < d; a cache holding every expert never misses."""
    n_steps, n_moe, k = needs.shape
    top = n_experts + 1
    for c in range(top + 1):
        for t in range(n_steps):
            out_bytes[c, t] = 0.0
            out_count[c, t] = 0.0
    for t in range(n_steps):
        for m in range(n_moe):
            b = expert_b[m]
            for j in range(k):
                d = min(int(needs[t, m, j]), top)
                out_bytes[d, t] += b
                out_count[d, t] += 1.0
    # reverse cumulative: misses at c = look-ups with need > c
    for t in range(n_steps):
        acc_b = 0.0
        acc_n = 0.0
        for d in range(top, -1, -1):
            hb = out_bytes[d, t]
            hn = out_count[d, t]
            out_bytes[d, t] = acc_b
            out_count[d, t] = acc_n
            acc_b += hb
            acc_n += hn
        out_bytes[n_experts, t] = 0.0
        out_count[n_experts, t] = 0.0


@jit
def _sort_steps(values, out):
    """out = values in ascending order, NaN last (np.sort's order). A shell sort: numba's own
    np.sort adds seconds of compile time to the batch kernel for 256 values per point."""
    n = values.shape[0]
    for i in range(n):
        out[i] = values[i]
    gap = np.int64(1)
    while gap * 3 + 1 < n:
        gap = gap * 3 + 1
    while gap > 0:
        for i in range(gap, n):
            x = out[i]
            j = i
            # shift while out[j - gap] sorts after x (NaN sorts after every number)
            while j >= gap:
                y = out[j - gap]
                if y > x or (y != y and x == x):
                    out[j] = y
                    j -= gap
                else:
                    break
            out[j] = x
        gap //= 3


@jit
def _place_memory(kind, n, cache_bytes, mach, fixed_cum_rev, fixed_total, fixed_b, moe_layers, expert_b, n_experts,
                  routed, output_b, embedding_b, kv_l, kv_total, overhead, is_moe, n_layers, fixed_on_gpu, home, res):
    """Memory accounting of `place` for one strategy; fills fixed_on_gpu/home and res:
    res[0] fits, [1] reason, [2] need, [3] cap, [4] cache slots, [5] ram slots, [6] vram tier, [7] host tier,
    [8] nvme tier, [9] gpus used, [10] output on gpu, [11] gpu kernel layers, [12] handoffs, [13] vram fixed bytes,
    [14] kv gpu fraction, [15] parallel (0 none, 1 layer, 2 tp, 3 ep), [16] host experts > 0, [17] cache home."""
    n_gpus = int(mach[M_NGPU])
    unified = mach[M_UNIFIED] > 0
    M = moe_layers.shape[0]
    E = n_experts
    for p in range(18):
        res[p] = 0.0
    res[1] = R_OK
    if not (np.int64(mach[M_RUN_KINDS]) >> kind) & 1:
        res[1] = R_ENGINE if mach[M_ENGINE_DRIVES] > 0 else R_BACKEND
        return
    if n_gpus == 0 and kind != K_CPU:
        res[1] = R_NO_GPU
        return
    if kind == K_UNIFIED and not unified:
        res[1] = R_NOT_UNIFIED
        return
    if (kind == K_NCPUMOE or kind == K_CACHE or kind == K_FIDDLER or kind == K_KTRANS or kind == K_EP) and not is_moe:
        res[1] = R_DENSE
        return
    if (kind == K_CACHE or kind == K_FIDDLER) and unified:
        res[1] = R_NO_LINK
        return
    output_on_gpu = n_gpus > 0
    parallel = 1 if n_gpus > 1 else 0
    for l in range(n_layers):
        fixed_on_gpu[l] = True
    for m in range(M):
        home[m] = GPU_HOME
    if kind == K_CPU:
        for l in range(n_layers):
            fixed_on_gpu[l] = False
        output_on_gpu = False
        for m in range(M):
            home[m] = CPU_HOME
        parallel = 0
    elif kind == K_NGL:
        ng = min(n, n_layers)
        for l in range(n_layers):
            fixed_on_gpu[l] = l >= n_layers - ng
        output_on_gpu = n > n_layers
        for m in range(M):
            home[m] = GPU_HOME if fixed_on_gpu[moe_layers[m]] else CPU_HOME
    elif kind == K_NCPUMOE:
        for m in range(M):
            home[m] = CPU_HOME if moe_layers[m] < n else GPU_HOME
    elif kind == K_KTRANS:
        for m in range(M):
            home[m] = CPU_HOME
        parallel = 0
    elif kind == K_CACHE:
        for m in range(M):
            home[m] = CACHE_HOME
    elif kind == K_FIDDLER:
        for m in range(M):
            home[m] = FIDDLER_HOME
    elif kind == K_TP:
        parallel = 2
    elif kind == K_EP:
        parallel = 3
    all_fixed_gpu = kind != K_CPU and kind != K_NGL
    gpus_used = n_gpus if (kind != K_CPU and (kind != K_NGL or n > 0)) else 0
    if all_fixed_gpu:
        if kind == K_GPU or kind == K_UNIFIED or kind == K_TP or kind == K_EP:
            gpu_experts = routed
        elif kind == K_NCPUMOE:
            acc = 0.0
            for m in range(M):
                if home[m] == GPU_HOME:
                    acc += expert_b[m]
            gpu_experts = acc * E
        else:
            gpu_experts = 0.0
        gpu_weights = fixed_total + gpu_experts + output_b
        host_fixed = embedding_b
        host_experts = routed - gpu_experts
        kv_gpu = kv_total
        kv_host = 0.0
    else:
        on = 0.0
        kv_gpu = 0.0
        if gpus_used:
            for l in range(n_layers):
                if fixed_on_gpu[l]:
                    on += fixed_b[l]
                    kv_gpu += kv_l[l]
        acc = 0.0
        if gpus_used:
            for m in range(M):
                if home[m] == GPU_HOME:
                    acc += expert_b[m]
        gpu_experts = acc * E
        gpu_weights = on + gpu_experts + (output_b if output_on_gpu else 0.0)
        host_fixed = fixed_total - on + (0.0 if output_on_gpu else output_b) + embedding_b
        host_experts = routed - gpu_experts
        kv_host = kv_total - kv_gpu
    sockets = mach[M_SOCKETS]
    if kind == K_KTRANS and mach[M_NUMA_DUP] > 0 and sockets > 1:
        host_experts *= sockets
    host_fixed += kv_host
    vram_need = gpu_weights + kv_gpu + (overhead * gpus_used if gpus_used else 0.0)
    vram_cap = mach[M_GPU_CAP] * max(gpus_used, 1) if gpus_used else 0.0
    if gpus_used and vram_need > vram_cap:
        res[1] = R_VRAM
        res[2] = vram_need
        res[3] = vram_cap
        return
    cache = 0
    cache_used = 0.0
    if kind == K_CACHE or kind == K_FIDDLER:
        leftover = vram_cap - vram_need
        budget = leftover if cache_bytes < 0 else cache_bytes
        if budget > leftover + 1e-6:
            res[1] = R_CACHE_BUDGET
            res[2] = budget
            res[3] = leftover
            return
        per_slot = 0.0
        for m in range(M):
            per_slot += expert_b[m]
        if per_slot > 0:
            cache = int(min(float(E), max(0.0, budget) // per_slot))
        cache_used = cache * per_slot
    host_cap = mach[M_HOST_CAP]
    if unified:
        host_cap = max(0.0, mach[M_POOL_CAP] - vram_need)
    ram = E
    nvme = 0.0
    if host_fixed > host_cap:
        res[1] = R_HOST
        res[2] = host_fixed
        res[3] = host_cap
        return
    if host_fixed + host_experts > host_cap:
        per_slot = host_experts / E
        ram = int(max(0.0, host_cap - host_fixed) // per_slot) if per_slot > 0 else 0
        ram = min(ram, E)
        nvme = host_experts - ram * per_slot
    res[0] = 1.0
    res[4] = cache
    res[5] = ram
    res[6] = (vram_need + cache_used) if gpus_used else 0.0
    res[7] = host_fixed + min(host_experts, max(0.0, host_cap - host_fixed))
    res[8] = nvme
    res[9] = gpus_used
    res[10] = 1.0 if output_on_gpu else 0.0
    if gpus_used == 0:
        res[11] = 0
        res[12] = 0
        res[13] = 0.0
        res[14] = 0.0
        res[15] = 0
    else:
        if all_fixed_gpu:
            n_cpu = np.int64(0)
            for m in range(M):
                if home[m] == CPU_HOME:
                    n_cpu += 1
            res[11] = n_layers + 1
            res[12] = 2 * n_cpu if kind != K_KTRANS else 2 * M
            res[13] = fixed_total + output_b
            res[14] = 1.0
        else:
            g = np.int64(0)
            changes = np.int64(0)
            vf = 0.0
            for l in range(n_layers):
                if fixed_on_gpu[l]:
                    g += 1
                    vf += fixed_b[l]
                if l > 0 and fixed_on_gpu[l] != fixed_on_gpu[l - 1]:
                    changes += 1
            if fixed_on_gpu[n_layers - 1] != output_on_gpu:
                changes += 1
            res[11] = g + (1 if output_on_gpu else 0)
            res[12] = changes
            res[13] = vf + (output_b if output_on_gpu else 0.0)
            res[14] = kv_gpu / kv_total if kv_total > 0 else 0.0
        res[15] = parallel
    res[16] = 1.0 if host_experts > 0 else 0.0
    res[17] = 1.0 if ((kind == K_CACHE or kind == K_FIDDLER) and M > 0) else 0.0


@jit
def _min_n_cpu_moe(mach, overhead, fixed_total, output_b, kv_total, moe_layers, expert_b, n_experts):
    """Smallest --n-cpu-moe N whose VRAM need fits; -1 when none does (mirrors placement._min_n_cpu_moe)."""
    free = mach[M_GPU_CAP] * mach[M_NGPU] - overhead * mach[M_NGPU]
    fixed = fixed_total + output_b + kv_total
    total = 0.0
    for m in range(moe_layers.shape[0]):
        total += expert_b[m] * n_experts
    moved = 0.0
    for k in range(moe_layers.shape[0] + 1):
        if k > 0:
            moved += expert_b[k - 1] * n_experts
        if fixed + total - moved <= free:
            return 0 if k == 0 else int(moe_layers[k - 1]) + 1
    return -1


@jit
def _max_ngl(mach, overhead, per_layer_rev_cum, n_layers, output_b):
    """Largest -ngl N whose VRAM need fits (mirrors placement._max_ngl)."""
    free = mach[M_GPU_CAP] * mach[M_NGPU] - overhead * mach[M_NGPU]
    best = np.int64(0)
    for k in range(n_layers + 1):
        if per_layer_rev_cum[k] <= free:
            best = k
    if best == n_layers and per_layer_rev_cum[n_layers] + output_b <= free:
        return n_layers + 1
    return best


@jit
def _evaluate_points(
    point_machine, point_kind, point_n, point_cache_bytes,  # (N,)
    machines,  # (n_machines, M_WIDTH)
    fixed_b, fixed_p, ffn_b, ffn_p, kv_per_tok, kv_window, attn_flops,  # (L,) profile
    moe_layers, expert_b, expert_p,  # (M,)
    output_b, output_p, embedding_b, n_experts, top_k, fixed_total, routed, kv_l, kv_total, kv_mean_bytes,
    per_layer_rev_cum,  # (L+1,) VRAM need of the last k blocks (for -ngl)
    hidden, gpu_kernel_eff, overhead,
    counts, uniform, needs,  # (R, M) distinct experts per step, counts has 1 row when uniform; needs (T, M, k)
    miss_bytes, miss_count,  # (E+2, T) per capacity: missed expert bytes / misses summed over layers
    ep_rows, ep_index_of_n,  # (n_ep, T, M) busiest-GPU expert counts; index by GPU count (-1 = none)
    batch, context, n_steps, prompt, ubatch, uploads, min_upload,
    out,  # (N, O_WIDTH)
):
    n_points = point_machine.shape[0]
    n_layers = fixed_b.shape[0]
    M = moe_layers.shape[0]
    is_moe = n_experts > 0 and M > 0
    fixed_on_gpu = np.empty(n_layers, np.bool_)
    home = np.empty(M, np.int8)
    best_fixed = np.empty(n_layers, np.bool_)
    best_home = np.empty(M, np.int8)
    res = np.empty(18)
    best_res = np.empty(18)
    step = np.empty(n_steps)
    best_step = np.empty(n_steps)
    sorted_step = np.empty(n_steps)
    parts = np.empty(10)
    best_parts = np.empty(10)
    traffic = np.empty(6)
    best_traffic = np.empty(6)
    pparts = np.empty(6)
    # misses depend only on the slot count: keep the last few capacities (points of one machine and
    # machines with the same memory ask for the same ones)
    n_slots = 8
    slot_cap = np.full(n_slots, -1, np.int64)
    slot_rows = np.zeros((n_slots, n_steps, M))
    next_slot = np.int64(0)
    zero_full = np.zeros((n_steps, M))
    zero_rows = np.zeros((counts.shape[0], M))
    full_counts = counts
    cand_kind = np.empty(N_CAND, np.int64)
    cand_n = np.empty(N_CAND, np.int64)
    for i in range(n_points):
        mach = machines[point_machine[i]]
        kind0 = point_kind[i]
        n_gpus = int(mach[M_NGPU])
        unified = mach[M_UNIFIED] > 0
        # candidate list (auto) or the one strategy
        nc = 0
        if kind0 == K_AUTO:
            if n_gpus == 0:
                cand_kind[0] = K_CPU
                cand_n[0] = 0
                nc = 1
            elif unified:
                cand_kind[0] = K_UNIFIED
                cand_n[0] = 0
                cand_kind[1] = K_CPU
                cand_n[1] = 0
                cand_kind[2] = K_NGL
                cand_n[2] = _max_ngl(mach, overhead, per_layer_rev_cum, n_layers, output_b)
                nc = 3
            else:
                cand_kind[nc] = K_GPU
                cand_n[nc] = 0
                nc += 1
                if n_gpus > 1:
                    cand_kind[nc] = K_TP
                    cand_n[nc] = n_gpus
                    nc += 1
                    if is_moe:
                        cand_kind[nc] = K_EP
                        cand_n[nc] = n_gpus
                        nc += 1
                if is_moe:
                    nn = _min_n_cpu_moe(mach, overhead, fixed_total, output_b, kv_total, moe_layers, expert_b, n_experts)
                    if nn >= 0:
                        cand_kind[nc] = K_NCPUMOE
                        cand_n[nc] = nn
                        nc += 1
                    cand_kind[nc] = K_KTRANS
                    cand_n[nc] = 0
                    nc += 1
                cand_kind[nc] = K_NGL
                cand_n[nc] = _max_ngl(mach, overhead, per_layer_rev_cum, n_layers, output_b)
                nc += 1
                cand_kind[nc] = K_CPU
                cand_n[nc] = 0
                nc += 1
            # only what the engine implements and runs here; if none, the first, refused with the engine's reason
            auto_kinds = np.int64(mach[M_AUTO_KINDS])
            kept = 0
            for c in range(nc):
                if (auto_kinds >> cand_kind[c]) & 1:
                    cand_kind[kept] = cand_kind[c]
                    cand_n[kept] = cand_n[c]
                    kept += 1
            nc = max(kept, 1)
        else:
            cand_kind[0] = kind0
            cand_n[0] = point_n[i]
            nc = 1
        o = out[i]
        for p in range(O_WIDTH):
            o[p] = np.nan
        o[O_FITS] = 0.0
        o[O_REASON] = -1.0
        best_tok = -1.0
        first_refusal = np.int64(-1)
        vram_tier_fits = np.bool_(False)
        for c in range(nc):
            kind = cand_kind[c]
            n = cand_n[c]
            in_vram_tier = kind == K_GPU or kind == K_UNIFIED or kind == K_TP or kind == K_EP
            if vram_tier_fits and kind0 == K_AUTO and not in_vram_tier:
                break  # like llama.cpp --fit: everything in (V)RAM fits, so nothing is offloaded
            cache_bytes = point_cache_bytes[i] if kind0 != K_AUTO else -1.0
            _place_memory(kind, n, cache_bytes, mach, per_layer_rev_cum, fixed_total, fixed_b, moe_layers, expert_b,
                          n_experts, routed, output_b, embedding_b, kv_l, kv_total, overhead, is_moe, n_layers,
                          fixed_on_gpu, home, res)
            if kind0 == K_AUTO:
                o[O_C0 + 3 * c] = kind
                o[O_C0 + 3 * c + 1] = n
            if res[0] == 0.0:
                if first_refusal < 0:
                    first_refusal = c
                    o[O_REASON] = res[1]
                    o[O_NEED] = res[2]
                    o[O_CAP] = res[3]
                    o[O_KIND] = kind
                    o[O_N] = n
                continue
            if in_vram_tier:
                vram_tier_fits = True
            gpus_used = int(res[9])
            parallel = int(res[15])
            nsplit = max(1, gpus_used)
            split = nsplit if (parallel == 2 or parallel == 3) else 1
            has_gpu = gpus_used > 0 and mach[M_GBW] > 0
            inv_gbw_kv = 1.0 / (mach[M_GBW] * split) if has_gpu else np.inf
            inv_gbw = inv_gbw_kv / gpu_kernel_eff
            inv_gfl = 1.0 / (mach[M_GFLOPS] * split) if (has_gpu and mach[M_GFLOPS] > 0) else 0.0
            inv_hbw = 1.0 / mach[M_HBW]
            inv_cops = 1.0 / mach[M_COPS] if mach[M_COPS] > 0 else 0.0
            inv_link = 1.0 / mach[M_LINK] if mach[M_LINK] > 0 else np.inf
            # routing rows of this placement
            cache = int(res[4])
            ram = int(res[5])
            use_cache = res[17] > 0
            use_ram = res[16] > 0 and ram < n_experts
            # fast path: with one sequence, no CPU/GPU overlap and a cache (or page cache) in front of every
            # MoE layer, misses only add link / NVMe time per step, which the per-capacity tables give
            # without walking tokens x layers
            all_host = np.bool_(True)
            all_cache = np.bool_(True)
            for m in range(M):
                if home[m] == GPU_HOME:
                    all_host = False
                if home[m] != CACHE_HOME:
                    all_cache = False
            fast = (is_moe and uniform and parallel != 3 and mach[M_OVERLAP] == 0 and (use_cache or use_ram)
                    and (not use_cache or all_cache) and (not use_ram or all_host))
            if fast:
                cnt = counts[:1]
                gcnt = cnt
                mis = zero_rows[:1]
                rmis = zero_rows[:1]
            elif is_moe:
                mis = zero_full
                rmis = zero_full
                for want in range(2):
                    if want == 0 and not use_cache:
                        continue
                    if want == 1 and not use_ram:
                        continue
                    cap = cache if want == 0 else ram
                    found = np.int64(-1)
                    for sl in range(n_slots):
                        if slot_cap[sl] == cap:
                            found = sl
                    if found < 0:
                        found = next_slot
                        next_slot = (next_slot + 1) % n_slots
                        # never overwrite the rows the other look-up of this placement is using
                        if want == 1 and use_cache and slot_cap[found] == cache:
                            found = next_slot
                            next_slot = (next_slot + 1) % n_slots
                        _misses_at(needs, cap, n_experts, float(top_k), full_counts, batch > 1, slot_rows[found])
                        slot_cap[found] = cap
                    if want == 0:
                        mis = slot_rows[found]
                    else:
                        rmis = slot_rows[found]
                ep = parallel == 3
                row_uniform = uniform and not use_cache and not use_ram and not ep
                if row_uniform:
                    cnt = counts[:1]
                    gcnt = cnt
                    mis = zero_rows[:1]
                    rmis = zero_rows[:1]
                else:
                    cnt = counts
                    gcnt = ep_rows[ep_index_of_n[nsplit]] if ep else cnt
            else:
                cnt = zero_rows[:1]
                gcnt = cnt
                mis = cnt
                rmis = cnt
            kv_on_gpu = fixed_on_gpu
            _decode_point(fixed_b, fixed_p, ffn_b, ffn_p, kv_per_tok, kv_window, moe_layers, expert_b, expert_p,
                          output_b, output_p, fixed_on_gpu, kv_on_gpu, res[10] > 0, home,
                          inv_gbw, inv_gbw_kv, inv_gfl, inv_hbw, inv_cops, mach[M_LINK_LAT], inv_link, 1.0 / mach[M_NVME],
                          mach[M_OVERLAP] > 0, False, cnt, gcnt, mis, rmis, float(top_k), float(batch), float(context),
                          step, parts, traffic)
            if fast:
                lat = mach[M_LINK_LAT]
                inv_nvme = 1.0 / mach[M_NVME]
                add_link = 0.0
                add_nvme = 0.0
                add_link_b = 0.0
                add_nvme_b = 0.0
                add_miss = 0.0
                for t in range(n_steps):
                    x = 0.0
                    if use_cache:
                        lk = miss_bytes[cache, t] * inv_link + miss_count[cache, t] * lat
                        add_link += lk
                        add_link_b += miss_bytes[cache, t]
                        add_miss += miss_count[cache, t]
                        x += lk
                    if use_ram:
                        nv = miss_bytes[ram, t] * inv_nvme
                        add_nvme += nv
                        add_nvme_b += miss_bytes[ram, t]
                        x += nv
                    step[t] += x
                parts[6] += add_link / n_steps
                parts[7] += add_nvme / n_steps
                parts[9] += (add_link + add_nvme) / n_steps
                traffic[0] += add_link_b / n_steps
                traffic[1] += add_nvme_b / n_steps
                traffic[5] -= add_miss / n_steps
            launch = (mach[M_LAUNCH] + mach[M_FLOOR]) * res[11] if gpus_used else 0.0
            sync = res[12] * mach[M_SYNC] if (gpus_used and not unified) else 0.0
            coll = 0.0
            ic_bytes = 0.0
            if gpus_used > 1:
                act = hidden * 2.0 * batch
                inv_ic = 1.0 / mach[M_IC_BW] if mach[M_IC_BW] > 0 else 0.0
                if parallel == 2:
                    n_coll = 2 * n_layers
                    per_bytes = act * 2 * (nsplit - 1) / nsplit
                elif parallel == 3:
                    n_coll = 2 * n_layers
                    per_bytes = act * (nsplit - 1) / nsplit
                else:
                    n_coll = nsplit - 1
                    per_bytes = act
                coll = n_coll * (mach[M_COLL_LAT] + per_bytes * inv_ic)
                ic_bytes = n_coll * per_bytes
            token = mach[M_TOKEN]
            extra = launch + sync + coll + token
            mean_step = parts[9] + extra
            tok = batch / mean_step if mean_step > 0 else np.nan
            if kind0 == K_AUTO:
                o[O_C0 + 3 * c + 2] = tok
            if tok > best_tok:
                best_tok = tok
                for l in range(n_layers):
                    best_fixed[l] = fixed_on_gpu[l]
                for m in range(M):
                    best_home[m] = home[m]
                for t in range(n_steps):
                    best_step[t] = step[t] + extra
                for p in range(18):
                    best_res[p] = res[p]
                for p in range(10):
                    best_parts[p] = parts[p]
                for p in range(6):
                    best_traffic[p] = traffic[p]
                o[O_KIND] = kind
                o[O_N] = n
                o[O_B0 + 9] = launch
                o[O_B0 + 10] = sync
                o[O_B0 + 11] = coll
                o[O_B0 + 12] = token
                o[O_L0 + 4] = ic_bytes / batch
                o[O_MEAN] = mean_step
                o[O_TOKS] = tok
                hit = np.nan
                if has_gpu and is_moe and traffic[4] > 0:
                    hit = traffic[5] / traffic[4]
                o[O_HIT] = hit
        if best_tok < 0:
            continue
        # the chosen placement: results, percentiles, prefill
        o[O_FITS] = 1.0
        o[O_REASON] = R_OK
        o[O_CACHE] = best_res[4]
        o[O_RAM] = best_res[5]
        o[O_T_VRAM] = best_res[6]
        o[O_T_HOST] = best_res[7]
        o[O_T_NVME] = best_res[8]
        o[O_NG] = best_res[9]
        o[O_T_VRAM_GPU] = best_res[6] / best_res[9] if best_res[9] > 1 else np.nan
        srt = sorted_step
        _sort_steps(best_step, srt)
        o[O_P50] = srt[min(n_steps - 1, int(np.ceil(0.50 * n_steps)) - 1)]
        o[O_P95] = srt[min(n_steps - 1, int(np.ceil(0.95 * n_steps)) - 1)]
        o[O_P99] = srt[min(n_steps - 1, int(np.ceil(0.99 * n_steps)) - 1)]
        o[O_FIRST] = best_step[0]
        o[O_B0 + 0] = best_parts[0]
        o[O_B0 + 1] = best_parts[3]
        o[O_B0 + 2] = best_parts[1]
        o[O_B0 + 3] = best_parts[4]
        o[O_B0 + 4] = best_parts[5]
        o[O_B0 + 5] = best_parts[6]
        o[O_B0 + 6] = best_parts[7]
        o[O_B0 + 7] = -best_parts[8]
        o[O_B0 + 8] = best_parts[2]
        gpus_used = int(best_res[9])
        vram_fixed = best_res[13]
        host_fixed = fixed_total + output_b - vram_fixed
        kvf = best_res[14]
        o[O_L0 + 0] = (vram_fixed + best_traffic[2] + kv_mean_bytes * kvf) / batch if gpus_used else 0.0
        o[O_L0 + 1] = (host_fixed + best_traffic[3] + kv_mean_bytes * (1 - kvf)) / batch
        o[O_L0 + 2] = best_traffic[0] / batch
        o[O_L0 + 3] = best_traffic[1] / batch
        # prefill of the chosen placement
        if prompt > 0:
            parallel = int(best_res[15])
            nsplit = max(1, gpus_used)
            split = nsplit if (parallel == 2 or parallel == 3) else 1
            has_gpu = gpus_used > 0 and mach[M_GBW] > 0
            inv_gbw = 1.0 / (mach[M_GBW] * split) if has_gpu else np.inf
            inv_gfl = 1.0 / (mach[M_GFLOPS] * split) if (has_gpu and mach[M_GFLOPS] > 0) else 0.0
            inv_cops = 1.0 / mach[M_COPS] if mach[M_COPS] > 0 else 0.0
            up = uploads and has_gpu and not unified
            _prefill_point(fixed_b, fixed_p, moe_layers, expert_b, expert_p, best_home, best_fixed, best_fixed, attn_flops,
                           kv_window, output_b, output_p, best_res[10] > 0, float(max(n_experts, 1)), float(top_k), prompt,
                           ubatch, 0.0, up, min_upload, has_gpu, inv_gbw, inv_gfl, 1.0 / mach[M_HBW], inv_cops,
                           1.0 / mach[M_LINK_PAGEABLE] if mach[M_LINK_PAGEABLE] > 0 else np.inf,
                           1.0 / mach[M_LINK] if mach[M_LINK] > 0 else np.inf,
                           (mach[M_LAUNCH] + mach[M_FLOOR]) if gpus_used else 0.0, pparts)
            total = 0.0
            for p in range(6):
                o[O_P0 + p] = pparts[p]
                total += pparts[p]
            o[O_PREFILL] = total
        else:
            o[O_PREFILL] = 0.0
