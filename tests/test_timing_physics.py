"""Physics as tests, on hand-built inputs: monotonicity the timing model must never violate."""

from dataclasses import replace

import numpy as np
import pytest

from moesim.placement import parse_strategy, place
from moesim.simulate import choose_placement
from moesim.timing import RoutingStats, decode_timing, prefill_timing
from naive_timing import toy_cpu_machine, toy_gpu_machine, toy_profile

OVERHEAD = 0.2e9
E, K, M = 16, 2, 7


class _Engine:
    uploads_weights_for_prefill = True
    prefill_upload_min_batch = 32
    prefill_ubatch = 512


def _trace(p_reuse: float, seed=0, T=400, n_seqs=1):
    """Toy routing with temporal locality: each slot repeats the previous token's expert with p_reuse."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, E + 1) ** 0.8
    pop /= pop.sum()
    out = np.zeros((n_seqs, T, M, K), np.uint8)
    for s in range(n_seqs):
        for m in range(M):
            perm = rng.permutation(E)
            prev = rng.choice(E, K, replace=False, p=pop)
            for t in range(T):
                chosen = []
                for j in range(K):
                    if rng.random() < p_reuse and prev[j] not in chosen:
                        chosen.append(int(prev[j]))
                    else:
                        while True:
                            e = int(perm[rng.choice(E, p=pop)])
                            if e not in chosen:
                                chosen.append(e)
                                break
                out[s, t, m] = chosen
                prev = np.array(chosen)
    return out


ROUTING = RoutingStats(_trace(0.3, n_seqs=4), n_experts=E, warmup_tokens=100)


def _tok_s(strategy, hier, profile=None, context=1024, batch=1, routing=ROUTING):
    best, _, _ = choose_placement(parse_strategy(strategy), profile or toy_profile(n_experts=E, top_k=K), hier,
                                  routing, context, batch, OVERHEAD)
    return best[2] if best else 0.0


@pytest.mark.parametrize("strategy", ["auto", "expert-cache:lru", "cpu-or-fetch", "gpu"])
def test_more_vram_never_slower(strategy):
    speeds = [_tok_s(strategy, toy_gpu_machine(vram_gb=v)) for v in np.arange(0.5, 12.0, 0.25)]
    assert all(b >= a * (1 - 1e-12) for a, b in zip(speeds, speeds[1:])), speeds
    assert speeds[-1] > speeds[0]


@pytest.mark.parametrize("strategy", ["cpu", "cpu-moe", "auto", "ktransformers"])
def test_more_host_bandwidth_never_slower(strategy):
    speeds = [_tok_s(strategy, toy_gpu_machine(vram_gb=2.5, host_gbps=g)) for g in (20, 40, 60, 90, 200, 400)]
    assert all(b >= a for a, b in zip(speeds, speeds[1:])), speeds
    assert speeds[-1] > speeds[0]


def test_higher_hit_rate_never_slower():
    p = toy_profile(n_experts=E, top_k=K)
    h = toy_gpu_machine(vram_gb=5.0)
    last_rate, last_speed = -1.0, 0.0
    for budget in range(0, 8):
        pl = place(parse_strategy(f"expert-cache:lru:{budget * int(p.expert_bytes.sum())}"), p, h, 1024, 1, OVERHEAD)
        assert pl.fits
        dec = decode_timing(p, pl, h, ROUTING, 1024, 1)
        speed = 1.0 / dec.step_s.mean()
        assert dec.hit_rate >= last_rate
        assert speed >= last_speed * (1 - 1e-12)
        last_rate, last_speed = dec.hit_rate, speed
    assert last_rate > 0.3


@pytest.mark.parametrize("strategy", ["gpu", "cpu", "cpu-moe", "expert-cache:lru"])
def test_decode_time_grows_with_context(strategy):
    h = toy_gpu_machine(vram_gb=12)
    speeds = [_tok_s(strategy, h, context=c) for c in (0, 512, 4096, 32768)]
    assert all(b < a for a, b in zip(speeds, speeds[1:])), speeds


def test_sliding_window_caps_kv_growth():
    h = toy_gpu_machine(vram_gb=12)
    windowed = toy_profile(n_experts=E, top_k=K, window=[128] * 8)
    a = _tok_s("gpu", h, windowed, context=4096)
    b = _tok_s("gpu", h, windowed, context=32768)
    assert a == pytest.approx(b)


@pytest.mark.parametrize("vram", [1.0, 2.0, 3.0, 6.0, 12.0])
def test_auto_never_slower_than_any_candidate(vram):
    p = toy_profile(n_experts=E, top_k=K)
    h = toy_gpu_machine(vram_gb=vram)
    best, refused, tried = choose_placement(parse_strategy("auto"), p, h, ROUTING, 1024, 1, OVERHEAD)
    assert tried
    for name, speed in tried.items():
        assert best[2] >= speed
        assert _tok_s(name, h) <= best[2]


def test_stronger_locality_higher_hit_rate_and_speed():
    p = toy_profile(n_experts=E, top_k=K)
    h = toy_gpu_machine(vram_gb=2.4)
    results = []
    for reuse in (0.0, 0.5, 0.9):
        routing = RoutingStats(_trace(reuse, seed=1), n_experts=E, warmup_tokens=100)
        pl = place(parse_strategy("expert-cache:lru"), p, h, 1024, 1, OVERHEAD)
        assert 0 < pl.cache_experts_per_layer < E
        dec = decode_timing(p, pl, h, routing, 1024, 1)
        results.append((dec.hit_rate, 1.0 / dec.step_s.mean()))
    rates = [r for r, _ in results]
    speeds = [s for _, s in results]
    assert rates[0] < rates[1] < rates[2]
    assert speeds[0] < speeds[1] < speeds[2]


def test_latency_spread_comes_from_the_trace():
    p = toy_profile(n_experts=E, top_k=K)
    h = toy_gpu_machine(vram_gb=2.4)
    pl = place(parse_strategy("expert-cache:lru"), p, h, 0, 1, OVERHEAD)
    dec = decode_timing(p, pl, h, ROUTING, 0, 1)
    assert np.percentile(dec.step_s, 95) > 1.2 * np.percentile(dec.step_s, 50)
    all_gpu = place(parse_strategy("gpu"), p, toy_gpu_machine(vram_gb=12), 0, 1, OVERHEAD)
    flat = decode_timing(p, all_gpu, toy_gpu_machine(vram_gb=12), ROUTING, 0, 1)
    # all experts resident: only the KV cache (one token per step) changes the step time
    assert np.percentile(flat.step_s, 95) < 1.02 * np.percentile(flat.step_s, 50)
    assert np.all(np.diff(flat.step_s) > 0)


def test_batch_reads_union_of_experts_and_raises_throughput():
    p = toy_profile(n_experts=E, top_k=K)
    h = toy_gpu_machine(vram_gb=12)
    one = _tok_s("gpu", h, p, batch=1)
    four = _tok_s("gpu", h, p, batch=4)
    assert one < four < 4 * one


def test_cpu_compute_can_bind():
    p = toy_profile(n_experts=E, top_k=K)
    fast_ram = replace(toy_cpu_machine(host_gbps=1000.0), cpu_ops=1e11)
    pl = place(parse_strategy("cpu"), p, fast_ram, 0, 1, 0.0)
    dec = decode_timing(p, pl, fast_ram, ROUTING, 0, 1)
    more_cores = replace(fast_ram, cpu_ops=1e13)
    dec2 = decode_timing(p, pl, more_cores, ROUTING, 0, 1)
    assert dec2.step_s.mean() < dec.step_s.mean()


def test_prefill_faster_per_token_than_decode_and_upload_counts():
    p = toy_profile(n_experts=E, top_k=K)
    h = toy_gpu_machine(vram_gb=2.5)
    pl = place(parse_strategy("cpu-moe"), p, h, 0, 1, OVERHEAD)
    pre = prefill_timing(p, pl, h, _Engine(), 512)
    dec = decode_timing(p, pl, h, ROUTING, 0, 1)
    assert pre.tok_s > 1.0 / dec.step_s.mean()
    assert pre.breakdown_s["upload"] > 0
    slow_link = replace(h, link_pageable_bandwidth_bps=h.link_pageable_bandwidth_bps / 4)
    assert prefill_timing(p, pl, slow_link, _Engine(), 512).tok_s < pre.tok_s


def test_tensor_parallel_sums_bandwidth():
    p = toy_profile(n_experts=E, top_k=K)
    one = _tok_s("gpu", toy_gpu_machine(vram_gb=12), p)
    tp2 = _tok_s("tp:2", toy_gpu_machine(vram_gb=12, n_gpus=2, ic_gbps=100), p)
    split = _tok_s("gpu", toy_gpu_machine(vram_gb=12, n_gpus=2, ic_gbps=100), p)
    assert tp2 > one
    assert split <= one  # layer split: sequential, same per-GPU bandwidth, plus a hop


@pytest.mark.parametrize("strategy", ["gpu", "cpu", "cpu-moe", "n-cpu-moe:4", "ngl:3", "expert-cache:lru", "cpu-or-fetch",
                                      "ktransformers"])
@pytest.mark.parametrize("overlap", [False, True])
def test_decode_kernel_matches_plain_reference(strategy, overlap):
    from naive_timing import decode_steps

    p = toy_profile(n_experts=E, top_k=K, window=[0, 64, 0, 0, 128, 0, 0, 0])
    vram = {"gpu": 8.0, "n-cpu-moe:4": 5.0, "ngl:3": 3.5}.get(strategy, 2.4)
    h = toy_gpu_machine(vram_gb=vram, overlap=overlap, ram_gb=4.0)  # small RAM: CPU placements page from NVMe
    pl = place(parse_strategy(strategy), p, h, 100, 1, OVERHEAD)
    assert pl.fits
    dec = decode_timing(p, pl, h, ROUTING, 100, 1)
    counts = ROUTING.counts(1)
    misses = ROUTING.misses(pl.cache_experts_per_layer) if pl.cache_home else np.zeros_like(counts)
    ram = ROUTING.misses(pl.ram_experts_per_layer) if (pl.host_experts and pl.ram_experts_per_layer < E) else np.zeros_like(counts)
    ref = decode_steps(p, pl, h, counts, misses, ram, 100, 1)
    np.testing.assert_allclose(dec.step_s, ref, rtol=1e-12)
    assert dec.mean_step_s == pytest.approx(ref.mean(), rel=1e-12)
