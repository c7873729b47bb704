"""Sweeps: every model x quant x device x placement into a resumable Arrow dataset, graded S..F.

Public entry points: `run_sweep` (driver), `open_sweep` (load a dataset), `grade_table` (compact
graded table), `load_rubric`/`grade_point` (rubric), `render_html` (report); `moesim.sweep.plan.plan` (best setup for one machine).
Submodules import lazily so `import moesim.sweep` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SweepOptions": "moesim.sweep.runner",
    "run_sweep": "moesim.sweep.runner",
    "open_sweep": "moesim.sweep.store",
    "SCHEMA": "moesim.sweep.store",
    "grade_table": "moesim.sweep.grades",
    "GRADE_SCHEMA": "moesim.sweep.grades",
    "load_rubric": "moesim.sweep.grading",
    "grade_point": "moesim.sweep.grading",
    "render_html": "moesim.sweep.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'moesim.sweep' has no attribute {name!r}")
