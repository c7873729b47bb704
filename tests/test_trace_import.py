"""Importers: vLLM JSONL (processed and raw), numpy, CSV; gap handling and reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moesim.errors import MoesimError
from moesim.trace.importers import detect_format, import_trace
from trace_testing import tiny_model

MODEL = tiny_model(n_layers=3, n_experts=8, top_k=2)


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _processed(problem, layer, idx, experts):
    return {"dataset": "t", "problem_id": problem, "layer": layer, "experts": experts, "gating_probs": [0.7, 0.3],
            "token_idx": idx}


def test_processed_jsonl_aligns_by_per_layer_order_and_drops_incomplete_tail(tmp_path):
    records = []
    for layer, n in ((0, 4), (1, 3), (2, 4)):  # layer 1 lost a 0.5/0.5 record
        for i in range(n):
            records.append(_processed(0, layer, i, [(i + layer) % 8, (i + layer + 1) % 8]))
    records += [_processed(1, layer, 0, [5, 6]) for layer in range(3)]
    path = _jsonl(tmp_path / "r.jsonl", records)
    assert detect_format(path) == "vllm-jsonl"
    trace, report = import_trace(path, MODEL)
    assert report.gaps == "drop" and report.dropped_tokens == 1 and report.dropped_records == 2
    assert trace.seq.tolist() == [0, 0, 0, 1]
    assert trace.experts[:, 1, 0].tolist() == [1, 2, 3, 5]
    np.testing.assert_allclose(trace.weights[0, 0], [0.7, 0.3])
    filled, report = import_trace(path, MODEL, gaps="fill")
    assert report.filled_records == 1 and filled.n_tokens == 5
    assert filled.experts[3, 1].tolist() == filled.experts[2, 1].tolist()


def test_raw_jsonl_splits_passes_and_fills_dropped_layers(tmp_path):
    records = []
    for layer in range(3):
        for pos in range(3):
            if (layer, pos) != (1, 2):  # hook dropped one prefill record
                records.append({"problem_id": 0, "layer": layer, "token_pos": pos, "experts": [pos, 7 - layer],
                                "gating_probs": [0.6, 0.4]})
    for step in range(2):
        for layer in range(3):
            if (step, layer) != (1, 0):  # and one decode record
                records.append({"problem_id": 0, "layer": layer, "token_pos": 0, "experts": [step + 3, 0],
                                "gating_probs": [0.9, 0.1]})
    path = _jsonl(tmp_path / "raw.jsonl", records)
    assert detect_format(path) == "vllm-raw"
    trace, report = import_trace(path, MODEL)
    assert report.gaps == "fill" and report.filled_records == 2 and report.prefill_tokens == 3
    assert trace.token.tolist() == [0, 1, 2, 3, 4] and trace.is_prefill.tolist() == [True] * 3 + [False] * 2
    assert trace.experts[2, 1].tolist() == trace.experts[1, 1].tolist()  # filled from the previous token
    assert trace.experts[4, 0].tolist() == trace.experts[3, 0].tolist()
    dropped, report = import_trace(path, MODEL, gaps="drop")
    assert dropped.n_tokens == 3 and report.dropped_tokens == 2


def test_npy_npz_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    arr = np.array([[rng.permutation(8)[:2] for _ in range(3)] for _ in range(6)])
    np.save(tmp_path / "a.npy", arr)
    trace, _ = import_trace(tmp_path / "a.npy", MODEL)
    np.testing.assert_array_equal(trace.experts, arr)
    np.savez(tmp_path / "b.npz", experts=arr, seq=[0, 0, 0, 1, 1, 1], token=[0, 1, 2, 0, 1, 2],
             is_prefill=[1, 0, 0, 1, 0, 0])
    trace, _ = import_trace(tmp_path / "b.npz", MODEL)
    assert trace.n_seqs == 2 and trace.is_prefill.sum() == 2
    lines = ["seq,token,layer,expert_0,expert_1,weight_0,weight_1,phase"]
    for t in range(6):
        for layer in range(3):
            if (t, layer) != (4, 2):
                lines.append(f"0,{t},{layer},{arr[t, layer, 0]},{arr[t, layer, 1]},0.6,0.4,decode")
    (tmp_path / "c.csv").write_text("\n".join(lines) + "\n")
    assert detect_format(tmp_path / "c.csv") == "csv"
    trace, report = import_trace(tmp_path / "c.csv", MODEL)
    assert report.filled_records == 1
    np.testing.assert_array_equal(trace.experts[:4], arr[:4])


def test_shape_is_inferred_without_a_model(tmp_path):
    np.save(tmp_path / "a.npy", np.array([[[0, 3], [1, 2]]] * 4))
    trace, _ = import_trace(tmp_path / "a.npy")
    assert trace.meta.n_routed_experts == 4 and trace.meta.moe_layers == (0, 1) and trace.meta.model_id == "unknown"


@pytest.mark.parametrize("content,fmt,match", [
    ('{"layer": 0, "experts": [1, 1], "token_idx": 0}\n', None, "duplicate expert"),
    ('{"layer": 0, "experts": [1, 9], "token_idx": 0}\n', None, "has 8 routed experts"),
    ('{"layer": 0, "experts": [1, 2, 3], "token_idx": 0}\n', None, "top-3"),
    ('{"layer": 7, "experts": [1, 2], "token_idx": 0}\n', None, "not a MoE layer"),
    ('{"layer": 0, "experts": [1, 2], "token_idx": 0}\nnot json\n', None, ":2: invalid JSON"),
    ('hello world\n', None, "unrecognised trace format"),
    ("seq,token,layer,expert_0,expert_1\n0,0,0,1,x\n", None, ":2: malformed row"),
])
def test_bad_inputs_give_one_line_errors(tmp_path, content, fmt, match):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(MoesimError, match=match) as info:
        import_trace(path, MODEL, fmt=fmt)
    assert "\n" not in str(info.value)


def test_real_trace_imports_match_source_counts(real_trace_dir):
    from moesim.catalog.models import get_model

    model = get_model("mixtral-8x7b")
    root = next(real_trace_dir.iterdir())
    trace, report = import_trace(root / "analysis/deep_analysis/routing_raw.jsonl", model)
    # SOURCE.md: 135 prompt tokens, 83 decode passes, 6,777 records
    assert (report.records_read, report.prefill_tokens, trace.n_tokens) == (6777, 135, 135 + 83)
    assert report.filled_records == 135 * 32 + 83 * 32 - 6777
    trace, report = import_trace(root / "routing_data_collected/gsm8k_2_routing.jsonl", model)
    assert report.records_read == 7889 and trace.n_seqs == 2
    assert report.dropped_records + trace.n_tokens * 32 == 7889
