"""`moesim trace replay` and the size/capacity parser."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from moesim.cache import replay as library_replay
from moesim.cli import COMMANDS, LazyGroup, cli
from moesim.errors import MoesimError
from moesim.trace.format import read_trace
from moesim.units import CapacitySpec, parse_capacity, parse_size

GOLDEN = str(Path(__file__).resolve().parent.parent / "traces" / "golden" / "golden.arrow")


def invoke(args):
    """Run `moesim trace replay ARGS` through the real CLI when the trace group exists, else through a
    group with the same error handling (MoesimError -> one line, exit 2)."""
    if importlib.util.find_spec("moesim.cli.trace_cmd") is not None:
        return CliRunner().invoke(cli, ["trace", "replay", *args])

    from moesim.cli.replay_cmd import replay

    class OnlyReplay(LazyGroup):
        def list_commands(self, ctx):
            return ["replay"]

        def get_command(self, ctx, name):
            return replay if name == "replay" else None

    return CliRunner().invoke(OnlyReplay(name="trace"), ["replay", *args])


def test_replay_json_has_the_agreed_keys_and_matches_the_library():
    res = invoke([GOLDEN, "--policy", "lru", "--capacity", "25%", "--warmup", "20", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {"lookups", "hits", "misses", "hit_rate", "replay_seconds"} <= set(data)
    experts = read_trace(GOLDEN).experts
    want = library_replay(experts, "lru", 16, np.ones(4), warmup_tokens=20, n_experts=16)  # 25% of 64 experts
    assert (data["lookups"], data["hits"], data["misses"]) == (want.lookups, want.hit_count, want.miss_count)
    assert data["hit_rate"] == pytest.approx(want.hit_rate)
    assert data["replay_seconds"] >= 0


@pytest.mark.parametrize("policy", ["lfu", "fifo", "static", "belady", "s3fifo", "belady-demand"])
def test_replay_every_policy_by_name(policy):
    res = invoke([GOLDEN, "--policy", policy, "--capacity", "8", "--scope", "per-layer", "--warmup", "10", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["policy"] == policy and data["hits"] + data["misses"] == data["lookups"] == 230 * 8


def test_replay_with_prefetch_reports_prefetch_bytes():
    res = invoke([GOLDEN, "--capacity", "16", "--prefetch", "cooccurrence", "--warmup", "40", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["prefetch_bytes"] == data["prefetch_useful_bytes"] + data["prefetch_wasted_bytes"]
    assert data["prefetch_bytes"] > 0


def test_replay_table_output():
    res = invoke([GOLDEN, "--capacity", "4"])
    assert res.exit_code == 0 and "hit_rate" in res.output


@pytest.mark.parametrize(
    "args",
    [
        [GOLDEN, "--capacity", "-3"],
        [GOLDEN, "--capacity", "lots"],
        [GOLDEN, "--capacity", "150%"],
        [GOLDEN, "--capacity", "8", "--warmup", "1000"],
        [GOLDEN, "--capacity", "8", "--prefetch", "cooccurrence"],
        [GOLDEN, "--capacity", "8", "--quant", "Q4_K_M"],  # the golden trace's model is not in the catalog
        [GOLDEN, "--capacity", "8", "--model", "deepseek-r1"],
        [GOLDEN, "--capacity", "24GB"],  # bytes need expert sizes (--quant); 1-byte experts would make it all fit
        ["missing-trace.arrow", "--capacity", "8"],
    ],
)
def test_replay_bad_input_is_one_line_exit_2(args, tmp_path):
    res = invoke(args)
    assert res.exit_code == 2, res.output
    text = res.output.strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1 and text.startswith("Error:")


def test_replay_is_registered_under_the_trace_group():
    assert "trace" in COMMANDS


def test_parse_size_units():
    assert parse_size("24GB") == 24 * 10**9
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("1.5 GiB") == 3 * 2**29
    assert parse_size("0.1GB") == 10**8
    assert parse_size("4096") == 4096
    assert parse_size("2tib") == 2 * 2**40
    for bad in ("", "GB", "1.2.3GB", "12XB", "-1GB", True):
        with pytest.raises(MoesimError):
            parse_size(bad)


def test_parse_capacity_forms():
    assert parse_capacity("300") == CapacitySpec("experts", 300)
    assert parse_capacity("25%") == CapacitySpec("percent", 25.0)
    assert parse_capacity("24GB") == CapacitySpec("bytes", 24 * 10**9)
    for bad in ("1.5", "-2", "101%", "x%"):
        with pytest.raises(MoesimError):
            parse_capacity(bad)


def test_capacity_to_bytes():
    sizes = [0, 100, 300]  # a dense layer then two MoE layers; 4 experts each -> 1600 routed bytes
    assert parse_capacity("50%").to_bytes(sizes, 4) == 800
    assert parse_capacity("2").to_bytes(sizes, 4) == 400  # two average (200-byte) experts
    assert parse_capacity("1KB").to_bytes(sizes, 4) == 1000
    assert parse_capacity("3").to_bytes([1, 1], 8) == 3


def curve_cli(args):
    return CliRunner().invoke(cli, ["trace", "curve", *args])


@pytest.mark.parametrize("policy, scope", [("lru", "global"), ("belady", "per-layer"), ("belady-demand", "global")])
def test_curve_points_equal_replays_at_the_same_capacities(policy, scope):
    res = curve_cli([GOLDEN, "--policy", policy, "--scope", scope, "--warmup", "20", "--capacity", "4",
                     "--capacity", "25%", "--capacity", "40", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["policy"], data["scope"], data["lookups"]) == (policy, scope, 220 * 8)
    assert data["curve_seconds"] >= 0
    experts = read_trace(GOLDEN).experts
    for point, capacity in zip(data["points"], (4, 16, 40), strict=True):  # 25% of 64 experts of 1 byte = 16
        want = library_replay(experts, policy, capacity, np.ones(4), scope=scope, warmup_tokens=20, n_experts=16)
        assert (point["capacity_bytes"], point["hits"], point["misses"]) == (capacity, want.hit_count, want.miss_count)
        assert point["hit_rate"] == pytest.approx(want.hit_rate)


def test_curve_default_ladder_table_and_csv():
    table = curve_cli([GOLDEN])
    assert table.exit_code == 0, table.output
    assert "hit_rate" in table.output and "100%" in table.output
    csv = curve_cli([GOLDEN, "--format", "csv"]).output.strip().splitlines()
    assert csv[0] == "capacity,capacity_bytes,hits,misses,hit_rate"
    assert [line.split(",")[0] for line in csv[1:]] == ["5%", "10%", "25%", "50%", "75%", "100%"]
    hits = [int(line.split(",")[2]) for line in csv[1:]]
    assert hits == sorted(hits)  # LRU hits never fall as the cache grows


def test_opt_and_min_are_accepted_as_belady_by_the_cli():
    for command in (["replay", GOLDEN, "--capacity", "8"], ["curve", GOLDEN, "--capacity", "8"]):
        for alias in ("opt", "MIN"):
            res = CliRunner().invoke(cli, ["trace", *command, "--policy", alias, "--json"])
            assert res.exit_code == 0, res.output
            assert json.loads(res.stdout)["policy"] == "belady"


def test_curve_bad_input_is_one_line_exit_2(tmp_path):
    trace = tmp_path / "ds.arrow"
    assert CliRunner().invoke(cli, ["trace", "gen", "--model", "deepseek-r1", "--tokens", "3", "-o", str(trace),
                                    "--json"]).exit_code == 0
    for args in ([str(trace), "--policy", "belady", "--quant", "Q4_K_M"],  # two expert sizes in the global pool
                 [GOLDEN, "--capacity", "12XB"], [GOLDEN, "--policy", "lfu"], ["missing.arrow"],
                 [GOLDEN, "--capacity", "10%", "--capacity", "512MiB"],
                 [GOLDEN, "--warmup", "1000"]):
        res = curve_cli(args)
        assert res.exit_code == 2, (args, res.output)
        text = res.output.strip()
        assert "Traceback" not in text and len(text.splitlines()) == 1 and text.startswith("Error:"), args
    assert "one expert size per pool" in curve_cli([str(trace), "--policy", "belady", "--quant", "Q4_K_M"]).output
    per_layer = curve_cli([str(trace), "--policy", "belady", "--quant", "Q4_K_M", "--scope", "per-layer", "--json"])
    assert per_layer.exit_code == 0 and json.loads(per_layer.stdout)["points"][-1]["capacity"] == "100%"
