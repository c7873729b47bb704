"""The main job's speed: `moesim sweep --devices all --quants all` over every catalog model.

Goals (issue 6): <= 60 s cold on a 2-core machine (fresh Numba cache, so JIT compile is
included) and <= 20 s when run again with `--force` (kernels load from the cache). Each run is a
fresh `moesim` process, as a user would start it. Reported, not asserted: pytest-benchmark keeps
the seconds, and `extra_info` gives each run's ratio to its budget and to a one-model reference
sweep timed in the same session (ratio > 1 means over budget).

Run: `pytest benchmarks/test_sweep_bench.py --benchmark-json=sweep.json -s`
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

COLD_BUDGET_S = 60.0
WARM_BUDGET_S = 20.0
MAIN_JOB = ["--devices", "all", "--quants", "all"]


def _run_sweep(out, extra, env) -> dict:
    cmd = [sys.executable, "-m", "moesim", "sweep", *MAIN_JOB, "--out", str(out), "--json", *extra]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    wall = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    summary["wall_s"] = wall
    return summary


@pytest.fixture(scope="module")
def sweep_env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("numba-cache")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    return env, tmp_path_factory.mktemp("sweep")


@pytest.fixture(scope="module")
def reference_seconds(sweep_env, tmp_path_factory):
    """One model on every device, warm: the unit the full sweep's cost is compared with."""
    env, _ = sweep_env
    out = tmp_path_factory.mktemp("reference")
    cmd = [sys.executable, "-m", "moesim", "sweep", "--models", "qwen3-30b-a3b", "--devices", "all", "--quants",
           "Q4_K_M", "--out", str(out), "--json"]
    subprocess.run(cmd, capture_output=True, env=env, timeout=900, check=True)  # compile into the cache
    started = time.perf_counter()
    subprocess.run(cmd + ["--force"], capture_output=True, env=env, timeout=900, check=True)
    return time.perf_counter() - started


def test_sweep_all_cold(benchmark, sweep_env):
    env, root = sweep_env
    cold_env = dict(env, NUMBA_CACHE_DIR=str(root / "cold-cache"))  # empty: JIT compile included
    summary = benchmark.pedantic(_run_sweep, args=(root / "main", [], cold_env), rounds=1, iterations=1)
    benchmark.extra_info.update(points=summary["points"], seconds=summary["wall_s"],
                                budget_s=COLD_BUDGET_S, budget_ratio=summary["wall_s"] / COLD_BUDGET_S)
    print(f"\ncold sweep: {summary['points']} points in {summary['wall_s']:.1f} s "
          f"({summary['wall_s'] / COLD_BUDGET_S:.2f} x the {COLD_BUDGET_S:.0f} s budget)")
    assert summary["computed"] == summary["points"] > 0


def test_sweep_all_force_warm(benchmark, sweep_env, reference_seconds):
    env, root = sweep_env
    out = root / "main"
    if not out.exists():
        _run_sweep(out, [], env)
    summary = benchmark.pedantic(_run_sweep, args=(out, ["--force"], env), rounds=1, iterations=1)
    seconds = benchmark.stats.stats.min
    benchmark.extra_info.update(points=summary["points"], seconds=seconds, budget_s=WARM_BUDGET_S,
                                budget_ratio=seconds / WARM_BUDGET_S, reference_one_model_s=reference_seconds,
                                ratio_to_reference=seconds / reference_seconds)
    print(f"\nwarm --force sweep: {summary['points']} points in {seconds:.1f} s "
          f"({seconds / WARM_BUDGET_S:.2f} x the {WARM_BUDGET_S:.0f} s budget; "
          f"{seconds / reference_seconds:.1f} x one model on every device)")
    assert summary["computed"] == summary["points"] > 0
