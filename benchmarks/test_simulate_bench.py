"""Per-point cost of `simulate_many` (the sweep's inner loop), reported not asserted.

Budget (issue 5 / 6): ~50-100 us per point so ~10^5 points fit the sweep's 20 s warm budget on
2 cores. Each case records microseconds per point in `extra_info` and the ratio to the per-point
reference path (placement + decode + prefill one strategy at a time) timed in the same process.

Run: `pytest benchmarks/test_simulate_bench.py --benchmark-json=simulate.json -s`
"""

from __future__ import annotations

import time

import pytest

from moesim import simulate as sim
from moesim.simulate import SimRequest, simulate_many

STRATEGIES = {"gpu": ("auto", "gpu", "cpu-moe", "expert-cache:lru", "cpu"), "system": ("auto", "gpu", "cpu-moe"),
              "unified": ("auto", "unified"), "cpu": ("auto", "cpu")}
MODELS = ("deepseek-r1", "qwen3-30b-a3b", "mixtral-8x7b", "gpt-oss-120b", "llama-3.1-8b")


def _requests(model: str) -> list[SimRequest]:
    from moesim.catalog.devices import all_devices, all_systems

    targets = [(d.slug, d.kind) for d in all_devices()] + [(s.slug, "system") for s in all_systems()]
    reqs = []
    for slug, kind in targets:
        for strategy in STRATEGIES[kind]:
            reqs.append(SimRequest(model=model, quant="Q4_K_M", device=slug, strategy=strategy))
    return reqs


def _fresh_evaluations():
    # keep footprints, traces and machines; drop per-point memos so every round does the work
    sim._SESSION.evals.clear()
    sim._SESSION.prefills.clear()


@pytest.mark.parametrize("model", MODELS)
def test_simulate_many_per_point(benchmark, model):
    reqs = _requests(model)
    ok = []
    for r in reqs:
        try:
            simulate_many([r])
            ok.append(r)
        except Exception:
            pass
    # reference: the per-point path, same process
    _fresh_evaluations()
    started = time.perf_counter()
    for r in ok:
        sim._SESSION.run(r)
    reference_s = time.perf_counter() - started

    def batch():
        _fresh_evaluations()
        return simulate_many(ok)

    benchmark.pedantic(batch, rounds=3, iterations=1)
    per_point_us = benchmark.stats.stats.mean / len(ok) * 1e6
    benchmark.extra_info.update(
        points=len(ok),
        per_point_us=round(per_point_us, 1),
        reference_per_point_us=round(reference_s / len(ok) * 1e6, 1),
        speedup_vs_per_point_path=round(reference_s / benchmark.stats.stats.mean, 2),
        budget_ratio=round(per_point_us / 100.0, 2),  # > 1: over the 100 us/point budget
    )
