"""The compact graded table other tools read: one row per cell, its best strategy and grade.

Schema (`GRADE_SCHEMA`, documented in the README): model, model_id, quant, device,
device_count, host, engine, context, batch, best_strategy, decode_tok_s, prefill_tok_s,
fits, grade, rubric_version.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from moesim.errors import MoesimError

GRADE_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("model_id", pa.string()),
        ("quant", pa.string()),
        ("device", pa.string()),
        ("device_count", pa.int32()),
        ("host", pa.string()),
        ("engine", pa.string()),
        ("context", pa.int64()),
        ("batch", pa.int32()),
        ("best_strategy", pa.string()),
        ("decode_tok_s", pa.float64()),
        ("prefill_tok_s", pa.float64()),
        ("fits", pa.bool_()),
        ("grade", pa.string()),
        ("rubric_version", pa.string()),
    ]
)


def grade_table(sweep: pa.Table) -> pa.Table:
    """The best row of every cell of a sweep table, in the compact grade schema, sorted by
    model, quant, device, host, engine, context, batch."""
    best = sweep.filter(pc.field("is_best"))
    table = pa.table(
        {
            name: best.column("resolved_strategy" if name == "best_strategy" else name).cast(field.type)
            for name, field in zip(GRADE_SCHEMA.names, GRADE_SCHEMA)
        },
        schema=GRADE_SCHEMA,
    )
    order = ["model", "quant", "device", "host", "engine", "context", "batch"]
    return table.sort_by([(c, "ascending") for c in order]) if table.num_rows else table


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def grade_rows(table: pa.Table) -> list[dict]:
    return [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]


def write_grades(table: pa.Table, fmt: str, path: str | Path | None) -> str | None:
    """Write the grade table as arrow/json/csv to `path`; returns the text for json/csv when
    `path` is None (arrow needs a file)."""
    if fmt == "arrow":
        if path is None:
            raise MoesimError("--format arrow needs -o FILE (Arrow IPC is binary)")
        from moesim.sweep.store import write_chunk

        write_chunk(Path(path), table, "arrow")
        return None
    if fmt == "json":
        version = table.column("rubric_version")[0].as_py() if table.num_rows else None
        text = json.dumps({"rubric_version": version, "rows": grade_rows(table)}, allow_nan=False) + "\n"
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in table.to_pylist():
            writer.writerow(["" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
                             for v in row.values()])
        text = buffer.getvalue()
    else:
        raise MoesimError(f"unknown grade format '{fmt}' (use arrow, json or csv)")
    if path is None:
        return text
    from moesim.sweep.store import _atomic_write_bytes

    _atomic_write_bytes(Path(path), lambda tmp: Path(tmp).write_text(text))
    return None
