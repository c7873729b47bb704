"""On-disk layout of a sweep: a hive-partitioned Arrow IPC (Feather v2) or Parquet dataset.

    OUT/_sweep.json                       resolved configuration, schema version, catalog hashes
    OUT/model=<alias>/part-<hash>.arrow   chunk files, one row per sweep point; schema metadata key
                                          "moesim" holds the same JSON for the run that wrote the chunk

Chunk files are written to a dot-prefixed temp name in the same folder, fsynced and renamed
into place (`os.replace`), so a killed sweep leaves only whole chunk files; readers
(pyarrow.dataset, DuckDB, Polars) skip dot- and underscore-prefixed names. Every key column
is stored inside the files as well as in the partition path, so reading the files without
hive partitioning loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa

from moesim.errors import MoesimError

SCHEMA_VERSION = 1
META_FILE = "_sweep.json"
FORMATS = {"arrow": ".arrow", "parquet": ".parquet"}

# Key columns: together they identify a point; `point_key` joins them into one stable string.
KEY_COLUMNS: tuple[str, ...] = (
    "model", "quant", "device", "device_count", "host", "strategy", "engine", "context", "batch", "trace",
)
# A cell is a point without its strategy: is_best picks one row per cell.
CELL_COLUMNS: tuple[str, ...] = tuple(c for c in KEY_COLUMNS if c != "strategy")

# Time breakdown components get one column each (`time_<name>_s`); anything else the timing
# model reports is summed into time_other_s so the schema stays fixed across chunks.
# Names follow the timing model's DecodeTiming.breakdown_s; overlap_hidden is negative (time that
# CPU and GPU work hid from each other), so the components sum to the mean step latency.
TIME_COMPONENTS: tuple[str, ...] = (
    "attention_weights", "kv_cache", "dense_ffn", "experts_gpu", "experts_cpu", "expert_fetch_link",
    "nvme_page_in", "overlap_hidden", "output_head", "launch_overhead", "cpu_gpu_sync", "collectives",
    "token_overhead",
)
LINKS: tuple[str, ...] = ("vram", "host_ram", "pcie", "nvme", "interconnect")
TIERS: tuple[str, ...] = ("vram", "host", "nvme")

SCHEMA = pa.schema(
    [
        ("point_key", pa.string()),
        ("point_hash", pa.string()),
        ("model", pa.string()),
        ("model_id", pa.string()),
        ("quant", pa.string()),
        ("device", pa.string()),
        ("device_base", pa.string()),
        ("device_kind", pa.string()),
        ("device_count", pa.int32()),
        ("host", pa.string()),
        ("strategy", pa.string()),
        ("resolved_strategy", pa.string()),
        ("engine", pa.string()),
        ("context", pa.int64()),
        ("batch", pa.int32()),
        ("trace", pa.string()),
        ("total_params", pa.int64()),
        ("bits_per_weight", pa.float64()),
        ("weights_bytes", pa.int64()),
        ("kv_cache_bytes", pa.int64()),
        *[(f"{tier}_bytes", pa.int64()) for tier in TIERS],
        ("vram_capacity_bytes", pa.int64()),
        ("host_capacity_bytes", pa.int64()),
        ("fits", pa.bool_()),
        ("reason", pa.string()),
        ("decode_tok_s", pa.float64()),
        ("decode_tok_s_p50", pa.float64()),
        ("decode_tok_s_p95", pa.float64()),
        ("decode_tok_s_low", pa.float64()),
        ("decode_tok_s_high", pa.float64()),
        ("latency_mean_s", pa.float64()),
        ("latency_p50_s", pa.float64()),
        ("latency_p95_s", pa.float64()),
        ("latency_p99_s", pa.float64()),
        ("prefill_tok_s", pa.float64()),
        ("ttft_s", pa.float64()),
        ("hit_rate", pa.float64()),
        *[(f"bytes_per_token_{link}", pa.float64()) for link in LINKS],
        *[(f"time_{name}_s", pa.float64()) for name in TIME_COMPONENTS],
        ("time_other_s", pa.float64()),
        ("grade", pa.string()),
        ("grade_notes", pa.string()),
        ("rubric_version", pa.string()),
        ("is_best", pa.bool_()),
        ("llama_cpp_command", pa.string()),
    ]
)


def point_key(values: dict) -> str:
    """Stable, human-readable key of one point: every key column, in a fixed order."""
    return "|".join(f"{name}={values[name]}" for name in KEY_COLUMNS)


def short_hash(text: str) -> str:
    """8-hex-digit sha1 of a key (Vidur-style run id)."""
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def partition_dir(out: Path, model: str) -> Path:
    return out / f"model={model}"


def _atomic_write_bytes(path: Path, write) -> None:
    """Write through `write(tmp_path)` into a dot-prefixed sibling, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{os.getpid()}-{path.name}"
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_chunk(path: Path, table: pa.Table, fmt: str) -> None:
    """Atomically write one chunk of rows (a whole number of cells) as Arrow IPC or Parquet."""
    if fmt == "arrow":
        def write(tmp):
            # zstd buffers: ~5x smaller (commands, notes and keys repeat); pyarrow, Polars and
            # DuckDB (through pyarrow) read them
            options = pa.ipc.IpcWriteOptions(compression="zstd")
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema, options=options) as writer:
                writer.write_table(table)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        def write(tmp):
            pq.write_table(table, str(tmp), compression="zstd")
    else:  # pragma: no cover - validated by the CLI
        raise MoesimError(f"unknown sweep format '{fmt}' (use arrow or parquet)")
    _atomic_write_bytes(path, write)


def write_meta(out: Path, meta: dict) -> None:
    """Atomically write the sweep's `_sweep.json` (sorted keys: same inputs, same bytes)."""
    text = json.dumps(meta, indent=1, sort_keys=True) + "\n"
    _atomic_write_bytes(out / META_FILE, lambda tmp: Path(tmp).write_text(text))


def read_meta(out: Path) -> dict | None:
    """The sweep's metadata, None when `out` holds no sweep; MoesimError when unreadable."""
    path = out / META_FILE
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MoesimError(f"sweep metadata {path} is unreadable: {exc}") from None
    if not isinstance(meta, dict) or "schema_version" not in meta:
        raise MoesimError(f"sweep metadata {path} is not a moesim sweep file")
    return meta


def chunk_files(out: Path) -> list[Path]:
    """Every finished chunk file under `out`, in a stable order (temp files excluded)."""
    files = []
    for ext in FORMATS.values():
        files.extend(p for p in out.glob(f"model=*/part-*{ext}") if not p.name.startswith("."))
    return sorted(files)


def remove_stale_temps(out: Path) -> None:
    """Drop temp files a killed writer left behind (only our own `.tmp-` names)."""
    for tmp in out.glob("model=*/.tmp-*"):
        tmp.unlink(missing_ok=True)
    for tmp in out.glob(f".tmp-*{META_FILE}"):
        tmp.unlink(missing_ok=True)


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One chunk file as a table (format from the extension)."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(str(path), columns=columns)
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        return table.select(columns) if columns else table
    except (pa.ArrowInvalid, OSError) as exc:
        raise MoesimError(f"sweep chunk {path} is unreadable: {str(exc).splitlines()[0]}") from None


def open_sweep(out: str | Path) -> tuple[dict, pa.Table]:
    """Load a whole sweep: (metadata, table sorted by point key). MoesimError when unreadable."""
    out = Path(out)
    if not out.is_dir():
        if out.exists():
            raise MoesimError(f"{out} is a file, not a sweep directory")
        raise MoesimError(f"sweep directory {out} does not exist")
    meta = read_meta(out)
    if meta is None:
        raise MoesimError(f"{out} is not a moesim sweep (no {META_FILE}); run `moesim sweep --out {out}` first")
    files = chunk_files(out)
    tables = [read_table(path).replace_schema_metadata(None) for path in files]
    for path, table in zip(files, tables):
        if not table.schema.equals(SCHEMA, check_metadata=False):
            raise MoesimError(
                f"sweep chunk {path} has a different schema (made by another moesim version?); rerun with --force"
            )
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    if table.num_rows:
        table = table.sort_by("point_key")
    return meta, table
