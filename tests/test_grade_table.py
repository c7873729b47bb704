"""`moesim grade`: the compact graded table other tools read (schema documented in the README)."""

from __future__ import annotations

import csv
import io
import json

import pyarrow as pa
import pyarrow.feather as feather
import pytest
from click.testing import CliRunner

from moesim.cli import cli
from moesim.sweep.grades import GRADE_SCHEMA, grade_table
from moesim.sweep.store import CELL_COLUMNS, open_sweep
from sweep_testing import fake_rows, write_fake_sweep

DOCUMENTED_COLUMNS = [
    "model", "model_id", "quant", "device", "device_count", "host", "engine", "context", "batch",
    "best_strategy", "decode_tok_s", "prefill_tok_s", "fits", "grade", "rubric_version",
]


def _cells():
    return {tuple(r[c] for c in CELL_COLUMNS) for r in fake_rows()}


def test_grade_schema_is_the_documented_one():
    assert GRADE_SCHEMA.names == DOCUMENTED_COLUMNS
    assert GRADE_SCHEMA.field("decode_tok_s").type == pa.float64()
    assert GRADE_SCHEMA.field("fits").type == pa.bool_()


def test_one_row_per_cell_with_the_best_strategy(tmp_path):
    _, table = open_sweep(write_fake_sweep(tmp_path / "s"))
    grades = grade_table(table)
    assert grades.schema.equals(GRADE_SCHEMA)
    assert grades.num_rows == len(_cells())
    best = {(r["model"], r["quant"], r["device"]): r for r in fake_rows() if r["is_best"]}
    for row in grades.to_pylist():
        source = best[(row["model"], row["quant"], row["device"])]
        assert row["best_strategy"] == source["resolved_strategy"]
        assert row["grade"] == source["grade"]
        assert row["decode_tok_s"] == source["decode_tok_s"]


def test_grade_json_stdout(tmp_path):
    out = write_fake_sweep(tmp_path / "s")
    result = CliRunner().invoke(cli, ["grade", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"rubric_version", "rows"}
    assert len(data["rows"]) == len(_cells())
    assert list(data["rows"][0]) == DOCUMENTED_COLUMNS
    grades = {r["grade"] for r in data["rows"]}
    assert grades <= set("SABCDF") and len(grades) >= 3


def test_grade_csv_and_arrow_files(tmp_path):
    out = write_fake_sweep(tmp_path / "s")
    runner = CliRunner()
    result = runner.invoke(cli, ["grade", str(out), "--format", "csv", "-o", str(tmp_path / "g.csv")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "g.csv").read_text())))
    assert list(rows[0]) == DOCUMENTED_COLUMNS and len(rows) == len(_cells())
    result = runner.invoke(cli, ["grade", str(out), "--format", "arrow", "-o", str(tmp_path / "g.arrow"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"out": str(tmp_path / "g.arrow"), "format": "arrow", "rows": len(_cells())}
    table = feather.read_table(tmp_path / "g.arrow")
    assert table.schema.equals(GRADE_SCHEMA)
    assert table.equals(grade_table(open_sweep(out)[1]))


def test_grade_csv_default_on_stdout(tmp_path):
    out = write_fake_sweep(tmp_path / "s")
    result = CliRunner().invoke(cli, ["grade", str(out)])
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == ",".join(DOCUMENTED_COLUMNS)


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["grade", "{tmp}/missing"], "does not exist"),
        (["grade", "{tmp}"], "not a moesim sweep"),
        (["grade", "{sweep}", "--format", "arrow"], "needs -o"),
        (["report", "{tmp}/missing"], "does not exist"),
        (["report", "{tmp}/a-file"], "is a file, not a sweep directory"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, phrase):
    sweep = write_fake_sweep(tmp_path / "s")
    (tmp_path / "a-file").write_text("not a sweep")
    args = [a.format(tmp=tmp_path, sweep=sweep) for a in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and phrase in lines[0]
