"""`moesim trace ...` end to end through click: one JSON object with --json, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from moesim.cli import cli
from moesim.trace.format import read_trace


def _run(*args):
    return CliRunner().invoke(cli, ["trace", *map(str, args)])


def _json(result):
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    return json.loads(lines[0])


def _one_line_error(result):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    return lines[0]


def test_gen_stats_fit_round_trip(tmp_path):
    out = tmp_path / "t.arrow"
    info = _json(_run("gen", "--model", "mixtral-8x7b", "--tokens", 300, "--seqs", 2, "--prefill", 5, "--seed", 3,
                      "-o", out, "--json"))
    assert info["n_tokens"] == 610 and info["preset"] == "mixtral" and info["top_k"] == 2
    again = _json(_run("gen", "--model", "mixtral-8x7b", "--tokens", 300, "--seqs", 2, "--prefill", 5, "--seed", 3,
                       "-o", tmp_path / "u.arrow", "--json"))
    assert again["sha256"] == info["sha256"]
    stats = _json(_run("stats", out, "--json"))
    assert stats["n_tokens"] == 610 and len(stats["per_layer"]["top1_share"]) == 32
    assert sum(stats["reuse_distance_total"]) == 610 * 32 * 2
    assert 0 < stats["summary"]["temporal_reuse"] < 1
    text = _run("stats", out, "--per-layer")
    assert text.exit_code == 0 and "temporal_reuse" in text.output
    fitted = _json(_run("fit", out, "-o", tmp_path / "p.toml", "--iterations", 4, "--json"))
    assert set(fitted["targets"]) == set(fitted["achieved"])
    gen2 = _json(_run("gen", "--model", "mixtral-8x7b", "--preset", tmp_path / "p.toml", "-o", tmp_path / "g.arrow",
                      "--json"))
    assert gen2["preset"] == "p"


def test_import_numpy_and_report(tmp_path):
    rng = np.random.default_rng(0)
    arr = np.array([[rng.permutation(8)[:2] for _ in range(32)] for _ in range(5)])
    np.save(tmp_path / "a.npy", arr)
    info = _json(_run("import", tmp_path / "a.npy", "--model", "mixtral-8x7b", "-o", tmp_path / "a.arrow", "--json"))
    assert info["format"] == "npy" and info["tokens"] == 5 and info["model"] == "mistralai/Mixtral-8x7B-v0.1"
    np.testing.assert_array_equal(read_trace(tmp_path / "a.arrow").experts, arr)


def test_presets_listing():
    names = {p["name"] for p in _json(_run("presets", "--json"))["presets"]}
    assert {"deepseek-v3", "mixtral", "qwen3-moe", "gpt-oss", "llama-4", "olmoe"} <= names


@pytest.mark.parametrize("args,match", [
    (["gen", "--model", "no-such-model", "-o", "x.arrow"], "unknown model"),
    (["gen", "--model", "llama-3.1-8b", "-o", "x.arrow"], "no routed experts"),
    (["gen", "--model", "mixtral-8x7b", "--preset", "nope", "-o", "x.arrow"], "unknown trace preset"),
    (["stats", "missing.arrow"], "no such file"),
    (["import", "missing.jsonl", "-o", "x.arrow"], "no such file"),
])
def test_errors_are_one_line(tmp_path, monkeypatch, args, match):
    monkeypatch.chdir(tmp_path)
    assert match in _one_line_error(_run(*args))


def test_stats_rejects_damaged_file_in_one_line(tmp_path):
    out = tmp_path / "t.arrow"
    _json(_run("gen", "--model", "olmoe-1b-7b-0924", "--tokens", 20, "-o", out, "--json"))
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _one_line_error(_run("stats", out))
    (tmp_path / "text.arrow").write_text("hello\n")
    assert "unrecognised trace format" in _one_line_error(_run("stats", tmp_path / "text.arrow"))


def test_stats_and_fit_on_real_trace(real_trace_dir, tmp_path):
    raw = next(real_trace_dir.iterdir()) / "analysis/deep_analysis/routing_raw.jsonl"
    info = _json(_run("import", raw, "--model", "mixtral-8x7b", "-o", tmp_path / "raw.arrow", "--json"))
    assert info["format"] == "vllm-raw" and info["filled_records"] > 0 and info["prefill_tokens"] == 135
    stats = _json(_run("stats", tmp_path / "raw.arrow", "--decode-only", "--json"))
    assert stats["n_tokens"] == 83
    assert stats["summary"]["temporal_reuse"] > 0.3
