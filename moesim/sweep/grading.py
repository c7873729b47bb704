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

import numpy as np

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
    max_vram_fill: float
    max_host_fill: float
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
        max_vram_fill=_number(fit.get("max_vram_fill", 1.0), "fit.max_vram_fill", path, 0.0, 1.0),
        max_host_fill=_number(fit.get("max_host_fill", 1.0), "fit.max_host_fill", path, 0.0, 1.0),
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


def grade_arrays(
    rubric: Rubric,
    *,
    fits: np.ndarray,
    decode_tok_s: np.ndarray,
    weights_bytes: np.ndarray,
    nvme_bytes: np.ndarray,
    bits_per_weight: np.ndarray,
    vram_fill: np.ndarray,
    host_fill: np.ndarray,
) -> tuple[list[str], list[str]]:
    """Grade many points at once (same rules as `grade_point`, which calls this).

    Parameters
    ----------
    fits, decode_tok_s, weights_bytes, nvme_bytes, bits_per_weight : one value per point.
    vram_fill, host_fill : used / capacity of VRAM and of host RAM per point (0 where the tier has
        no capacity, and host_fill 0 on unified machines, whose one pool counts as VRAM).

    Returns
    -------
    (grades, notes): the letter and the note naming the deciding rules, per point.
    """
    fits = np.asarray(fits, dtype=bool)
    speed = np.asarray(decode_tok_s, dtype=np.float64)
    speed = np.where(np.isfinite(speed), speed, 0.0)
    weights = np.asarray(weights_bytes, dtype=np.float64)
    nvme = np.asarray(nvme_bytes, dtype=np.float64)
    bpw = np.asarray(bits_per_weight, dtype=np.float64)
    vram_fill = np.asarray(vram_fill, dtype=np.float64)
    host_fill = np.asarray(host_fill, dtype=np.float64)
    nvme_fraction = np.divide(nvme, weights, out=np.zeros_like(nvme), where=weights > 0)

    rank = np.zeros(speed.shape, dtype=np.int64)  # F
    for letter, minimum in reversed(rubric.speed_min_tok_s):
        rank = np.where(speed >= minimum, GRADE_RANK[letter], rank)
    speed_rank = rank.copy()
    cap_rank = GRADE_RANK[rubric.nvme_cap]
    nvme_capped = (nvme > 0) & (rank > cap_rank)
    rank = np.where(nvme_capped, cap_rank, rank)
    vram_full = vram_fill > rubric.max_vram_fill
    host_full = host_fill > rubric.max_host_fill
    lowered = (vram_full | host_full) & (rank > 0)
    rank = np.where(lowered, rank - 1, rank)
    after_fill = rank.copy()
    capped_by = np.full(rank.shape, -1, dtype=np.int64)
    for i, cap in enumerate(rubric.quality_caps):
        hit = (bpw < cap.below_bpw) & (rank > GRADE_RANK[cap.cap])
        rank = np.where(hit, GRADE_RANK[cap.cap], rank)
        capped_by = np.where(hit, i, capped_by)
    paged_out = nvme_fraction > rubric.nvme_fail_fraction
    rank = np.where(paged_out, 0, rank)
    rank = np.where(fits, rank, GRADE_RANK[rubric.not_fitting])

    letters = [GRADES[len(GRADES) - 1 - r] for r in rank.tolist()]
    notes = []
    for i in range(len(letters)):
        if not fits[i]:
            notes.append("does not fit")
            continue
        if paged_out[i]:
            notes.append(f"{nvme_fraction[i]:.0%} of weights paged from NVMe")
            continue
        parts = [f"speed {GRADES[len(GRADES) - 1 - speed_rank[i]]} at {speed[i]:.3g} tok/s"]
        if nvme_capped[i]:
            parts.append(f"capped {rubric.nvme_cap}: weights on NVMe")
        if lowered[i]:
            full = [f"{name} {value[i]:.0%} full" for name, value, flag in
                    (("VRAM", vram_fill, vram_full), ("host RAM", host_fill, host_full)) if flag[i]]
            parts.append(f"lowered to {GRADES[len(GRADES) - 1 - after_fill[i]]}: {', '.join(full)}")
        if capped_by[i] >= 0:
            cap = rubric.quality_caps[capped_by[i]]
            parts.append(f"capped {letters[i]}: {bpw[i]:.2f} bpw < {cap.below_bpw:g}")
        notes.append("; ".join(parts))
    return letters, notes


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
    letters, notes = grade_arrays(
        rubric, fits=np.array([fits]), decode_tok_s=np.array([decode_tok_s], dtype=np.float64),
        weights_bytes=np.array([weights_bytes], dtype=np.float64), nvme_bytes=np.array([nvme_bytes], dtype=np.float64),
        bits_per_weight=np.array([bits_per_weight], dtype=np.float64),
        vram_fill=np.array([tier_fill.get("vram", 0.0)]), host_fill=np.array([tier_fill.get("host", 0.0)]),
    )
    return Grade(letters[0], notes[0])
