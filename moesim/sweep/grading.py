"""S/A/B/C/D/F grades for sweep points, from a versioned TOML rubric.

The rubric is data (`grading.toml` next to this module, or any file passed with `--grading`):
decode-speed thresholds set the base grade, then fit, NVMe paging, tier headroom and low
bits-per-weight cap or lower it. Every grade carries a short note saying which rule decided it.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from moesim.errors import MoesimError

GRADES: tuple[str, ...] = ("S", "A", "B", "C", "D", "F")
# Higher is better; used to compare and cap grades.
GRADE_RANK: dict[str, int] = {g: len(GRADES) - 1 - i for i, g in enumerate(GRADES)}


@dataclass(frozen=True, slots=True)
class QualityCap:
    """Grade ceiling for quantizations below `below_bpw` bits per weight."""

    below_bpw: float
    cap: str


@dataclass(frozen=True, slots=True)
class Rubric:
    """A loaded grading rubric. `digest` is the sha1 of the file bytes (identifies it in metadata)."""

    rubric_version: str
    speed_min_tok_s: tuple[tuple[str, float], ...]  # (grade, minimum decode tok/s), best grade first
    not_fitting: str
    max_tier_fill: float
    nvme_fail_fraction: float
    nvme_cap: str
    quality_caps: tuple[QualityCap, ...]
    source: str
    digest: str


@dataclass(frozen=True, slots=True)
class Grade:
    """The grade of one point and the rule that decided it."""

    grade: str
    notes: str


def _grade_name(value: object, where: str, path: str) -> str:
    if not isinstance(value, str) or value not in GRADES:
        raise MoesimError(f"grading file {path}: {where} must be one of {'/'.join(GRADES)}, got {value!r}")
    return value


def _number(value: object, where: str, path: str, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise MoesimError(f"grading file {path}: {where} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def parse_rubric(text: bytes, path: str = "<rubric>") -> Rubric:
    """Parse and validate rubric TOML bytes; any problem is one-line `MoesimError`."""
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MoesimError(f"grading file {path} is not valid TOML: {str(exc).splitlines()[0]}") from None
    version = data.get("rubric_version")
    if not isinstance(version, str) or not version.strip():
        raise MoesimError(f"grading file {path}: missing string 'rubric_version'")
    speed = data.get("speed_min_tok_s")
    if not isinstance(speed, dict):
        raise MoesimError(f"grading file {path}: missing table [speed_min_tok_s]")
    unknown = sorted(set(speed) - set(GRADES[:-1]))
    if unknown:
        raise MoesimError(f"grading file {path}: [speed_min_tok_s] has unknown grade(s) {', '.join(unknown)}")
    thresholds = []
    for grade in GRADES[:-1]:
        if grade not in speed:
            raise MoesimError(f"grading file {path}: [speed_min_tok_s] lacks grade {grade}")
        thresholds.append((grade, _number(speed[grade], f"speed_min_tok_s.{grade}", path)))
    values = [t for _, t in thresholds]
    if any(a < b for a, b in zip(values, values[1:])):
        raise MoesimError(f"grading file {path}: [speed_min_tok_s] must not increase from S to D")
    fit = data.get("fit", {})
    offload = data.get("offload", {})
    if not isinstance(fit, dict) or not isinstance(offload, dict):
        raise MoesimError(f"grading file {path}: [fit] and [offload] must be tables")
    caps = []
    raw_caps = data.get("quality_caps", [])
    if not isinstance(raw_caps, list):
        raise MoesimError(f"grading file {path}: quality_caps must be an array of tables")
    for i, cap in enumerate(raw_caps):
        if not isinstance(cap, dict):
            raise MoesimError(f"grading file {path}: quality_caps[{i}] must be a table")
        caps.append(
            QualityCap(
                below_bpw=_number(cap.get("below_bpw"), f"quality_caps[{i}].below_bpw", path, 0.0, 64.0),
                cap=_grade_name(cap.get("cap"), f"quality_caps[{i}].cap", path),
            )
        )
    return Rubric(
        rubric_version=version.strip(),
        speed_min_tok_s=tuple(thresholds),
        not_fitting=_grade_name(fit.get("not_fitting", "F"), "fit.not_fitting", path),
        max_tier_fill=_number(fit.get("max_tier_fill", 1.0), "fit.max_tier_fill", path, 0.0, 1.0),
        nvme_fail_fraction=_number(offload.get("nvme_fail_fraction", 1.0), "offload.nvme_fail_fraction", path, 0.0, 1.0),
        nvme_cap=_grade_name(offload.get("nvme_cap", "F"), "offload.nvme_cap", path),
        quality_caps=tuple(sorted(caps, key=lambda c: c.below_bpw)),
        source=str(data.get("source", path)),
        digest=hashlib.sha1(text).hexdigest(),
    )


def default_rubric_bytes() -> bytes:
    return resources.files("moesim.sweep").joinpath("grading.toml").read_bytes()


def load_rubric(path: str | Path | None = None) -> Rubric:
    """The rubric in `path`, or the packaged default when None."""
    if path is None:
        return parse_rubric(default_rubric_bytes(), "moesim/sweep/grading.toml")
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise MoesimError(f"cannot read grading file {path}: {exc.strerror or exc}") from None
    return parse_rubric(text, str(path))


def _cap(grade: str, ceiling: str) -> str:
    return grade if GRADE_RANK[grade] <= GRADE_RANK[ceiling] else ceiling


def _lower_one(grade: str) -> str:
    return GRADES[min(GRADES.index(grade) + 1, len(GRADES) - 1)]


def grade_point(
    rubric: Rubric,
    *,
    fits: bool,
    decode_tok_s: float,
    weights_bytes: int,
    nvme_bytes: int,
    bits_per_weight: float,
    tier_fill: dict[str, float],
) -> Grade:
    """Grade one point.

    Parameters
    ----------
    fits : whether the placement fits the machine at all.
    decode_tok_s : mean single-stream decode speed.
    weights_bytes, nvme_bytes : all weights, and the part paged from NVMe per token.
    bits_per_weight : average stored bits per parameter of the quantization on this model.
    tier_fill : used / capacity per memory tier ("vram", "host"); tiers without capacity omitted.

    Returns
    -------
    Grade with the letter and a note naming the deciding rules.
    """
    if not fits:
        return Grade(rubric.not_fitting, "does not fit")
    nvme_fraction = nvme_bytes / weights_bytes if weights_bytes > 0 else 0.0
    if nvme_fraction > rubric.nvme_fail_fraction:
        return Grade("F", f"{nvme_fraction:.0%} of weights paged from NVMe")
    speed = decode_tok_s if math.isfinite(decode_tok_s) else 0.0
    grade = "F"
    for letter, minimum in rubric.speed_min_tok_s:
        if speed >= minimum:
            grade = letter
            break
    notes = [f"speed {grade} at {speed:.3g} tok/s"]
    if nvme_bytes > 0 and GRADE_RANK[grade] > GRADE_RANK[rubric.nvme_cap]:
        grade = rubric.nvme_cap
        notes.append(f"capped {grade}: weights on NVMe")
    fullest = max(tier_fill.items(), key=lambda kv: kv[1], default=None)
    if fullest is not None and fullest[1] > rubric.max_tier_fill and grade != "F":
        grade = _lower_one(grade)
        notes.append(f"lowered to {grade}: {fullest[0]} {fullest[1]:.0%} full")
    for cap in rubric.quality_caps:
        if bits_per_weight < cap.below_bpw and GRADE_RANK[grade] > GRADE_RANK[cap.cap]:
            grade = cap.cap
            notes.append(f"capped {grade}: {bits_per_weight:.2f} bpw < {cap.below_bpw:g}")
    return Grade(grade, "; ".join(notes))
