"""pytest-benchmark cases for routing traces (outside the default test paths).

    pytest benchmarks/test_trace_bench.py --benchmark-columns=min,mean,rounds

Issue goal: a DeepSeek-R1-shaped trace (58 MoE layers x 256 experts, top-8) of 100k tokens generates
in < 5 s and loads in < 1 s on a 2-core machine. Timings are not asserted (tests never assert wall
clock); `extra_info` records each case's time as a ratio to a reference run in the same process --
a plain numpy pass over the same 46.4 M expert ids (`rng.integers` into a uint8 array for generation,
`np.array_equal` over the arrays for loading) -- plus the absolute goal for the reader.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from moesim.catalog.models import get_model
from moesim.trace.format import read_trace, write_trace
from moesim.trace.generate import generate_trace

N_TOKENS = 100_000


@pytest.fixture(scope="module")
def deepseek():
    model = get_model("deepseek-r1")
    generate_trace(model, 16, seed=0)  # compile (or load the cached kernels) before timing
    return model


def _reference_seconds(fn, repeats=3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def test_generate_deepseek_100k(benchmark, deepseek):
    rng = np.random.default_rng(0)
    reference = _reference_seconds(lambda: rng.integers(0, 256, size=(N_TOKENS, 58, 8), dtype=np.uint8))
    trace = benchmark.pedantic(lambda: generate_trace(deepseek, N_TOKENS, seed=1), rounds=3, iterations=1)
    assert trace.experts.shape == (N_TOKENS, 58, 8)
    benchmark.extra_info.update(goal_seconds=5.0, reference="rng.integers, same shape",
                                reference_seconds=reference, ratio_to_reference=benchmark.stats["min"] / reference)


def test_load_deepseek_100k(benchmark, deepseek, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "deepseek.arrow"
    trace = generate_trace(deepseek, N_TOKENS, seed=1)
    write_trace(trace, path)
    read_trace(path)  # warm the page cache and the validation kernel
    reference = _reference_seconds(lambda: np.array_equal(trace.experts, trace.experts.copy()))
    loaded = benchmark.pedantic(lambda: read_trace(path), rounds=3, iterations=1)
    assert np.array_equal(loaded.experts, trace.experts)
    benchmark.extra_info.update(goal_seconds=1.0, file_bytes=path.stat().st_size, reference="copy + compare",
                                reference_seconds=reference, ratio_to_reference=benchmark.stats["min"] / reference)


def test_write_deepseek_100k(benchmark, deepseek, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "deepseek.arrow"
    trace = generate_trace(deepseek, N_TOKENS, seed=1)
    benchmark.pedantic(lambda: write_trace(trace, path), rounds=3, iterations=1)
    benchmark.extra_info.update(file_bytes=path.stat().st_size)


def test_sweep_sized_trace(benchmark, deepseek):
    """What the sweep asks for per model: one 512-token decode trace."""
    benchmark.pedantic(lambda: generate_trace(deepseek, 512, seed=0), rounds=5, iterations=1)
