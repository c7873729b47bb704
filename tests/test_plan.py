"""`moesim plan`: best model/quant/placement for one machine, simulated or read from a sweep."""

from __future__ import annotations

import json

from click.testing import CliRunner

from moesim.cli import cli
from moesim.sweep.grading import GRADE_RANK
from moesim.sweep.store import open_sweep


def _plan(*args):
    result = CliRunner().invoke(cli, ["plan", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_plan_for_one_model_ranks_candidates():
    data = _plan("--device", "rtx-4090", "--model", "qwen3-30b-a3b")
    best = data["best"]
    assert best["model"] == "qwen3-30b-a3b" and best["fits"]
    assert "llama-server" in best["llama_cpp_command"]
    ranks = [(c["fits"], GRADE_RANK[c["grade"]]) for c in data["candidates"]]
    assert ranks == sorted(ranks, reverse=True)
    assert data["host"].startswith("desktop")


def test_plan_host_changes_the_answer_for_offloaded_models():
    slow = _plan("--device", "rtx-4090", "--model", "qwen3-235b-a22b", "--host", "desktop-ddr4-3200-2ch", "--top", "100")
    fast = _plan("--device", "rtx-4090", "--model", "qwen3-235b-a22b", "--host", "epyc-9004", "--top", "100")
    assert slow["host"] == "desktop-ddr4-3200-2ch" and fast["host"] == "epyc-9004"
    pick = lambda d: max(c["decode_tok_s"] or 0 for c in d["candidates"] if c["quant"] == "Q4_K_M")
    assert pick(fast) > pick(slow)


def test_plan_from_sweep_matches_the_sweep(tmp_path):
    out = tmp_path / "s"
    result = CliRunner().invoke(cli, ["sweep", "--models", "qwen3-30b-a3b,olmoe-1b-7b-0924", "--devices", "m2-max",
                                      "--quants", "Q4_K_M,Q8_0", "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    data = _plan("--device", "m2-max", "--sweep", str(out))
    assert data["source"] == "sweep"
    assert {c["model"] for c in data["candidates"]} == {"qwen3-30b-a3b", "olmoe-1b-7b-0924"}
    _, table = open_sweep(out)
    stored = {(r["model"], r["quant"]): r for r in table.to_pylist() if r["is_best"]}
    for cand in data["candidates"]:
        assert cand["grade"] == stored[(cand["model"], cand["quant"])]["grade"]


def test_plan_terminal_output_prints_command():
    result = CliRunner().invoke(cli, ["plan", "--device", "rtx-4090", "--model", "qwen3-30b-a3b"])
    assert result.exit_code == 0, result.output
    assert "llama" in result.output and "best:" in result.output


def test_plan_bad_input_exits_2(tmp_path):
    for args in (["--device", "rtx-9999"], ["--device", "rtx-4090", "--model", "nope-7b"],
                 ["--device", "rtx-4090", "--sweep", str(tmp_path / "missing")], ["--device", "rtx-4090", "--top", "0"]):
        result = CliRunner().invoke(cli, ["plan", *args])
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert len([line for line in result.output.splitlines() if line.strip()]) == 1
