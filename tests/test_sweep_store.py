"""Sweep storage: schema, keys, atomic chunks, is_best, and readability by pyarrow/DuckDB/Polars."""

from __future__ import annotations

import hashlib
import math
import os

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from moesim.errors import MoesimError
from moesim.sweep.store import (
    CELL_COLUMNS,
    KEY_COLUMNS,
    SCHEMA,
    chunk_files,
    open_sweep,
    point_key,
    read_meta,
    remove_stale_temps,
    short_hash,
    write_chunk,
)
from sweep_testing import fake_rows, write_fake_sweep


def test_point_key_is_stable_and_hash_is_its_sha1():
    values = {"model": "m", "quant": "Q4_K_M", "device": "rtx-4090", "device_count": 1, "host": "h",
              "strategy": "gpu", "engine": "llama.cpp", "context": 4096, "batch": 1, "trace": "preset:default"}
    key = point_key(values)
    assert key == ("model=m|quant=Q4_K_M|device=rtx-4090|device_count=1|host=h|strategy=gpu|"
                   "engine=llama.cpp|context=4096|batch=1|trace=preset:default")
    assert short_hash(key) == hashlib.sha1(key.encode()).hexdigest()[:8]
    assert point_key(dict(reversed(list(values.items())))) == key


def test_every_key_has_its_own_column():
    for name in KEY_COLUMNS:
        assert name in SCHEMA.names
    for name in ("weights_bytes", "vram_bytes", "host_bytes", "nvme_bytes", "fits", "decode_tok_s",
                 "decode_tok_s_p50", "decode_tok_s_p95", "prefill_tok_s", "ttft_s", "hit_rate",
                 "bytes_per_token_pcie", "time_experts_gpu_s", "grade", "is_best", "llama_cpp_command"):
        assert name in SCHEMA.names


def test_rows_keys_unique_and_one_best_per_cell():
    rows = fake_rows()
    keys = [r["point_key"] for r in rows]
    assert len(keys) == len(set(keys))
    cells: dict = {}
    for row in rows:
        cells.setdefault(tuple(row[c] for c in CELL_COLUMNS), []).append(row)
    for cell_rows in cells.values():
        assert sum(r["is_best"] for r in cell_rows) == 1
        best = next(r for r in cell_rows if r["is_best"])
        fitting = [r for r in cell_rows if r["fits"]]
        if fitting:
            assert best["fits"]
            assert best["decode_tok_s"] >= max(r["decode_tok_s"] for r in fitting if r["grade"] == best["grade"])


def test_percentile_speeds_follow_latencies():
    row = next(r for r in fake_rows() if r["strategy"] == "gpu" and r["fits"])
    assert row["decode_tok_s_p50"] == pytest.approx(row["decode_tok_s"] / 0.95)
    assert row["decode_tok_s_p95"] == pytest.approx(row["decode_tok_s"] / 1.3)
    assert row["decode_tok_s_p95"] < row["decode_tok_s"] < row["decode_tok_s_p50"]


def test_unknown_time_components_go_to_other():
    row = fake_rows()[0]
    assert row["time_other_s"] == pytest.approx(row["latency_mean_s"] * 0.1)
    assert row["time_experts_gpu_s"] == pytest.approx(row["latency_mean_s"] * 0.6)
    assert row["time_nvme_page_in_s"] == 0.0


def test_huge_model_on_small_gpu_is_graded_low():
    rows = [r for r in fake_rows() if r["model"] == "huge-moe" and r["quant"] == "Q4_K_M" and r["device"] == "gpu-24"]
    best = next(r for r in rows if r["is_best"])
    assert best["weights_bytes"] == 404 * 10**9
    assert best["grade"] in ("D", "F")
    assert best["nvme_bytes"] > 0


def test_open_sweep_roundtrip(tmp_path):
    out = write_fake_sweep(tmp_path / "s")
    meta, table = open_sweep(out)
    assert meta["schema_version"] == 1
    assert table.num_rows == len(fake_rows())
    assert table.column("point_key").to_pylist() == sorted(table.column("point_key").to_pylist())
    assert table.schema.equals(SCHEMA)


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_dataset_opens_with_pyarrow_duckdb_polars(tmp_path, fmt):
    out = write_fake_sweep(tmp_path / "s", fmt)
    n = len(fake_rows())
    dataset = ds.dataset(out, format="ipc" if fmt == "arrow" else "parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == n
    assert sorted(set(table.column("model").to_pylist())) == ["huge-moe", "tiny-moe"]
    duckdb = pytest.importorskip("duckdb")
    if fmt == "parquet":
        count = duckdb.sql(f"select count(*) from read_parquet('{out}/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
    else:
        count = duckdb.sql("select count(*) from dataset").fetchall()[0][0]
    assert count == n
    best = duckdb.sql("select count(*) from dataset where is_best").fetchall()[0][0]
    assert best == len({tuple(r[c] for c in CELL_COLUMNS) for r in fake_rows()})
    pl = pytest.importorskip("polars")
    scan = pl.scan_ipc if fmt == "arrow" else pl.scan_parquet
    frame = scan(f"{out}/**/*.{fmt}").collect()
    assert frame.height == n
    assert frame.filter(pl.col("grade") == "F").height == table.filter(ds.field("grade") == "F").num_rows


def test_same_rows_same_bytes(tmp_path):
    a = write_fake_sweep(tmp_path / "a")
    b = write_fake_sweep(tmp_path / "b")
    files_a, files_b = chunk_files(a), chunk_files(b)
    assert [p.relative_to(a) for p in files_a] == [p.relative_to(b) for p in files_b]
    for fa, fb in zip(files_a, files_b):
        assert fa.read_bytes() == fb.read_bytes()
    assert (a / "_sweep.json").read_bytes() == (b / "_sweep.json").read_bytes()


def test_failed_write_leaves_previous_chunk_intact(tmp_path):
    out = write_fake_sweep(tmp_path / "s")
    path = chunk_files(out)[0]
    before = path.read_bytes()
    bad = pa.table({"x": [1]})

    class Boom(Exception):
        pass

    def exploding_write(*_, **__):
        raise Boom

    original = pa.ipc.new_file
    pa.ipc.new_file = exploding_write
    try:
        with pytest.raises(Boom):
            write_chunk(path, bad, "arrow")
    finally:
        pa.ipc.new_file = original
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_stale_temp_files_are_ignored_and_removed(tmp_path):
    out = write_fake_sweep(tmp_path / "s")
    stale = chunk_files(out)[0].parent / f".tmp-{os.getpid()}-part-zzz.arrow"
    stale.write_bytes(b"half a file")
    assert stale not in chunk_files(out)
    assert ds.dataset(out, format="ipc").to_table().num_rows == len(fake_rows())
    _, table = open_sweep(out)
    assert table.num_rows == len(fake_rows())
    remove_stale_temps(out)
    assert not stale.exists()


def test_unreadable_sweeps_are_one_line_errors(tmp_path):
    with pytest.raises(MoesimError, match="does not exist"):
        open_sweep(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MoesimError, match="not a moesim sweep"):
        open_sweep(tmp_path / "empty")
    out = write_fake_sweep(tmp_path / "s")
    (out / "_sweep.json").write_text("{nope")
    with pytest.raises(MoesimError, match="unreadable"):
        read_meta(out)
    out = write_fake_sweep(tmp_path / "t")
    chunk_files(out)[0].write_bytes(b"ARROW1\x00\x00garbage")
    with pytest.raises(MoesimError, match="unreadable") as info:
        open_sweep(out)
    assert "\n" not in str(info.value)


def test_nan_hit_rate_stays_null_free_float(tmp_path):
    rows = [r for r in fake_rows() if r["strategy"] == "gpu"]
    assert all(math.isnan(r["hit_rate"]) for r in rows)


def test_best_mask_matches_reference_ranking():
    """Vectorised is_best == the obvious per-cell max on random cells with ties and nans."""
    import numpy as np
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from moesim.sweep.compute import best_index, best_mask
    from moesim.sweep.grading import GRADE_RANK

    point = st.tuples(st.booleans(), st.sampled_from("SABCDF"), st.sampled_from([float("nan"), 0.5, 1.0, 2.0, 8.0]),
                      st.sampled_from(["auto", "gpu", "cpu", "expert-cache:lru", "ep:2"]))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.lists(point, min_size=1, max_size=5), min_size=1, max_size=6))
    def check(cells):
        flat = [p for cell in cells for p in cell]
        cell_of = np.repeat(np.arange(len(cells)), [len(c) for c in cells])
        mask = best_mask(cell_of, np.array([p[0] for p in flat]), np.array([GRADE_RANK[p[1]] for p in flat]),
                         np.array([p[2] for p in flat]), np.array([p[3] != "auto" for p in flat]),
                         np.array([p[3] in ("auto", "gpu", "cpu") for p in flat]))
        start = 0
        for cell in cells:
            rows = [{"fits": f, "grade": g, "decode_tok_s": s, "strategy": n, "engine": "llama.cpp"}
                    for f, g, s, n in cell]
            expected = best_index(rows)
            assert mask[start:start + len(cell)].tolist() == [i == expected for i in range(len(cell))]
            start += len(cell)

    check()


def test_refused_points_become_f_rows():
    from moesim.sweep.compute import _Refused, results_table
    from moesim.sweep.grading import load_rubric
    from sweep_testing import fake_cells, fake_result

    cell, weights = fake_cells()[0]
    results = [fake_result(cell, s, weights) for s in cell.strategies]
    results[1] = _Refused(cell.strategies[1], MoesimError("strategy tp:3 needs 3 GPUs"))
    rows = results_table([cell], results, load_rubric()).to_pylist()
    assert rows[1]["grade"] == "F" and not rows[1]["fits"] and "tp:3" in rows[1]["reason"]
    assert rows[1]["strategy"] == cell.strategies[1] and not rows[1]["is_best"]
    assert sum(r["is_best"] for r in rows) == 1
