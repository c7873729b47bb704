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
from moesim.sweep.points import Cell, cell_key_affixes
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


def cell_requests(cell: Cell, prompt_tokens: int, seed: int, strategies: tuple[str, ...] | None = None) -> list:
    """One SimRequest per strategy of the cell (or per name in `strategies`)."""
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
        for strategy in (cell.strategies if strategies is None else strategies)
    ]


def _simulate_columns(cells: list[Cell], prompt_tokens: int, seed: int) -> tuple[dict, list[tuple[int, _Refused]]]:
    """simulate_columns over every strategy of every cell (one shared request per cell); a batch
    refused with MoesimError is retried point by point so one impossible placement becomes a
    refused row instead of losing the chunk. Returns (columns, [(index, _Refused), ...])."""
    from moesim.simulate import simulate_columns

    shared = [cell_requests(cell, prompt_tokens, seed, cell.strategies[:1] or ("auto",))[0] for cell in cells]
    try:
        return simulate_columns(shared, [cell.strategies for cell in cells]), []
    except MoesimError:
        if sum(len(cell.strategies) for cell in cells) == 1:
            raise
    requests = [request for cell in cells for request in cell_requests(cell, prompt_tokens, seed)]
    parts = []
    refused = []
    for i, request in enumerate(requests):
        try:
            parts.append(simulate_columns([request]))
        except MoesimError as exc:
            refused.append((i, _Refused(request.strategy, exc)))
            parts.append(None)
    template = next((p for p in parts if p is not None), None)
    if template is None:
        template = simulate_columns([])
    cols = {}
    for name, first in template.items():
        values = [(p[name][0] if p is not None else None) for p in parts]
        if isinstance(first, np.ndarray):
            fill = 0 if first.dtype.kind in "iub" else NAN
            cols[name] = np.array([fill if v is None else v for v in values], dtype=first.dtype)
        else:
            cols[name] = ["" if v is None else v for v in values]
    return cols, refused


def compute_cells(cells: list[Cell], rubric: Rubric, prompt_tokens: int = 512, seed: int = 0) -> pa.Table:
    """Simulate every strategy of every cell (one simulate_columns call) into a sweep-schema table."""
    sim, refused = _simulate_columns(cells, prompt_tokens, seed)
    n = sum(len(cell.strategies) for cell in cells)
    fits = np.asarray(sim["fits"], dtype=bool)
    cols = {name: np.asarray(sim[name], dtype=np.float64) for name in _SCALARS}
    cols["resolved_strategy"] = sim["strategy"]
    cols["weights_bytes"] = np.asarray(sim["weights_bytes"], dtype=np.int64)
    cols["kv_cache_bytes"] = np.asarray(sim["kv_cache_bytes"], dtype=np.int64)
    cols["fits"] = fits
    for tier in TIERS:
        cols[f"{tier}_bytes"] = np.asarray(sim[f"bytes_{tier}"], dtype=np.int64)
    cols["reason"] = [r or "" for r in sim["reason"]]
    # a point that does not fit has no link traffic and no time breakdown (0, as for a missing entry)
    for link in LINKS:
        cols[f"bytes_per_token_{link}"] = np.where(fits, sim[f"bytes_per_token_{link}"], 0.0)
    for name in TIME_COMPONENTS:
        cols[f"time_{name}_s"] = np.where(fits, sim[f"time_{name}_s"], 0.0)
    # the timing model reports exactly the TIME_COMPONENTS, so nothing is left over
    cols["time_other_s"] = np.zeros(n)
    cols["llama_cpp_command"] = [c or "" for c in sim["llama_cpp_command"]]
    for i, ref in refused:
        _put_refused(cols, i, ref)
    return columns_table(cells, cols, rubric, [i for i, _ in refused], [r.reason for _, r in refused])


_SCALARS = ("decode_tok_s", "decode_tok_s_low", "decode_tok_s_high", "latency_mean_s", "latency_p50_s",
            "latency_p95_s", "latency_p99_s", "prefill_tok_s", "ttft_s", "hit_rate")


def _put_refused(cols: dict, i: int, ref: _Refused) -> None:
    for name in _SCALARS:
        cols[name][i] = NAN
    cols["resolved_strategy"][i] = ref.strategy
    cols["reason"][i] = ref.reason
    cols["llama_cpp_command"][i] = ""
    cols["fits"][i] = False
    for name in ("weights_bytes", "kv_cache_bytes", *(f"{t}_bytes" for t in TIERS)):
        cols[name][i] = 0
    for name in (*(f"bytes_per_token_{link}" for link in LINKS), *(f"time_{c}_s" for c in TIME_COMPONENTS),
                 "time_other_s"):
        cols[name][i] = 0.0


def results_table(cells: list[Cell], results: list, rubric: Rubric) -> pa.Table:
    """Rows for `results` (SimResults in cell order, one per strategy of each cell) in the sweep schema."""
    n = len(results)
    cols: dict[str, object] = {}
    # one pass over the results per kind of field; None (a missing value) becomes NaN
    floats = np.array([attrgetter(*_SCALARS)(r) for r in results], dtype=np.float64).reshape(n, len(_SCALARS))
    for j, name in enumerate(_SCALARS):
        cols[name] = floats[:, j]
    cols["resolved_strategy"] = [r.strategy for r in results]
    ints = np.array([(r.weights_bytes, r.kv_cache_bytes, r.fits) for r in results], dtype=np.int64).reshape(n, 3)
    cols["weights_bytes"] = ints[:, 0].copy()
    cols["kv_cache_bytes"] = ints[:, 1].copy()
    cols["fits"] = ints[:, 2].astype(bool)
    # tiers and links not reported by a point hold nothing / carry nothing
    tier_bytes = np.array([tuple(map((r.bytes_by_tier or {}).get, TIERS, (0,) * len(TIERS))) for r in results],
                          dtype=np.int64).reshape(n, len(TIERS))
    for j, tier in enumerate(TIERS):
        cols[f"{tier}_bytes"] = tier_bytes[:, j].copy()
    cols["reason"] = [r.reason or "" for r in results]
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
    refused = [i for i, r in enumerate(results) if isinstance(r, _Refused)]
    return columns_table(cells, cols, rubric, refused, [results[i].reason for i in refused])


def columns_table(cells: list[Cell], cols: dict, rubric: Rubric, refused: list[int] | None = None,
                  refused_reasons: list[str] | None = None) -> pa.Table:
    """The sweep-schema table of `cells` from per-point result columns (in cell order, one per
    strategy of each cell): the key, per-cell and derived columns, grades and is_best are added here.
    `refused` points (simulate refused them outright) are graded F with their reason as the note."""
    cols = dict(cols)
    n = len(cols["fits"])
    counts = np.fromiter((len(c.strategies) for c in cells), np.int64, len(cells))
    cell_of = np.repeat(np.arange(len(cells)), counts)
    if len(cell_of) != n:
        raise ValueError(f"{n} results for {len(cell_of)} points")
    take = pa.array(cell_of, type=pa.int64())
    strategies = [s for c in cells for s in c.strategies]

    def per_cell(values, arrow_type):
        return pa.array(values, type=arrow_type).take(take)

    affixes = [cell_key_affixes(c) for c in cells]
    keys = [prefix + s + suffix for (prefix, suffix), c in zip(affixes, cells) for s in c.strategies]
    cols["point_key"] = keys
    sha1 = hashlib.sha1
    cols["point_hash"] = [sha1(k.encode()).hexdigest()[:8] for k in keys]
    cols["strategy"] = strategies
    cols["model"] = per_cell([c.model for c in cells], pa.string())
    cols["quant"] = per_cell([c.quant for c in cells], pa.string())
    cols["device"] = per_cell([c.target.slug for c in cells], pa.string())
    cols["device_count"] = per_cell([c.target.device_count for c in cells], pa.int32())
    cols["host"] = per_cell([c.target.host for c in cells], pa.string())
    cols["engine"] = per_cell([c.engine for c in cells], pa.string())
    cols["context"] = per_cell([c.context for c in cells], pa.int64())
    cols["batch"] = per_cell([c.batch for c in cells], pa.int32())
    cols["trace"] = per_cell([c.trace_id for c in cells], pa.string())
    cols["model_id"] = per_cell([c.model_id for c in cells], pa.string())
    cols["device_base"] = per_cell([c.target.device_base for c in cells], pa.string())
    cols["device_kind"] = per_cell([c.target.kind for c in cells], pa.string())
    total_params = np.fromiter((c.total_params for c in cells), np.int64, len(cells))[cell_of]
    vram_cap = np.fromiter((c.target.vram_capacity_bytes for c in cells), np.int64, len(cells))[cell_of]
    host_cap = np.fromiter((c.target.host_capacity_bytes for c in cells), np.int64, len(cells))[cell_of]
    unified = np.fromiter((c.target.kind == "unified" for c in cells), bool, len(cells))[cell_of]
    cols["total_params"] = total_params
    cols["vram_capacity_bytes"] = vram_cap
    cols["host_capacity_bytes"] = host_cap

    fits = np.asarray(cols["fits"], dtype=bool)
    weights = np.asarray(cols["weights_bytes"], dtype=np.int64)
    cols["bits_per_weight"] = np.divide(weights * 8.0, total_params, out=np.full(n, NAN), where=total_params > 0)
    tok_s, mean = cols["decode_tok_s"], cols["latency_mean_s"]
    # tok/s at a latency percentile, scaled from the mean so batched decode keeps its meaning
    for pct in ("p50", "p95"):
        lat = cols[f"latency_{pct}_s"]
        ok = (lat > 0) & (mean > 0) & np.isfinite(tok_s)
        cols[f"decode_tok_s_{pct}"] = np.divide(tok_s * mean, lat, out=np.full(n, NAN), where=ok)

    vram_fill = np.divide(cols["vram_bytes"], vram_cap, out=np.zeros(n), where=vram_cap > 0)
    # on unified memory the pool is counted once, as VRAM
    host_fill = np.divide(cols["host_bytes"], host_cap, out=np.zeros(n), where=(host_cap > 0) & ~unified)
    grades, notes = grade_arrays(rubric, fits=fits, decode_tok_s=tok_s, weights_bytes=weights,
                                 nvme_bytes=cols["nvme_bytes"], bits_per_weight=cols["bits_per_weight"],
                                 vram_fill=vram_fill, host_fill=host_fill)
    for i, reason in zip(refused or (), refused_reasons or ()):
        grades[i], notes[i] = "F", reason
    cols["grade"] = grades
    cols["grade_notes"] = notes
    cols["rubric_version"] = pa.array([rubric.rubric_version], pa.string()).take(pa.array(np.zeros(n, np.int64)))
    rank = GRADE_RANK.__getitem__
    implemented = _implemented_by_engine([c.engine for c in cells], [c.strategies for c in cells])
    cols["is_best"] = best_mask(cell_of, fits, np.fromiter(map(rank, grades), np.int64, n), tok_s,
                                np.array([s != "auto" for s in strategies], dtype=bool), implemented)
    return pa.table({name: _arrow(cols[name], SCHEMA.field(name).type) for name in SCHEMA.names}, schema=SCHEMA)


def _arrow(values, arrow_type):
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values if values.type == arrow_type else values.cast(arrow_type)
    return pa.array(values, type=arrow_type)


def _implements(engine: str, strategy: str) -> bool:
    """Whether `engine` itself runs the placement `strategy` names; the what-if ones (expert-cache,
    cpu-or-fetch) are simulated for every engine but implemented by none."""
    from moesim.catalog.engines import engine_implements
    from moesim.placement import parse_strategy

    return engine_implements(engine, parse_strategy(strategy).kind)


def _implemented_by_engine(engines: list[str], strategies_per_cell: list) -> np.ndarray:
    """`_implements` for every point, in cell order; cells share their strategy lists, so once per list."""
    per_list: dict = {}
    out = []
    for engine, strategies in zip(engines, strategies_per_cell):
        flags = per_list.get((engine, strategies))
        if flags is None:
            flags = per_list[(engine, strategies)] = [_implements(engine, strategy) for strategy in strategies]
        out.extend(flags)
    return np.array(out, dtype=bool)


def best_mask(cell_of: np.ndarray, fits: np.ndarray, grade_rank: np.ndarray, tok_s: np.ndarray,
              explicit: np.ndarray, implemented: np.ndarray) -> np.ndarray:
    """One True per cell: the best point -- one the engine implements first (a what-if placement is
    never the recommendation while a real one exists), then fitting, grade, decode tok/s; on an exact tie
    an explicit strategy wins over `auto` (it names the placement), then list order."""
    n = len(cell_of)
    speed = np.where(np.isfinite(tok_s), tok_s, -np.inf)
    position = np.arange(n)
    # lexsort: last key is primary; within a cell the best point sorts last
    order = np.lexsort((-position, explicit, speed, grade_rank, fits, implemented, cell_of))
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
        return (_implements(row["engine"], row["strategy"]), bool(row["fits"]), GRADE_RANK[row["grade"]], speed,
                row["strategy"] != "auto", -i)

    return max(range(len(rows)), key=rank)
