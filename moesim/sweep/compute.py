"""Simulate cells and turn the results into rows of the sweep schema (grades and is_best included).

Grades and is_best depend only on the points of one cell, and a chunk always holds whole
cells, so a chunk's rows are final the moment it is written: a resumed sweep ends with exactly
the rows an uninterrupted one writes.
"""

from __future__ import annotations

import math

import pyarrow as pa

from moesim.errors import MoesimError
from moesim.sweep.grading import GRADE_RANK, Rubric, grade_point
from moesim.sweep.points import Cell, cell_point_values
from moesim.sweep.store import LINKS, SCHEMA, TIERS, TIME_COMPONENTS, point_key, short_hash


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
    point so one impossible placement becomes a not-fitting row instead of losing the chunk."""
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
            results.append(exc)
    return results


def _float(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def _speed_at(latency_mean: float, latency: float, tok_s: float) -> float:
    """tok/s at a latency percentile, scaled from the mean so batched decode keeps its meaning."""
    if not (latency > 0 and latency_mean > 0 and math.isfinite(tok_s)):
        return math.nan
    return tok_s * latency_mean / latency


def result_row(cell: Cell, strategy: str, result, rubric: Rubric) -> dict:
    """One row of the sweep schema from a SimResult (or the MoesimError that refused the point)."""
    values = cell_point_values(cell, strategy)
    key = point_key(values)
    row = {name: None for name in SCHEMA.names}
    row.update(values)
    row.update(
        point_key=key,
        point_hash=short_hash(key),
        model_id=cell.model_id,
        device_base=cell.target.device_base,
        device_kind=cell.target.kind,
        total_params=cell.total_params,
        vram_capacity_bytes=cell.target.vram_capacity_bytes,
        host_capacity_bytes=cell.target.host_capacity_bytes,
        rubric_version=rubric.rubric_version,
    )
    if isinstance(result, Exception):
        row.update(resolved_strategy=strategy, fits=False, reason=str(result), decode_tok_s=math.nan,
                   grade="F", grade_notes=f"refused: {result}", llama_cpp_command="")
        for name in SCHEMA.names:
            if row[name] is None and pa.types.is_floating(SCHEMA.field(name).type):
                row[name] = math.nan
        return row
    tiers = result.bytes_by_tier or {}
    links = result.bytes_per_token_by_link or {}
    breakdown = dict(result.time_breakdown_s or {})
    weights = int(result.weights_bytes)
    row.update(
        resolved_strategy=result.strategy,
        bits_per_weight=weights * 8 / cell.total_params if cell.total_params > 0 else math.nan,
        weights_bytes=weights,
        kv_cache_bytes=int(result.kv_cache_bytes),
        fits=bool(result.fits),
        reason=result.reason or "",
        decode_tok_s=_float(result.decode_tok_s),
        decode_tok_s_low=_float(result.decode_tok_s_low),
        decode_tok_s_high=_float(result.decode_tok_s_high),
        latency_mean_s=_float(result.latency_mean_s),
        latency_p50_s=_float(result.latency_p50_s),
        latency_p95_s=_float(result.latency_p95_s),
        latency_p99_s=_float(result.latency_p99_s),
        prefill_tok_s=_float(result.prefill_tok_s),
        ttft_s=_float(result.ttft_s),
        hit_rate=_float(result.hit_rate),
        llama_cpp_command=result.llama_cpp_command or "",
    )
    row["decode_tok_s_p50"] = _speed_at(row["latency_mean_s"], row["latency_p50_s"], row["decode_tok_s"])
    row["decode_tok_s_p95"] = _speed_at(row["latency_mean_s"], row["latency_p95_s"], row["decode_tok_s"])
    for tier in TIERS:
        row[f"{tier}_bytes"] = int(tiers.get(tier, 0))
    for link in LINKS:
        row[f"bytes_per_token_{link}"] = _float(links.get(link, 0.0))
    for name in TIME_COMPONENTS:
        row[f"time_{name}_s"] = _float(breakdown.pop(name, 0.0))
    row["time_other_s"] = float(sum(_float(v) for v in breakdown.values()))
    fill = {}
    if cell.target.vram_capacity_bytes > 0:
        fill["vram"] = row["vram_bytes"] / cell.target.vram_capacity_bytes
    if cell.target.host_capacity_bytes > 0 and cell.target.kind not in ("unified",):
        fill["host"] = row["host_bytes"] / cell.target.host_capacity_bytes
    grade = grade_point(
        rubric,
        fits=row["fits"],
        decode_tok_s=row["decode_tok_s"],
        weights_bytes=weights,
        nvme_bytes=row["nvme_bytes"],
        bits_per_weight=row["bits_per_weight"],
        tier_fill=fill,
    )
    row["grade"] = grade.grade
    row["grade_notes"] = grade.notes
    return row


def best_index(rows: list[dict]) -> int:
    """Index of the best point of a cell: fitting first, then grade, then decode tok/s; on an
    exact tie the explicit strategy wins over `auto` (it names the placement), then list order."""

    def rank(i: int):
        row = rows[i]
        speed = row["decode_tok_s"]
        speed = speed if speed is not None and math.isfinite(speed) else -math.inf
        return (bool(row["fits"]), GRADE_RANK[row["grade"]], speed, row["strategy"] != "auto", -i)

    return max(range(len(rows)), key=rank)


def compute_cells(cells: list[Cell], rubric: Rubric, prompt_tokens: int = 512, seed: int = 0) -> pa.Table:
    """Simulate every strategy of every cell (one simulate_many call) into a sweep-schema table."""
    requests = []
    for cell in cells:
        requests.extend(cell_requests(cell, prompt_tokens, seed))
    results = _simulate(requests)
    rows = []
    position = 0
    for cell in cells:
        cell_rows = []
        for strategy in cell.strategies:
            cell_rows.append(result_row(cell, strategy, results[position], rubric))
            position += 1
        if cell_rows:
            best = best_index(cell_rows)
            for i, row in enumerate(cell_rows):
                row["is_best"] = i == best
        rows.extend(cell_rows)
    return rows_to_table(rows)


def rows_to_table(rows: list[dict]) -> pa.Table:
    columns = {name: [row[name] for row in rows] for name in SCHEMA.names}
    return pa.Table.from_pydict(columns, schema=SCHEMA)
