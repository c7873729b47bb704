"""The main job's speed: `moesim sweep --devices all --quants all` over every catalog model.

Goals (issue 6): <= 60 s cold on a 2-core machine (a fresh install: empty Numba cache, so JIT
compile is included, and no output folder) and <= 20 s when run again with `--force` (kernels
load from the cache). Every run is a fresh `moesim` process with its own NUMBA_CACHE_DIR, as a
user would start it.

Reported, not asserted (tests never assert wall-clock times): pytest-benchmark keeps the
seconds; `extra_info` and the printed line give each run's seconds, its ratio to its budget
(> 1 means over budget), the warm/cold ratio and the ratio to a one-model sweep timed in the
same session after the cold run (the unit the full sweep's cost is compared with).

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
ONE_MODEL = ["--models", "qwen3-30b-a3b", "--devices", "all", "--quants", "Q4_K_M"]

_SECONDS: dict[str, float] = {}


def _sweep(args, out, env, extra=()) -> dict:
    cmd = [sys.executable, "-m", "moesim", "sweep", *args, "--out", str(out), "--json", *extra]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    wall = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    summary["wall_s"] = wall
    return summary


@pytest.fixture(scope="module")
def sweep_root(tmp_path_factory):
    return tmp_path_factory.mktemp("sweep-bench")


def _env(cache_dir) -> dict:
    return dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))


def _reference_seconds(sweep_root) -> float:
    """One model on every device, warm (the main sweep's cache, already filled), with `--force`."""
    if "reference" not in _SECONDS:
        env = _env(sweep_root / "main-cache")
        out = sweep_root / "reference"
        _sweep(ONE_MODEL, out, env)
        _SECONDS["reference"] = _sweep(ONE_MODEL, out, env, ["--force"])["wall_s"]
    return _SECONDS["reference"]


def _report(benchmark, kind: str, summary: dict, budget: float, reference: float) -> None:
    seconds = summary["wall_s"]
    _SECONDS[kind] = seconds
    info = dict(points=summary["points"], seconds=seconds, budget_s=budget, budget_ratio=seconds / budget,
                reference_one_model_s=reference, ratio_to_reference=seconds / reference)
    line = (f"\n{kind} sweep: {summary['points']} points in {seconds:.1f} s ({seconds / budget:.2f} x the "
            f"{budget:.0f} s budget; {seconds / reference:.1f} x one model on every device, {reference:.1f} s)")
    if "cold" in _SECONDS and "warm --force" in _SECONDS:
        info["warm_to_cold_ratio"] = _SECONDS["warm --force"] / _SECONDS["cold"]
        line += f"; warm/cold {info['warm_to_cold_ratio']:.2f}"
    benchmark.extra_info.update(info)
    print(line)


def test_sweep_all_cold(benchmark, sweep_root):
    """Fresh install: an empty Numba cache and no output folder (JIT compile included)."""
    env = _env(sweep_root / "main-cache")  # empty until this run compiles into it
    summary = benchmark.pedantic(_sweep, args=(MAIN_JOB, sweep_root / "main", env), rounds=1, iterations=1)
    _report(benchmark, "cold", summary, COLD_BUDGET_S, _reference_seconds(sweep_root))
    assert summary["computed"] == summary["points"] > 0


def test_sweep_all_force_warm(benchmark, sweep_root):
    """The same sweep again with `--force`: kernels load from the cache the cold run filled."""
    env = _env(sweep_root / "main-cache")
    out = sweep_root / "main"
    if not out.exists():  # run on its own: fill the cache and the folder first
        _sweep(MAIN_JOB, out, env)
    summary = benchmark.pedantic(_sweep, args=(MAIN_JOB, out, env, ["--force"]), rounds=1, iterations=1)
    _report(benchmark, "warm --force", summary, WARM_BUDGET_S, _reference_seconds(sweep_root))
    assert summary["computed"] == summary["points"] > 0
