"""`moesim plan`: the best model / quantization / placement for one machine.

Candidates come from a stored sweep when one is given, else from simulating every (model,
quant, strategy) for that machine on the fly. Ranking: fits, then grade, then the more
capable choice (more parameters, then more bits per weight), then decode speed.
"""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.compute as pc

from moesim.errors import MoesimError
from moesim.sweep.grading import GRADE_RANK

PLAN_FIELDS = (
    "model", "model_id", "quant", "device", "device_count", "host", "resolved_strategy", "decode_tok_s",
    "decode_tok_s_p95", "prefill_tok_s", "ttft_s", "hit_rate", "weights_bytes", "vram_bytes", "host_bytes",
    "nvme_bytes", "bits_per_weight", "fits", "grade", "grade_notes", "rubric_version", "llama_cpp_command",
)


def _rank(row: dict):
    speed = row["decode_tok_s"] if row["decode_tok_s"] is not None and math.isfinite(row["decode_tok_s"]) else -1.0
    bpw = row["bits_per_weight"] if row["bits_per_weight"] is not None and math.isfinite(row["bits_per_weight"]) else 0.0
    return (bool(row["fits"]), GRADE_RANK[row["grade"]], row["total_params"] or 0, round(bpw, 2), speed)


def plan_table(device: str, host: str | None = None, model: str | None = None, sweep: str | None = None,
               context: int = 4096, grading: str | None = None) -> pa.Table:
    """Best-per-cell rows for one machine: from `sweep` if given, else simulated now."""
    if sweep is not None:
        from moesim.sweep.store import open_sweep

        _, table = open_sweep(sweep)
        mask = (pc.field("device") == device) & pc.field("is_best") & (pc.field("context") == context)
        if host is not None:
            mask = mask & (pc.field("host") == host)
        if model is not None:
            from moesim.sweep.points import resolve_models

            mask = mask & (pc.field("model") == resolve_models(model)[0].alias)
        table = table.filter(mask)
        if table.num_rows == 0:
            raise MoesimError(f"sweep {sweep} has no points for device '{device}'"
                              f"{' with host ' + host if host else ''} at context {context}")
        return table
    from moesim.sweep.compute import compute_cells
    from moesim.sweep.runner import SweepOptions, resolve

    options = SweepOptions(models=model or "all", devices=device, hosts=host or "typical", quants="all",
                           contexts=str(context), grading=grading)
    resolved = resolve(options)
    if not resolved.cells:
        raise MoesimError(f"no quantization applies to {model or 'any model'} on {device}")
    table = compute_cells(list(resolved.cells), resolved.rubric)
    return table.filter(pc.field("is_best"))


def plan(device: str, host: str | None = None, model: str | None = None, sweep: str | None = None,
         context: int = 4096, grading: str | None = None, top: int = 10) -> dict:
    """The best configuration for one machine and the runners-up.

    Returns
    -------
    dict with `device`, `host`, `context`, `best` (one row: model, quant, strategy, tok/s, grade,
    llama.cpp command ...) and `candidates` (the best `top` rows, best first; one per model when
    no model is given).
    """
    if top < 1:
        raise MoesimError("--top must be >= 1")
    table = plan_table(device, host, model, sweep, context, grading)
    rows = sorted(table.select(list(PLAN_FIELDS) + ["total_params"]).to_pylist(), key=_rank, reverse=True)
    if model is None:
        seen, per_model = set(), []
        for row in rows:
            if row["model"] not in seen:
                seen.add(row["model"])
                per_model.append(row)
        rows = per_model
    candidates = [{k: row[k] for k in PLAN_FIELDS} for row in rows[:top]]
    return {
        "device": device,
        "host": candidates[0]["host"] if candidates else host,
        "context": context,
        "source": "sweep" if sweep else "simulated",
        "best": candidates[0] if candidates else None,
        "candidates": candidates,
    }
