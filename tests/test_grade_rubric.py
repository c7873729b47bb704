"""The S..F rubric: each rule decides grades as documented, and bad rubric files are one-line errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from moesim.cli import cli
from moesim.errors import MoesimError
from moesim.sweep.grading import GRADES, load_rubric, parse_rubric, grade_point

GB = 10**9


def _grade(rubric=None, **overrides):
    args = dict(fits=True, decode_tok_s=50.0, weights_bytes=20 * GB, nvme_bytes=0, bits_per_weight=4.8,
                tier_fill={"vram": 0.5})
    args.update(overrides)
    return grade_point(rubric or load_rubric(), **args)


def test_default_rubric_is_versioned_and_ordered():
    rubric = load_rubric()
    assert rubric.rubric_version
    thresholds = [t for _, t in rubric.speed_min_tok_s]
    assert [g for g, _ in rubric.speed_min_tok_s] == list(GRADES[:-1])
    assert thresholds == sorted(thresholds, reverse=True)


@pytest.mark.parametrize("index", range(5))
def test_speed_thresholds_set_the_base_grade(index):
    rubric = load_rubric()
    letter, minimum = rubric.speed_min_tok_s[index]
    assert _grade(rubric, decode_tok_s=minimum).grade == letter
    below = GRADES[index + 1]
    assert _grade(rubric, decode_tok_s=minimum * 0.999).grade == below


def test_not_fitting_is_f():
    assert _grade(fits=False, decode_tok_s=500.0).grade == "F"


def test_heavy_nvme_paging_is_f_and_light_paging_capped():
    rubric = load_rubric()
    heavy = _grade(rubric, nvme_bytes=int(20 * GB * (rubric.nvme_fail_fraction + 0.05)), decode_tok_s=500.0)
    assert heavy.grade == "F" and "NVMe" in heavy.notes
    light = _grade(rubric, nvme_bytes=GB // 10, decode_tok_s=500.0)
    assert light.grade == rubric.nvme_cap


def test_low_bpw_caps_the_grade():
    assert _grade(bits_per_weight=2.6, decode_tok_s=500.0).grade == "C"
    assert _grade(bits_per_weight=1.7, decode_tok_s=500.0).grade == "D"
    assert _grade(bits_per_weight=4.8, decode_tok_s=500.0).grade == "S"


def test_full_tier_lowers_one_step():
    rubric = load_rubric()
    over_vram = min(1.0, rubric.max_vram_fill + 0.004)
    assert _grade(rubric, decode_tok_s=500.0, tier_fill={"vram": over_vram}).grade == "A"
    assert _grade(rubric, decode_tok_s=500.0, tier_fill={"vram": rubric.max_vram_fill}).grade == "S"
    full_host = _grade(rubric, decode_tok_s=500.0, tier_fill={"vram": 0.5, "host": rubric.max_host_fill + 0.05})
    assert full_host.grade == "A" and "host RAM" in full_host.notes
    assert _grade(rubric, decode_tok_s=2.0, tier_fill={"host": 0.99}).grade == "F"  # D lowered one step


def test_nan_speed_is_f():
    assert _grade(decode_tok_s=float("nan")).grade == "F"


def test_custom_rubric_changes_grades(tmp_path):
    text = (tmp_path / "r.toml")
    text.write_text('rubric_version = "strict-1"\n[speed_min_tok_s]\nS = 1000\nA = 500\nB = 200\nC = 100\nD = 60\n')
    rubric = load_rubric(text)
    assert rubric.rubric_version == "strict-1"
    assert _grade(rubric, decode_tok_s=50.0).grade == "F"
    assert _grade(rubric, decode_tok_s=250.0).grade == "B"


@pytest.mark.parametrize(
    "body, phrase",
    [
        ("rubric_version = ", "not valid TOML"),
        ("[speed_min_tok_s]\nS = 1\n", "rubric_version"),
        ('rubric_version = "x"\n', "speed_min_tok_s"),
        ('rubric_version = "x"\n[speed_min_tok_s]\nS = 1\nA = 2\nB = 1\nC = 1\nD = 1\n', "must not increase"),
        ('rubric_version = "x"\n[speed_min_tok_s]\nS = 5\nA = 4\nB = 3\nC = 2\n', "lacks grade D"),
        ('rubric_version = "x"\n[speed_min_tok_s]\nS = 5\nA = 4\nB = 3\nC = 2\nD = -1\n', "must be a number"),
        ('rubric_version = "x"\n[speed_min_tok_s]\nS = 5\nA = 4\nB = 3\nC = 2\nD = 1\nX = 0\n', "unknown grade"),
        ('rubric_version = "x"\n[speed_min_tok_s]\nS = 5\nA = 4\nB = 3\nC = 2\nD = 1\n[fit]\nnot_fitting = "Z"\n',
         "fit.not_fitting"),
        ('rubric_version = "x"\n[speed_min_tok_s]\nS = 5\nA = 4\nB = 3\nC = 2\nD = 1\n[[quality_caps]]\ncap = "C"\n',
         "below_bpw"),
    ],
)
def test_malformed_rubric_is_one_line_error(body, phrase):
    with pytest.raises(MoesimError) as info:
        parse_rubric(body.encode(), "bad.toml")
    message = str(info.value)
    assert phrase in message and "\n" not in message


def test_sweep_with_malformed_grading_file_exits_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("rubric_version = [\n")
    result = CliRunner().invoke(cli, ["sweep", "--grading", str(bad), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "not valid TOML" in lines[0]
    assert not (tmp_path / "out").exists()


def test_missing_grading_file_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["sweep", "--grading", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "cannot read grading file" in result.output and "Traceback" not in result.output
