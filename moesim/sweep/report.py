"""Sweep reports: a terminal summary and one self-contained HTML page of inline-SVG plots.

Plot ids (stable; the rendering test looks for them): `plot-grades`, `plot-tok-s-by-model-device`,
`plot-tok-s-by-device-quant-<n>` (one per focus model), `plot-tok-s-vs-vram`,
`plot-hit-rate-vs-vram`, `plot-memory-tiers`.
"""

from __future__ import annotations

import math
from collections import Counter
from html import escape

import pyarrow as pa
import pyarrow.compute as pc

from moesim.sweep import svg
from moesim.sweep.grading import GRADES, GRADE_RANK

PLOT_IDS = (
    "plot-grades",
    "plot-tok-s-by-model-device",
    "plot-tok-s-by-device-quant-0",
    "plot-tok-s-vs-vram",
    "plot-hit-rate-vs-vram",
    "plot-memory-tiers",
)
GB = 1e9
PREFERRED_QUANTS = ("Q4_K_M", "MXFP4", "Q8_0")
PREFERRED_DEVICES = ("rtx-4090", "rtx-3090")


def _rows(table: pa.Table, columns: list[str]) -> list[dict]:
    return table.select(columns).to_pylist()


def _best(table: pa.Table) -> pa.Table:
    return table.filter(pc.field("is_best"))


def focus_models(table: pa.Table, wanted: list[str] | None, limit: int = 3) -> list[str]:
    """Models to draw per-model plots for: the requested ones, else the `limit` largest."""
    models = {r["model"]: r["total_params"] for r in _rows(table, ["model", "total_params"])}
    if wanted:
        return [m for m in wanted if m in models]
    return sorted(models, key=lambda m: (-(models[m] or 0), m))[:limit]


def common_quants(table: pa.Table) -> dict[str, str]:
    """Per model, the quantization its per-model plots use: the first of PREFERRED_QUANTS it was
    swept at, else its alphabetically first quant."""
    pairs = table.group_by(["model", "quant"]).aggregate([]).to_pylist()
    quants: dict[str, set] = {}
    for row in pairs:
        quants.setdefault(row["model"], set()).add(row["quant"])
    return {m: next((q for q in PREFERRED_QUANTS if q in qs), min(qs)) for m, qs in quants.items()}


def summary_rows(table: pa.Table) -> list[dict]:
    """Per model: points, cells, the best fitting cell (grade, tok/s, where) and grade counts.

    "Best" ranks like `moesim plan`: fitting, then grade, then the more faithful quantization (bits per
    weight), then speed -- so a 2-bit file that is merely faster does not outrank a Q4 of the same grade.
    """
    best = _rows(
        _best(table), ["model", "quant", "device", "resolved_strategy", "decode_tok_s", "grade", "fits", "bits_per_weight"]
    )
    by_model: dict[str, list[dict]] = {}
    for row in best:
        by_model.setdefault(row["model"], []).append(row)
    counts = Counter(table.column("model").to_pylist())
    out = []
    for model in sorted(by_model):
        rows = by_model[model]

        def rank(r):
            speed = r["decode_tok_s"] if r["decode_tok_s"] is not None and math.isfinite(r["decode_tok_s"]) else -1
            bpw = r["bits_per_weight"] if r["bits_per_weight"] is not None and math.isfinite(r["bits_per_weight"]) else 0.0
            return (r["fits"], GRADE_RANK[r["grade"]], round(bpw, 2), speed, r["device"], r["quant"])

        top = max(rows, key=rank)
        grades = Counter(r["grade"] for r in rows)
        out.append(
            {
                "model": model,
                "points": counts[model],
                "cells": len(rows),
                "best_grade": top["grade"],
                "best_tok_s": top["decode_tok_s"],
                "best_device": top["device"],
                "best_quant": top["quant"],
                "best_strategy": top["resolved_strategy"],
                "grades": {g: grades.get(g, 0) for g in GRADES},
            }
        )
    return out


def print_summary(rows: list[dict], console) -> None:
    from rich.table import Table

    table = Table(title="moesim sweep: best graded configuration per model")
    for name in ("model", "points", "best", "tok/s", "device", "quant", "strategy", *GRADES):
        table.add_column(name, justify="right" if name in ("points", "tok/s", *GRADES) else "left")
    for row in rows:
        table.add_row(row["model"], str(row["points"]), row["best_grade"], svg.fmt(row["best_tok_s"]),
                      row["best_device"], row["best_quant"], row["best_strategy"],
                      *(str(row["grades"][g]) for g in GRADES))
    console.print(table)


def _model_device_plot(table: pa.Table) -> str:
    best = _rows(_best(table), ["model", "device", "quant", "decode_tok_s", "grade", "fits"])
    values, labels = {}, {}
    for row in best:
        key = (row["model"], row["device"])
        speed = row["decode_tok_s"] if row["fits"] else math.nan
        current = labels.get(key)
        if current is None or (GRADE_RANK[row["grade"]], speed if math.isfinite(speed) else -1) > (
            GRADE_RANK[current], values[key] if math.isfinite(values[key]) else -1
        ):
            values[key], labels[key] = speed, row["grade"]
    models = sorted({k[0] for k in values})
    devices = list(dict.fromkeys(r["device"] for r in _rows(table, ["device"])))
    return svg.heatmap("plot-tok-s-by-model-device", "Best decode tok/s per model and device (any quant; label: grade)",
                       models, devices, values, labels)


def _device_quant_plot(table: pa.Table, model: str, index: int) -> str:
    best = _rows(_best(table.filter(pc.field("model") == model)), ["device", "quant", "decode_tok_s", "grade", "fits"])
    values = {(r["device"], r["quant"]): (r["decode_tok_s"] if r["fits"] else math.nan) for r in best}
    labels = {(r["device"], r["quant"]): r["grade"] for r in best}
    devices = list(dict.fromkeys(r["device"] for r in best))
    quants = list(dict.fromkeys(r["quant"] for r in best))
    return svg.heatmap(f"plot-tok-s-by-device-quant-{index}", f"{model}: decode tok/s per device and quant (best placement)",
                       devices, quants, values, labels)


def _expert_cache_series(table: pa.Table, models: list[str], column: str,
                         common: dict[str, str]) -> dict[str, list[tuple[float, float]]]:
    mask = pc.and_(pc.starts_with(table.column("resolved_strategy"), "expert-cache"), table.column("fits"))
    rows = _rows(table.filter(mask), ["model", "quant", "device", "vram_capacity_bytes", column])
    series: dict[str, list[tuple[float, float]]] = {}
    for model in models:
        quant = common.get(model)
        points = {}
        for row in rows:
            if row["model"] == model and row["quant"] == quant and row[column] is not None:
                x = row["vram_capacity_bytes"] / GB
                points[x] = max(points.get(x, -math.inf), row[column])
        if points:
            series[f"{model} {quant}"] = sorted(points.items())
    return series


def _memory_plot(table: pa.Table, device: str | None, common: dict[str, str]) -> str:
    if device is None:
        return svg.empty("plot-memory-tiers", "Memory per tier", "no GPU device in the sweep")
    best = _best(table.filter(pc.field("device") == device))
    rows = _rows(best, ["model", "quant", "vram_bytes", "host_bytes", "nvme_bytes", "vram_capacity_bytes"])
    chosen = {}
    for row in rows:
        if row["quant"] == common.get(row["model"]):
            chosen[row["model"]] = row
    bars = [(f"{m} {r['quant']}", {"vram": r["vram_bytes"] / GB, "host": r["host_bytes"] / GB, "nvme": r["nvme_bytes"] / GB})
            for m, r in sorted(chosen.items())]
    capacity = rows[0]["vram_capacity_bytes"] / GB if rows else None
    return svg.stacked_bars("plot-memory-tiers", f"Memory per tier on {device} (best placement, GB)", bars, "GB",
                            svg.TIER_COLOURS, capacity)


def focus_device(table: pa.Table) -> str | None:
    devices = dict.fromkeys(r["device"] for r in _rows(table.filter(pc.field("device_kind") == "gpu"), ["device"]))
    for d in PREFERRED_DEVICES:
        if d in devices:
            return d
    return next(iter(devices), None)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table.summary { border-collapse: collapse; font-size: 12px; }
table.summary td, table.summary th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
table.summary td:first-child { text-align: left; }
svg.plot { display: block; margin: 0.6em 0; font-size: 10px; }
svg .title { font-size: 13px; font-weight: 600; } svg .tick { font-size: 9px; fill: #333; }
svg .axis { font-size: 11px; } svg .note { font-size: 11px; fill: #666; }
svg .cell-label { font-size: 8px; fill: #fff; } svg .frame { fill: none; stroke: #999; }
svg .grid { stroke: #e3e3e3; } svg .capacity { stroke: #000; stroke-dasharray: 4 3; }
.meta { font-size: 12px; color: #555; }
"""


def render_html(meta: dict, table: pa.Table, models: list[str] | None = None) -> str:
    """The whole report page as one string (same sweep -> same bytes)."""
    focus = focus_models(table, models)
    device = focus_device(table)
    common = common_quants(table)
    grades = Counter(_best(table).column("grade").to_pylist())
    plots = [
        ("Grades of the best placement per cell", svg.bar_chart("plot-grades", "Cells per grade",
                                                                 [(g, grades.get(g, 0)) for g in GRADES], svg.GRADE_COLOURS)),
        ("Decode speed per model and device", _model_device_plot(table)),
    ]
    for i, model in enumerate(focus):
        plots.append((f"{model}: per device and quantization", _device_quant_plot(table, model, i)))
    if not focus:
        plots.append(("Per device and quantization", svg.empty("plot-tok-s-by-device-quant-0", "tok/s per device and quant", "empty sweep")))
    plots.append(("Expert cache: decode speed vs VRAM budget", svg.line_chart(
        "plot-tok-s-vs-vram", "expert-cache placements: decode tok/s vs VRAM (one point per device)",
        _expert_cache_series(table, focus, "decode_tok_s", common), "VRAM budget (GB)", "decode tok/s", log_y=True)))
    plots.append(("Expert cache: hit rate vs VRAM budget", svg.line_chart(
        "plot-hit-rate-vs-vram", "expert-cache placements: routed-expert hit rate vs VRAM",
        _expert_cache_series(table, focus, "hit_rate", common), "VRAM budget (GB)", "hit rate", y_range=(0.0, 1.0))))
    plots.append(("Memory per tier", _memory_plot(table, device, common)))
    summary = summary_rows(table)
    head = "".join(f"<th>{escape(h)}</th>" for h in ("model", "points", "best", "tok/s", "device", "quant", "strategy", *GRADES))
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in (
            r["model"], r["points"], r["best_grade"], svg.fmt(r["best_tok_s"]), r["best_device"], r["best_quant"],
            r["best_strategy"], *(r["grades"][g] for g in GRADES))) + "</tr>"
        for r in summary
    )
    config = meta.get("config", {})
    rubric = config.get("rubric", {})
    info = (f"moesim {escape(str(meta.get('moesim_version')))}, schema {escape(str(meta.get('schema_version')))}, "
            f"rubric {escape(str(rubric.get('rubric_version')))}; {table.num_rows} points; "
            f"engines {escape(', '.join(config.get('engines', [])))}; traces {escape(', '.join(config.get('traces', [])))}")
    sections = "\n".join(f"<h2>{escape(title)}</h2>\n{plot}" for title, plot in plots)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>moesim sweep report</title>"
        f"<style>{STYLE}</style></head>\n<body>\n<h1>moesim sweep report</h1>\n<p class=\"meta\">{info}</p>\n"
        f"<table class=\"summary\"><tr>{head}</tr>{body}</table>\n{sections}\n</body></html>\n"
    )
