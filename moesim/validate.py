"""Validation against published measurements, and the uncertainty bands derived from it.

`validate_file(path)` predicts every row of a measurement file (format of
`../shared/calibration/measurements.csv`, see its README) with the same model every other
estimate uses -- catalog specs, class/engine efficiencies -- and reports predicted vs measured
and the median absolute percentage error per group.  Rows the model cannot express are listed
with the reason, never skipped.

`python -m moesim.validate --write-bands MEASUREMENTS.csv` writes
`catalog/data/calibration_bands.toml`: per group, quantiles of log(measured / predicted), which
`simulate` turns into `decode_tok_s_low/high` for every estimate of that group.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import tomllib
from functools import lru_cache
from importlib import resources
from statistics import median

from moesim.errors import MoesimError

REQUIRED_COLUMNS = (
    "id", "model", "quant", "device", "device_count", "strategy", "batch", "context", "engine", "metric", "value",
)
HOST_COLUMNS = {
    "host_sockets": "sockets",
    "host_cores": "cores",
    "host_mem_type": "mem_type",
    "host_mem_channels": "mem_channels",
    "host_mem_mts": "mem_mts",
    "host_ram_gb": "ram_gb",
}
GROUPS = ("dense-in-vram", "moe-offload", "unified", "cpu-only", "multi-gpu")
METRICS = ("decode_tok_s", "prefill_tok_s")
# Acceptance targets of the median absolute percentage error per group (issue 5).
TARGET_MDAPE = {"dense-in-vram": 0.10, "moe-offload": 0.20, "unified": 0.20, "cpu-only": 0.20, "multi-gpu": 0.20}
# The band never claims more certainty than build-to-build spread of one setup.
MIN_BAND_LOG = math.log(1.15)
BANDS_FILE = "data/calibration_bands.toml"


def row_group(row: dict) -> str:
    """Calibration group of a measurement row, from its setup (not from the prediction)."""
    strategy = (row.get("strategy") or "").strip().lower()
    count = _int(row.get("device_count"), 1)
    if strategy == "cpu":
        return "cpu-only"
    if strategy == "unified":
        return "unified"
    if count > 1 or strategy.startswith(("tp:", "ep:")):
        return "multi-gpu"
    if strategy == "gpu":
        return "dense-in-vram"
    return "moe-offload"


def _int(text, default=None):
    if text is None or str(text).strip() == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise MoesimError(f"not a number: {text!r}") from None
    if value < 0:
        raise MoesimError(f"negative value {text!r}")
    return int(value)


def _float(text, default=None):
    if text is None or str(text).strip() == "":
        return default
    try:
        return float(text)
    except ValueError:
        raise MoesimError(f"not a number: {text!r}") from None


def _has_quant(name: str) -> bool:
    from moesim.catalog.quants import get_quant

    try:
        get_quant(name)
    except MoesimError:
        return False
    return True


def _loads(engine: str, quant: str) -> bool:
    from moesim.catalog.engines import engine_loads
    from moesim.catalog.quants import get_quant

    return engine_loads(engine, get_quant(quant))


def request_for_row(row: dict):
    """The SimRequest that reproduces one measurement row's setup (MoesimError if it cannot)."""
    from moesim.simulate import SimRequest

    metric = row["metric"].strip()
    if metric not in METRICS:
        raise MoesimError(f"unknown metric '{metric}' (known: {', '.join(METRICS)})")
    strategy = row["strategy"].strip() or "auto"
    count = _int(row.get("device_count"), 1) or 1
    overrides = []
    for column, name in HOST_COLUMNS.items():
        raw = (row.get(column) or "").strip()
        if not raw:
            continue
        if name == "mem_type":
            overrides.append((name, raw))
        elif name == "ram_gb":
            overrides.append((name, float(raw)))
        else:
            overrides.append((name, _int(raw)))
    host = (row.get("host_cpu") or "").strip() or None
    context = _int(row.get("context"), 0)
    engine = (row.get("engine") or "").strip() or "llama.cpp"
    if engine == "unknown":
        engine = "llama.cpp"  # the most common engine for the GGUF files these rows name
    quant = row["quant"].strip()
    if quant.upper() == "MXFP4" and _has_quant("MXFP4_MOE") and _loads(engine, "MXFP4_MOE"):
        # a GGUF run of an MXFP4 model uses llama.cpp's MXFP4_MOE file type (experts MXFP4, the rest Q8_0),
        # not the release checkpoint's BF16 attention
        quant = "MXFP4_MOE"
    if metric == "prefill_tok_s":
        prompt, ctx = (context or 512), 0
    else:
        prompt, ctx = 512, context
    return SimRequest(
        model=row["model"].strip(), quant=quant, device=row["device"].strip(),
        device_count=count, host=host, host_overrides=tuple(overrides), strategy=strategy,
        context=ctx, batch=_int(row.get("batch"), 1) or 1, engine=engine, prompt_tokens=prompt,
    )


def read_measurements(path: str | os.PathLike) -> list[dict]:
    """Rows of a measurement CSV; missing file or columns -> MoesimError (one line)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise MoesimError(f"{os.path.basename(str(path))}: missing column(s) {', '.join(missing)}")
            return [dict(r) for r in reader]
    except FileNotFoundError:
        raise MoesimError(f"measurement file not found: {path}") from None
    except UnicodeDecodeError:
        raise MoesimError(f"{path}: not a UTF-8 CSV file") from None


def validate_rows(rows: list[dict], with_bands: bool = True) -> dict:
    """Predict every row; returns {"rows": [...], "summary": {...}}."""
    from moesim.simulate import simulate

    bands = load_bands() if with_bands else {}
    out = []
    for row in rows:
        rid = (row.get("id") or "").strip()
        metric = (row.get("metric") or "").strip()
        group = row_group(row)
        entry = {"id": rid, "metric": metric, "group": group, "measured": None, "predicted": None,
                 "low": None, "high": None, "ape": None, "strategy": None, "error": None}
        try:
            entry["measured"] = _float(row.get("value"))
            if entry["measured"] is None or entry["measured"] <= 0:
                raise MoesimError("no measured value")
            req = request_for_row(row)
            res = simulate(req)
            if not res.fits:
                raise MoesimError(f"placement {res.strategy} does not fit: {res.reason}")
            pred = res.decode_tok_s if metric == "decode_tok_s" else res.prefill_tok_s
            if pred is None or not math.isfinite(pred):
                raise MoesimError(f"no {metric} prediction for this setup")
            entry["predicted"] = pred
            entry["strategy"] = res.strategy
            entry["ape"] = abs(pred - entry["measured"]) / entry["measured"]
            q = bands.get(group)
            if q:
                entry["low"] = pred * math.exp(q["log_ratio_low"])
                entry["high"] = pred * math.exp(q["log_ratio_high"])
        except MoesimError as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return {"rows": out, "summary": summarise(out)}


def summarise(rows: list[dict]) -> dict:
    """MdAPE per group (and overall) over the rows that got a prediction."""
    summary = {}
    for group in GROUPS + ("all",):
        sel = [r for r in rows if group == "all" or r["group"] == group]
        apes = [r["ape"] for r in sel if r["ape"] is not None]
        summary[group] = {
            "rows": len(sel),
            "predicted": len(apes),
            "errors": sum(1 for r in sel if r["error"]),
            "mdape": median(apes) if apes else None,
            "target_mdape": TARGET_MDAPE.get(group),
        }
    return summary


def validate_file(path) -> dict:
    """`validate_rows` over a measurement file."""
    return validate_rows(read_measurements(path))


# ----------------------------------------------------------------------------- bands


@lru_cache(maxsize=1)
def _bands_text() -> str | None:
    try:
        return resources.files("moesim.catalog").joinpath(BANDS_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None


def load_bands() -> dict:
    """{group: {"log_ratio_low", "log_ratio_high", ...}} from `calibration_bands.toml` ({} if absent)."""
    text = _bands_text()
    if not text:
        return {}
    data = tomllib.loads(text)
    return {k: v for k, v in data.get("groups", {}).items() if isinstance(v, dict)}


def _quantile(values: list[float], q: float) -> float:
    vals = sorted(values)
    if len(vals) == 1:
        return vals[0]
    pos = q * (len(vals) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def compute_bands(rows: list[dict]) -> dict:
    """Per group: 10% / 90% quantiles of log(measured / predicted), at least +-MIN_BAND_LOG.

    Groups with fewer than 3 predicted rows borrow the pooled residuals of all groups."""
    pooled = [math.log(r["measured"] / r["predicted"]) for r in rows if r["ape"] is not None]
    bands = {}
    for group in GROUPS:
        res = [math.log(r["measured"] / r["predicted"]) for r in rows if r["group"] == group and r["ape"] is not None]
        source = res if len(res) >= 3 else pooled
        if not source:
            continue
        lo, hi = _quantile(source, 0.10), _quantile(source, 0.90)
        bands[group] = {
            "log_ratio_low": min(lo, -MIN_BAND_LOG),
            "log_ratio_high": max(hi, MIN_BAND_LOG),
            "n_rows": len(res),
            "pooled": len(res) < 3,
        }
    return bands


def write_bands(measurements_path, out_path=None) -> str:
    """Run validation without bands and write the per-group residual quantiles as TOML."""
    result = validate_rows(read_measurements(measurements_path), with_bands=False)
    bands = compute_bands(result["rows"])
    lines = [
        "# Uncertainty bands per calibration group: quantiles (10%, 90%) of log(measured / predicted)",
        "# over the rows of the calibration file, floored at +-log(1.15) (the README of the measurements",
        "# notes 15-20% spread between llama.cpp builds of one setup).  Groups with < 3 rows use the",
        "# pooled residuals.  Generated by `python -m moesim.validate --write-bands MEASUREMENTS.csv`;",
        "# do not edit by hand.",
        'source = "residuals of moesim predictions against ../shared/calibration/measurements.csv (public measurements, URLs per row)"',
        "",
    ]
    for group, q in bands.items():
        lines.append(f'[groups."{group}"]')
        lines.append(f"log_ratio_low = {q['log_ratio_low']:.4f}")
        lines.append(f"log_ratio_high = {q['log_ratio_high']:.4f}")
        lines.append(f"n_rows = {q['n_rows']}")
        lines.append(f"pooled = {'true' if q['pooled'] else 'false'}")
        lines.append("")
    text = "\n".join(lines)
    if out_path is None:
        out_path = os.path.join(os.path.dirname(__file__), "catalog", BANDS_FILE)
    tmp = f"{out_path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, out_path)  # never leave a half-written bands file
    _bands_text.cache_clear()
    return str(out_path)


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] == "--write-bands":
        try:
            path = write_bands(args[1])
        except MoesimError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 2
        print(path)
        return 0
    print("usage: python -m moesim.validate --write-bands MEASUREMENTS.csv", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
