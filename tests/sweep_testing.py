"""Small hand-made sweeps for the storage, grade and report tests.

The SimResults here are constructed by hand (simple closed-form numbers per strategy) so these
tests exercise the sweep's storage, grading, is_best and report code independently of the timing
model; the end-to-end tests in test_sweep_cli.py run the real simulator.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.compute as pc

from moesim.simulate import SimRequest, SimResult
from moesim.sweep.compute import results_table
from moesim.sweep.grading import load_rubric
from moesim.sweep.points import Cell, Target
from moesim.sweep.store import SCHEMA_VERSION, partition_dir, write_chunk, write_meta

GB = 10**9

TARGETS = (
    Target("gpu-24", "gpu-24", "gpu", 1, "desk-2ch", None, 24 * GB, 64 * GB),
    Target("2x-gpu-24", "gpu-24", "system", 2, "desk-2ch", None, 48 * GB, 64 * GB),
    Target("mac-128", "mac-128", "unified", 1, "mac-128", None, 96 * GB, 128 * GB),
)
MODELS = (  # alias, id, total params, {quant: weights bytes}
    ("tiny-moe", "org/Tiny-MoE", 30 * 10**9, {"Q4_K_M": 18 * GB, "Q8_0": 32 * GB, "IQ2_XXS": 9 * GB}),
    ("huge-moe", "org/Huge-MoE", 671 * 10**9, {"Q4_K_M": 404 * GB, "IQ1_S": 131 * GB}),
)
STRATEGIES = {"gpu": ("auto", "gpu", "expert-cache:lru", "cpu"), "system": ("auto", "gpu", "tp:2"),
              "unified": ("auto", "unified")}


def fake_result(cell: Cell, strategy: str, weights: int) -> SimResult:
    """A plausible result: bandwidth-bound speed from where the weights live."""
    target = cell.target
    request = SimRequest(model=cell.model_id, quant=cell.quant, device=target.slug, device_count=target.device_count,
                         strategy=strategy, context=cell.context, batch=cell.batch, engine=cell.engine)
    resolved = {"auto": "gpu" if weights < target.vram_capacity_bytes else "expert-cache:lru"}.get(strategy, strategy)
    if target.kind == "unified":
        resolved = "unified"
    if resolved in ("gpu", "tp:2", "unified"):
        tiers = {"vram": weights, "host": 0, "nvme": 0}
        fits = weights < target.vram_capacity_bytes
        bandwidth = 900e9 if target.kind != "unified" else 400e9
        hit = math.nan
    elif resolved == "expert-cache:lru":
        vram = min(weights, target.vram_capacity_bytes // 2)
        host = min(weights - vram, target.host_capacity_bytes)
        nvme = weights - vram - host
        tiers = {"vram": vram, "host": host, "nvme": nvme}
        fits = True
        bandwidth = 60e9 if nvme == 0 else 3e9
        hit = vram / weights
    else:  # cpu
        host = min(weights, target.host_capacity_bytes)
        tiers = {"vram": 0, "host": host, "nvme": weights - host}
        fits = True
        bandwidth = 70e9 if weights == host else 3e9
        hit = math.nan
    active = weights / 20
    tok_s = bandwidth / active
    latency = 1 / tok_s
    return SimResult(
        request=request, strategy=resolved, fits=fits, reason="" if fits else "weights exceed VRAM",
        decode_tok_s=tok_s, latency_mean_s=latency, latency_p50_s=latency * 0.95, latency_p95_s=latency * 1.3,
        latency_p99_s=latency * 1.5, prefill_tok_s=tok_s * 20, ttft_s=512 / (tok_s * 20), hit_rate=hit,
        weights_bytes=weights, kv_cache_bytes=GB // 2, bytes_by_tier=tiers,
        bytes_per_token_by_link={"vram": active, "pcie": active * (1 - (0 if math.isnan(hit) else hit))},
        time_breakdown_s={"experts_gpu": latency * 0.6, "attention_weights": latency * 0.3, "mystery": latency * 0.1},
        llama_cpp_command=f"llama-server -m {cell.model}-{cell.quant}.gguf --strategy {resolved}",
    )


def fake_cells() -> list[tuple[Cell, int]]:
    cells = []
    for alias, model_id, params, quants in MODELS:
        for quant, weights in quants.items():
            for target in TARGETS:
                cell = Cell(alias, model_id, quant, target, "llama.cpp", 4096, 1, "preset:default", None,
                            STRATEGIES[target.kind], params)
                cells.append((cell, weights))
    return cells


def fake_table(rubric=None):
    cells = fake_cells()
    results = [fake_result(cell, s, weights) for cell, weights in cells for s in cell.strategies]
    return results_table([c for c, _ in cells], results, rubric or load_rubric())


def fake_rows(rubric=None) -> list[dict]:
    return fake_table(rubric).to_pylist()


def write_fake_sweep(out: Path, fmt: str = "arrow") -> Path:
    """A complete little sweep folder (two model partitions) as `moesim sweep` would write it."""
    rubric = load_rubric()
    table = fake_table(rubric)
    out.mkdir(parents=True, exist_ok=True)
    write_meta(out, {"schema_version": SCHEMA_VERSION, "moesim_version": "test", "catalog_hashes": {},
                     "config": {"engines": ["llama.cpp"], "traces": ["preset:default"],
                                "rubric": {"rubric_version": rubric.rubric_version}}})
    for alias, *_ in MODELS:
        part = table.filter(pc.equal(table.column("model"), alias))
        write_chunk(partition_dir(out, alias) / f"part-test{'.arrow' if fmt == 'arrow' else '.parquet'}", part, fmt)
    return out
