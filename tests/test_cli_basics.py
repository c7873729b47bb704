import subprocess
import sys

import pytest
from click.testing import CliRunner

from moesim.cli import COMMANDS, cli


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_help_does_not_import_numba_or_pyarrow():
    code = "import sys; from moesim.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint('numba' in sys.modules, 'pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_usage_errors_are_one_line_with_exit_code_2():
    """A bad choice, a missing argument and an unknown command: one line on stderr naming the problem and
    where to look, exit code 2, nothing on stdout (other tools read stdout as JSON)."""
    cases = [
        (["trace", "replay", "t.arrow", "--policy", "lur", "--capacity", "25%", "--json"], "'lur' is not one of"),
        (["trace", "replay", "--json"], "Missing argument 'TRACE'"),
        (["bogus"], "No such command 'bogus'"),
    ]
    for argv, message in cases:
        code = f"from moesim.cli import main; main({argv!r})"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 2, argv
        assert out.stdout == ""
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], out.stderr
        assert "--help" in lines[0]


def test_unknown_ids_point_to_a_listing_that_exists_or_name_the_known_ones():
    from moesim.cli import catalog_cmd

    listings = set(catalog_cmd.catalog.commands)
    runner = CliRunner()
    cases = {
        ("-s", "expert-cache:zzz"): "unknown policy 'zzz' (known: lru, lfu, fifo, static, belady, s3fifo, belady-demand)",
        ("-e", "vlm"): "unknown engine 'vlm'; did you mean vllm? (see `moesim catalog engines`)",
        ("--ram-type", "DDR9"): "known: DDR4, DDR5",
    }
    for extra, expected in cases.items():
        res = runner.invoke(cli, ["simulate", "-m", "qwen3-30b-a3b", "-q", "Q4_K_M", "-d", "rtx-4090", *extra])
        assert res.exit_code == 2 and expected in res.output, res.output
        for word in res.output.split("`moesim catalog ")[1:]:
            assert word.split("`")[0] in listings  # the hint names a real `moesim catalog` command


def test_csv_rows_takes_the_table_of_a_result_or_the_result_itself():
    from moesim.output import csv_rows

    assert csv_rows({"models": [{"a": 1}, {"a": 2, "b": {"c": 3}}]}) == [{"a": 1}, {"a": 2, "b.c": 3}]
    assert csv_rows({"x": [{"a": 1}], "y": [{"b": 2}]}) == [{"table": "x", "a": 1}, {"table": "y", "b": 2}]
    assert csv_rows({"columns": {"layer": [3, 4], "share": [0.5, 0.25]}}) == [{"layer": 3, "share": 0.5},
                                                                            {"layer": 4, "share": 0.25}]
    assert csv_rows({"fits": True, "tiers": {"vram": 5}, "ids": [1, 2], "nan": float("nan")}) == [
        {"fits": True, "tiers.vram": 5, "ids": "[1, 2]", "nan": None}]


@pytest.mark.parametrize("args", [
    ["catalog", "models"], ["catalog", "quants"], ["catalog", "devices"], ["catalog", "engines"],
    ["catalog", "show", "deepseek-r1"], ["fit", "qwen3-30b-a3b", "-q", "Q4_K_M", "-d", "rtx-4090"],
    ["simulate", "-m", "qwen3-30b-a3b", "-q", "Q4_K_M", "-d", "rtx-4090"], ["trace", "presets"],
])
def test_format_csv_prints_csv_of_the_json_result(args):
    import csv
    import io
    import json

    from moesim.output import csv_rows

    runner = CliRunner()
    as_csv = runner.invoke(cli, [*args, "--format", "csv"])
    as_json = runner.invoke(cli, [*args, "--json"])
    assert as_csv.exit_code == 0 and as_json.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    want = csv_rows(json.loads(as_json.stdout))
    assert len(rows) == len(want) > 0
    assert list(rows[0]) == list(dict.fromkeys(key for row in want for key in row))
    first = {key: "" if value is None else str(value) for key, value in want[0].items()}
    assert {key: value for key, value in rows[0].items() if key in first} == first
