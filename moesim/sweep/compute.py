"""Simulate cells and turn the results into columns of the sweep schema (grades and is_best included).

Grades and is_best depend only on the points of one cell, and a chunk always holds whole
cells, so a chunk's rows are final the moment it is written: a resumed sweep ends with exactly
the rows an uninterrupted one writes.

Rows are built column by column (one pass per field over the results, numpy for the derived
columns) because a full sweep turns ~10^5..10^6 results into rows and a per-row dict would
cost more than the simulation.
"""

from __future__ import annotations

import hashlib
import math
from operator import attrgetter

import numpy as np
import pyarrow as pa

from moesim.errors import MoesimError
from moesim.sweep.grading import GRADE_RANK, Rubric, grade_arrays
from moesim.sweep.points import Cell, cell_key_affixes, cell_point_values
from moesim.sweep.store import KEY_COLUMNS, LINKS, SCHEMA, TIERS, TIME_COMPONENTS

NAN = float("nan")


class _Refused:
    """Stands in for the SimResult of a point simulate_many refused with a MoesimError."""

    fits = False
    decode_tok_s = latency_mean_s = latency_p50_s = latency_p95_s = latency_p99_s = NAN
    prefill_tok_s = ttft_s = hit_rate = decode_tok_s_low = decode_tok_s_high = NAN
    weights_bytes = kv_cache_bytes = 0
    llama_cpp_command = ""

    def __init__(self, strategy: str, error: Exception):
        self.strategy = strategy
        self.reason = f"refused: {error}"
        self.bytes_by_tier: dict = {}
        self.bytes_per_token_by_link: dict = {}
        self.time_breakdown_s: dict = {}


def cell_requests(cell: Cell, prompt_tokens: int, seed: int) -> list:
    from moesim.simulate import SimRequest

    return [
        SimRequest(
            model=cell.model_id,
            quant=cell.quant,
            device=cell.target.slug,
            device_count=cell.target.device_count,
            host=cell.target.host_arg,
            strategy=strategy,
            context=cell.context,
            batch=cell.batch,
            engine=cell.engine,
            prompt_tokens=prompt_tokens,
            trace=cell.trace_path,
            seed=seed,
        )
        for strategy in cell.strategies
    ]


def _simulate(requests: list) -> list:
    """simulate_many over all requests; a batch refused with MoesimError is retried point by
    point so one impossible placement becomes a refused row instead of losing the chunk."""
    from moesim.simulate import simulate_many

    try:
        return list(simulate_many(requests))
    except MoesimError:
        if len(requests) == 1:
            raise
    results = []
    for request in requests:
        try:
            results.append(simulate_many([request])[0])
        except MoesimError as exc:
            results.append(_Refused(request.strategy, exc))
    return results


def compute_cells(cells: list[Cell], rubric: Rubric, prompt_tokens: int = 512, seed: int = 0) -> pa.Table:
    """Simulate every strategy of every cell (one simulate_many call) into a sweep-schema table."""
    requests = []
    for cell in cells:
        requests.extend(cell_requests(cell, prompt_tokens, seed))
    return results_table(cells, _simulate(requests), rubric)


def results_table(cells: list[Cell], results: list, rubric: Rubric) -> pa.Table:
    """Rows for `results` (in cell order, one per strategy of each cell) in the sweep schema."""
    n = len(results)
    cell_of = np.repeat(np.arange(len(cells)), [len(c.strategies) for c in cells])
    if len(cell_of) != n:
        raise ValueError(f"{n} results for {len(cell_of)} points")
    strategies = [s for c in cells for s in c.strategies]
    cols: dict[str, object] = {}

    def per_cell(getter, dtype=None):
        values = [getter(c) for c in cells]
        if dtype is None:
            return [values[i] for i in cell_of.tolist()]
        return np.asarray(values, dtype=dtype)[cell_of]

    affixes = [cell_key_affixes(c) for c in cells]
    keys = [affixes[ci][0] + s + affixes[ci][1] for ci, s in zip(cell_of.tolist(), strategies)]
    cols["point_key"] = keys
    cols["point_hash"] = [hashlib.sha1(k.encode()).hexdigest()[:8] for k in keys]
    cell_values = [cell_point_values(c, "") for c in cells]
    for name in KEY_COLUMNS:
        if name == "strategy":
            cols[name] = strategies
            continue
        values = [v[name] for v in cell_values]
        if name in ("device_count", "context", "batch"):
            cols[name] = np.asarray(values, dtype=np.int64)[cell_of]
        else:
            cols[name] = [values[i] for i in cell_of.tolist()]
    cols["model_id"] = per_cell(lambda c: c.model_id)
    cols["device_base"] = per_cell(lambda c: c.target.device_base)
    cols["device_kind"] = per_cell(lambda c: c.target.kind)
    total_params = per_cell(lambda c: c.total_params, np.int64)
    cols["total_params"] = total_params
    vram_cap = per_cell(lambda c: c.target.vram_capacity_bytes, np.int64)
    host_cap = per_cell(lambda c: c.target.host_capacity_bytes, np.int64)
    unified = per_cell(lambda c: c.target.kind == "unified", bool)
    cols["vram_capacity_bytes"] = vram_cap
    cols["host_capacity_bytes"] = host_cap

    scalars = ("decode_tok_s", "decode_tok_s_low", "decode_tok_s_high", "latency_mean_s", "latency_p50_s",
               "latency_p95_s", "latency_p99_s", "prefill_tok_s", "ttft_s", "hit_rate")
    # one pass over the results per kind of field; None (a missing value) becomes NaN
    floats = np.array([attrgetter(*scalars)(r) for r in results], dtype=np.float64).reshape(n, len(scalars))
    for j, name in enumerate(scalars):
        cols[name] = floats[:, j]
    cols["resolved_strategy"] = [r.strategy for r in results]
    ints = np.array([(r.weights_bytes, r.kv_cache_bytes, r.fits) for r in results], dtype=np.int64).reshape(n, 3)
    weights = ints[:, 0].copy()
    cols["weights_bytes"] = weights
    cols["kv_cache_bytes"] = ints[:, 1].copy()
    fits = ints[:, 2].astype(bool)
    cols["fits"] = fits
    cols["bits_per_weight"] = np.divide(weights * 8.0, total_params, out=np.full(n, NAN), where=total_params > 0)
    # tiers and links not reported by a point hold nothing / carry nothing
    tier_bytes = np.array([tuple(map((r.bytes_by_tier or {}).get, TIERS, (0,) * len(TIERS))) for r in results],
                          dtype=np.int64).reshape(n, len(TIERS))
    tiers = {tier: tier_bytes[:, j].copy() for j, tier in enumerate(TIERS)}
    for tier in TIERS:
        cols[f"{tier}_bytes"] = tiers[tier]
    cols["reason"] = [r.reason or "" for r in results]
    tok_s, mean = cols["decode_tok_s"], cols["latency_mean_s"]
    # tok/s at a latency percentile, scaled from the mean so batched decode keeps its meaning
    for pct in ("p50", "p95"):
        lat = cols[f"latency_{pct}_s"]
        ok = (lat > 0) & (mean > 0) & np.isfinite(tok_s)
        cols[f"decode_tok_s_{pct}"] = np.divide(tok_s * mean, lat, out=np.full(n, NAN), where=ok)
    links = np.array([tuple(map((r.bytes_per_token_by_link or {}).get, LINKS, (0.0,) * len(LINKS))) for r in results],
                     dtype=np.float64).reshape(n, len(LINKS))
    for j, link in enumerate(LINKS):
        cols[f"bytes_per_token_{link}"] = links[:, j]
    # a point without a breakdown (it does not fit) spent no time in any component
    times = np.array([tuple(map((r.time_breakdown_s or {}).get, TIME_COMPONENTS, (0.0,) * len(TIME_COMPONENTS)))
                      for r in results], dtype=np.float64).reshape(n, len(TIME_COMPONENTS))
    for j, name in enumerate(TIME_COMPONENTS):
        cols[f"time_{name}_s"] = times[:, j]
    known = set(TIME_COMPONENTS)
    cols["time_other_s"] = np.array(
        [0.0 if not r.time_breakdown_s or r.time_breakdown_s.keys() <= known
         else sum(v for k, v in r.time_breakdown_s.items() if k not in known) for r in results], dtype=np.float64)
    cols["llama_cpp_command"] = [r.llama_cpp_command or "" for r in results]

    vram_fill = np.divide(tiers["vram"], vram_cap, out=np.zeros(n), where=vram_cap > 0)
    # on unified memory the pool is counted once, as VRAM
    host_fill = np.divide(tiers["host"], host_cap, out=np.zeros(n), where=(host_cap > 0) & ~unified)
    grades, notes = grade_arrays(rubric, fits=fits, decode_tok_s=tok_s, weights_bytes=weights,
                                 nvme_bytes=tiers["nvme"], bits_per_weight=cols["bits_per_weight"],
                                 vram_fill=vram_fill, host_fill=host_fill)
    refused = [i for i, r in enumerate(results) if isinstance(r, _Refused)]
    for i in refused:
        grades[i], notes[i] = "F", results[i].reason
    cols["grade"] = grades
    cols["grade_notes"] = notes
    cols["rubric_version"] = [rubric.rubric_version] * n
    cols["is_best"] = best_mask(cell_of, fits, np.array([GRADE_RANK[g] for g in grades]), tok_s,
                                np.array([s != "auto" for s in strategies], dtype=bool))
    return pa.table({name: pa.array(cols[name], type=SCHEMA.field(name).type) for name in SCHEMA.names},
                    schema=SCHEMA)


def best_mask(cell_of: np.ndarray, fits: np.ndarray, grade_rank: np.ndarray, tok_s: np.ndarray,
              explicit: np.ndarray) -> np.ndarray:
    """One True per cell: the best point -- fitting first, then grade, then decode tok/s; on an
    exact tie an explicit strategy wins over `auto` (it names the placement), then list order."""
    n = len(cell_of)
    speed = np.where(np.isfinite(tok_s), tok_s, -np.inf)
    position = np.arange(n)
    # lexsort: last key is primary; within a cell the best point sorts last
    order = np.lexsort((-position, explicit, speed, grade_rank, fits, cell_of))
    last_of_cell = np.ones(n, dtype=bool)
    if n:
        sorted_cells = cell_of[order]
        last_of_cell[:-1] = sorted_cells[1:] != sorted_cells[:-1]
    mask = np.zeros(n, dtype=bool)
    mask[order[last_of_cell]] = True
    return mask


def best_index(rows: list[dict]) -> int:
    """Index of the best row of one cell (reference for `best_mask`, same ranking)."""

    def rank(i: int):
        row = rows[i]
        speed = row["decode_tok_s"]
        speed = speed if speed is not None and math.isfinite(speed) else -math.inf
        return (bool(row["fits"]), GRADE_RANK[row["grade"]], speed, row["strategy"] != "auto", -i)

    return max(range(len(rows)), key=rank)
