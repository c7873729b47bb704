"""The Arrow trace format: round trip, determinism, and rejection of every kind of broken file."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moesim.errors import MoesimError
from moesim.trace import format as fmt
from moesim.trace.format import TraceMeta, make_trace, read_trace, read_trace_meta, write_trace
from moesim.trace.generate import generate_trace
from trace_testing import tiny_model

META = TraceMeta(model_id="test/tiny", n_layers=5, moe_layers=(1, 2, 4), n_routed_experts=6, top_k=2,
                 source={"kind": "test"}, licence="CC0-1.0")


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_generated_trace_is_identical(tmp_path):
    trace = generate_trace(tiny_model(n_layers=6, moe_layers=(1, 2, 3, 5)), 50, n_seqs=3, preset="generic", seed=4,
                           prefill_tokens=7)
    path = tmp_path / "t.arrow"
    write_trace(trace, path)
    back = read_trace(path)
    assert back.meta == trace.meta
    assert back.experts.dtype == np.uint8
    for name in ("experts", "seq", "token", "is_prefill"):
        np.testing.assert_array_equal(getattr(back, name), getattr(trace, name))
    assert back.weights is None
    assert back.n_tokens == 3 * 57 and back.is_prefill.sum() == 21
    assert read_trace_meta(path) == trace.meta


def test_round_trip_with_weights_and_wide_expert_ids(tmp_path):
    meta = TraceMeta(model_id="m", n_layers=2, moe_layers=(0, 1), n_routed_experts=300, top_k=3,
                     source={"kind": "test", "nested": {"a": [1, 2]}}, licence="x")
    rng = np.random.default_rng(0)
    experts = np.array([[rng.permutation(300)[:3] for _ in range(2)] for _ in range(9)])
    weights = rng.random(experts.shape).astype(np.float32)
    trace = make_trace(meta, experts, weights=weights, seq=[0] * 4 + [2] * 5, token=[0, 1, 2, 5, 0, 1, 2, 3, 4],
                       is_prefill=[True] + [False] * 8)
    path = tmp_path / "w.arrow"
    write_trace(trace, path)
    back = read_trace(path)
    assert back.experts.dtype == np.uint16
    np.testing.assert_array_equal(back.experts, experts)
    np.testing.assert_array_equal(back.weights, weights)
    np.testing.assert_array_equal(back.token, trace.token)
    assert back.meta.source == meta.source


def test_long_format_schema_and_metadata(tmp_path):
    trace = generate_trace(tiny_model(), 5, seed=1, prefill_tokens=2)
    path = tmp_path / "t.arrow"
    write_trace(trace, path)
    table = pa.ipc.open_file(path).read_all()
    assert table.schema.names == ["seq", "token", "layer", "experts", "phase"]
    assert table.schema.field("experts").type == pa.list_(pa.field("item", pa.uint16(), nullable=False), 2)
    assert table.num_rows == 7 * 4
    assert table.column("layer").to_pylist()[:5] == [0, 1, 2, 3, 0]
    assert table.column("phase").to_pylist()[:9] == ["prefill"] * 8 + ["decode"]
    md = table.schema.metadata
    assert md[b"moesim.top_k"] == b"2" and md[b"moesim.moe_layers"] == b"[0, 1, 2, 3]"
    assert b"time" not in b"".join(md)  # nothing time-dependent in the metadata


def test_same_seed_gives_byte_identical_file(tmp_path):
    model = tiny_model(n_layers=3, n_experts=16, top_k=4)
    paths = []
    for i, seed in enumerate((11, 11, 12)):
        path = tmp_path / f"{i}.arrow"
        write_trace(generate_trace(model, 200, n_seqs=2, preset="olmoe", seed=seed), path)
        paths.append(path)
    assert _sha(paths[0]) == _sha(paths[1])
    assert _sha(paths[0]) != _sha(paths[2])


def test_many_batches_are_read_back_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(fmt, "TARGET_ROWS_PER_BATCH", 10)  # 2 tokens of 4 layers per batch
    trace = generate_trace(tiny_model(), 25, n_seqs=2, seed=2)
    path = tmp_path / "t.arrow"
    write_trace(trace, path)
    assert pa.ipc.open_file(path).num_record_batches == 25
    np.testing.assert_array_equal(read_trace(path).experts, trace.experts)


# ---------------------------------------------------------------------------------- broken files


def _long_columns(n_tokens=6):
    """Valid long-format columns for META (4 sequences of tokens 0..)."""
    rng = np.random.default_rng(1)
    n_layers = len(META.moe_layers)
    seq = np.repeat(np.arange(n_tokens) // 3, n_layers).astype(np.int32)
    token = np.repeat(np.arange(n_tokens) % 3, n_layers).astype(np.int32)
    layer = np.tile(np.array(META.moe_layers, dtype=np.int16), n_tokens)
    experts = np.array([rng.permutation(6)[:2] for _ in range(n_tokens * n_layers)], dtype=np.uint16)
    phase = ["decode"] * (n_tokens * n_layers)
    return {"seq": seq, "token": token, "layer": layer, "experts": experts, "phase": phase}


def _write_long(path, cols, meta=META, list_size=None, schema_override=None, batch_rows=None):
    k = cols["experts"].shape[1] if list_size is None else list_size
    arrays = [
        pa.array(cols["seq"], type=pa.int32()),
        pa.array(cols["token"], type=pa.int32()),
        pa.array(cols["layer"], type=pa.int16()),
        pa.FixedSizeListArray.from_arrays(pa.array(cols["experts"].reshape(-1), type=pa.uint16()), k),
        pa.array(cols["phase"], type=pa.string()).dictionary_encode(),
    ]
    names = ["seq", "token", "layer", "experts", "phase"]
    if schema_override:
        for name, arr in schema_override.items():
            arrays[names.index(name)] = arr
    table = pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(fmt._meta_to_arrow(meta))
    with pa.ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table, max_chunksize=batch_rows)
    return path


def _error(path) -> str:
    with pytest.raises(MoesimError) as info:
        read_trace(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_valid_long_file_reads(tmp_path):
    trace = read_trace(_write_long(tmp_path / "ok.arrow", _long_columns()))
    assert trace.experts.shape == (6, 3, 2)
    assert trace.seq.tolist() == [0, 0, 0, 1, 1, 1]


def test_expert_id_out_of_range_names_row(tmp_path):
    cols = _long_columns()
    cols["experts"][7, 1] = 6
    assert "row 7" in (msg := _error(_write_long(tmp_path / "x.arrow", cols))) and "expert id 6" in msg


def test_duplicate_expert_names_row(tmp_path):
    cols = _long_columns()
    cols["experts"][5, 1] = cols["experts"][5, 0]
    assert "row 5" in (msg := _error(_write_long(tmp_path / "x.arrow", cols))) and "twice" in msg


def test_missing_layer_names_row(tmp_path):
    cols = _long_columns()
    for name in cols:
        cols[name] = np.delete(np.asarray(cols[name]), 4, axis=0)
    cols["phase"] = list(cols["phase"])
    msg = _error(_write_long(tmp_path / "x.arrow", cols))
    assert "row 4" in msg and "layer" in msg


def test_last_token_missing_layers(tmp_path):
    cols = {k: np.asarray(v)[:-1] for k, v in _long_columns().items()}
    cols["phase"] = list(cols["phase"])
    msg = _error(_write_long(tmp_path / "x.arrow", cols))
    assert "row 17" in msg and "missing layer 4" in msg


def test_unsorted_rows_names_row(tmp_path):
    cols = _long_columns()
    cols["token"][3:6], cols["token"][6:9] = cols["token"][6:9].copy(), cols["token"][3:6].copy()
    msg = _error(_write_long(tmp_path / "x.arrow", cols))
    assert "row 6" in msg and "sorted" in msg


def test_wrong_top_k(tmp_path):
    cols = _long_columns()
    meta = TraceMeta(**{**META.__dict__, "top_k": 3})
    msg = _error(_write_long(tmp_path / "x.arrow", cols, meta=meta))
    assert "top_k" in msg and "3" in msg


def test_wrong_schema(tmp_path):
    cols = _long_columns()
    msg = _error(_write_long(tmp_path / "x.arrow", cols,
                             schema_override={"layer": pa.array(cols["layer"].astype(np.int32))}))
    assert "wrong schema" in msg and "layer" in msg


def test_missing_metadata(tmp_path):
    table = pa.table({"a": [1, 2]})
    with pa.ipc.new_file(str(tmp_path / "x.arrow"), table.schema) as writer:
        writer.write_table(table)
    assert "not a moesim trace" in _error(tmp_path / "x.arrow")


def test_truncated_file(tmp_path):
    path = _write_long(tmp_path / "ok.arrow", _long_columns())
    data = path.read_bytes()
    (tmp_path / "cut.arrow").write_bytes(data[: len(data) - 20])
    assert "truncated or corrupt" in _error(tmp_path / "cut.arrow")


def test_not_an_arrow_file(tmp_path):
    (tmp_path / "x.arrow").write_text('{"layer": 0}\n')
    assert "not an Arrow" in _error(tmp_path / "x.arrow")
    assert "no such trace file" in _error(tmp_path / "missing.arrow")


def test_write_refuses_invalid_trace_and_keeps_previous_file(tmp_path):
    path = tmp_path / "t.arrow"
    write_trace(generate_trace(tiny_model(), 5), path)
    before = path.read_bytes()
    trace = generate_trace(tiny_model(), 5)
    trace.experts[3, 1, 1] = trace.experts[3, 1, 0]
    with pytest.raises(MoesimError, match="row 13"):
        write_trace(trace, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.arrow"]


# ---------------------------------------------------------------------------- property-based


CORRUPTION = st.sampled_from(["range", "duplicate", "layer", "drop", "swap", "negative"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=CORRUPTION, row=st.integers(0, 17), batch_rows=st.sampled_from([None, 4, 7]))
def test_corrupted_rows_are_rejected_naming_the_row(tmp_path_factory, kind, row, batch_rows):
    cols = _long_columns()
    n_layers = 3
    expected = row
    if kind == "range":
        cols["experts"][row, row % 2] = 6 + row
    elif kind == "duplicate":
        cols["experts"][row, 1] = cols["experts"][row, 0]
    elif kind == "layer":
        cols["layer"][row] = 3  # not a MoE layer of META
    elif kind == "drop":
        for name in cols:
            cols[name] = np.delete(np.asarray(cols[name]), row, axis=0)
        cols["phase"] = list(cols["phase"])
        if row == 17:
            expected = 17  # the end of the file is where the last layer is missing
    elif kind == "swap":
        t = row // n_layers
        if t == 5:
            t = 4
        a, b = slice(t * 3, t * 3 + 3), slice(t * 3 + 3, t * 3 + 6)
        cols["token"][a], cols["token"][b] = cols["token"][b].copy(), cols["token"][a].copy()
        cols["seq"][a], cols["seq"][b] = cols["seq"][b].copy(), cols["seq"][a].copy()
        expected = t * 3 + 3
    elif kind == "negative":
        cols["seq"][row] = -1
    path = _write_long(tmp_path_factory.mktemp("c") / "x.arrow", cols, batch_rows=batch_rows)
    msg = _error(path)
    assert f"row {expected}:" in msg


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 10_000), flip=st.one_of(st.none(), st.tuples(st.integers(0, 10_000), st.integers(1, 255))))
def test_damaged_bytes_never_escape_as_other_errors(tmp_path_factory, cut, flip):
    good = _write_long(tmp_path_factory.mktemp("b") / "ok.arrow", _long_columns(), batch_rows=5).read_bytes()
    data = bytearray(good)
    if flip is not None:
        pos, value = flip
        data[pos % len(data)] ^= value
    else:
        data = data[: cut % len(data)]
    path = tmp_path_factory.mktemp("b") / "bad.arrow"
    path.write_bytes(bytes(data))
    try:
        trace = read_trace(path)
    except MoesimError as exc:
        assert "\n" not in str(exc)
    else:
        # a flip that leaves a readable file must still satisfy every format rule
        assert flip is not None
        fmt.validate_trace(trace)
