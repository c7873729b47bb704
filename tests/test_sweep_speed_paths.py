"""The shortcuts the sweep takes for speed give the same answers as the plain paths."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.sweep import points as pts
from moesim.sweep.store import point_key


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 40, 256])
def test_sort_steps_orders_like_np_sort(n):
    from moesim.kernels.timing_batch import _sort_steps

    rng = np.random.default_rng(n)
    for trial in range(20):
        values = rng.random(n) * (10.0 ** rng.integers(-4, 4))
        if n > 3 and trial % 3 == 0:
            values[rng.integers(0, n, 2)] = np.nan
        if n > 3 and trial % 4 == 0:
            values[rng.integers(0, n, 3)] = values[0]  # ties
        out = np.empty(n)
        _sort_steps(values, out)
        assert np.array_equal(out, np.sort(values), equal_nan=True)


def test_cell_key_affixes_match_point_key():
    target = pts.Target("2x-rtx-3090", "rtx-3090", "system", 2, "desktop-ddr5-2ch", None, 48 * 10**9, 64 * 10**9)
    cell = pts.Cell("qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B", "Q4_K_M", target, "llama.cpp", 4096, 8, "preset:default",
                    None, ("auto", "tp:2"), 30 * 10**9)
    for strategy in cell.strategies:
        prefix, suffix = pts.cell_key_affixes(cell)
        assert prefix + strategy + suffix == point_key(pts.cell_point_values(cell, strategy))
    assert pts.cell_keys(cell) == [point_key(pts.cell_point_values(cell, s)) for s in cell.strategies]


def _same_columns(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], np.ndarray):
            assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), name
        else:
            assert list(a[name]) == list(b[name]), name


def test_simulate_columns_shared_requests_equal_expanded():
    """One request per machine plus strategy lists gives the columns of the expanded request list,
    including points the batch path hands to the per-point path (other cache policies, auto with
    nothing fitting)."""
    import dataclasses

    from moesim.simulate import SimRequest, simulate_columns

    shared = [
        SimRequest(model="qwen3-30b-a3b", quant="Q4_K_M", device="rtx-4090", prompt_tokens=64),
        SimRequest(model="qwen3-30b-a3b", quant="Q4_K_M", device="rtx-3060-12gb", prompt_tokens=64, strategy="gpu"),
        SimRequest(model="llama-3.1-70b", quant="Q4_K_M", device="rtx-2070-max-q", prompt_tokens=64),
        SimRequest(model="llama-3.1-8b", quant="Q4_K_M", device="rtx-4090", prompt_tokens=64),
    ]
    strategies = [("auto", "gpu", "expert-cache:lfu", "cpu-moe"), ("auto", "expert-cache:lru"), ("auto", "gpu"),
                  ("cpu", "auto")]
    expanded = [dataclasses.replace(r, strategy=s) for r, names in zip(shared, strategies) for s in names]
    got = simulate_columns(shared, strategies)
    _same_columns(got, simulate_columns(expanded))
    assert len(got["fits"]) == len(expanded)
    assert not got["fits"][6] and got["reason"][6].startswith("no candidate fits")  # a 70B model on a 12 GB laptop
