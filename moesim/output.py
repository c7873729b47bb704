"""Shared output helpers: every command takes `--json` and then prints exactly one JSON object."""

from __future__ import annotations

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


def print_table(rows: list[tuple], headers: tuple[str, ...]) -> None:
    """Columns aligned to their widest cell, two spaces apart (the table format of every command)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip())
    for r in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
