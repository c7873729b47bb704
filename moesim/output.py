"""Shared output helpers: every command takes `--json` and then prints exactly one JSON object."""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import asdict, is_dataclass
from typing import Any

import click


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()  # numpy scalar
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no inf/nan; other tools read null as "not defined"
    return value


def to_json(obj: Any) -> str:
    """Serialise dataclasses, numpy values and nested containers deterministically."""
    return json.dumps(_plain(obj), sort_keys=False, separators=(", ", ": "), allow_nan=False)


def emit_json(obj: Any) -> None:
    """Print exactly one JSON object on stdout."""
    sys.stdout.write(to_json(obj) + "\n")


def output_options(func):
    """`--json` and `--format` shared by every command (sqlite-utils style)."""
    func = click.option(
        "--format",
        "output_format",
        type=click.Choice(["table", "json", "csv"]),
        default=None,
        help="Output format (default: table on a terminal).",
    )(func)
    func = click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")(func)
    return func


def wants_json(as_json: bool, output_format: str | None) -> bool:
    return as_json or output_format == "json"


def emit_data(obj: Any, as_json: bool, output_format: str | None) -> bool:
    """Print a command's result `obj` as one JSON object (`--json`, `--format json`) or as CSV (`--format
    csv`, see `csv_rows`) and return True; False for the table format, which each command prints itself."""
    if wants_json(as_json, output_format):
        emit_json(obj)
        return True
    if output_format == "csv":
        rows = csv_rows(obj)
        writer = csv.DictWriter(sys.stdout, fieldnames=list(dict.fromkeys(k for row in rows for k in row)),
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return True
    return False


def _records(value: Any) -> list[dict] | None:
    """`value` as table rows: a list of objects, or an object of equal-length columns; else None."""
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        return value
    if isinstance(value, dict) and value and all(isinstance(column, list) for column in value.values()):
        lengths = {len(column) for column in value.values()}
        if len(lengths) == 1 and lengths != {0}:
            return [dict(zip(value, cells)) for cells in zip(*value.values())]
    return None


def _flat(record: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
    return out


def csv_rows(obj: Any) -> list[dict]:
    """The CSV rows of a command's JSON object: its table (a list of objects, or an object of columns); with
    several tables, all of them with the table's name in a leading `table` column; with none, the object as
    one row. Nested objects become dotted columns (`bytes_by_tier.vram`), lists JSON text, null empty."""
    plain = _plain(obj)
    tables = {key: rows for key, rows in ((k, _records(v)) for k, v in plain.items()) if rows is not None}
    if len(tables) == 1:
        rows = next(iter(tables.values()))
    elif tables:
        rows = [{"table": name, **row} for name, records in tables.items() for row in records]
    else:
        rows = [plain]
    return [_flat(row) for row in rows]


def print_table(rows: list[tuple], headers: tuple[str, ...]) -> None:
    """Columns aligned to their widest cell, two spaces apart (the table format of every command)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip())
    for r in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
