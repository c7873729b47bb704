"""The one place that sets Numba JIT options for every kernel.

- `cache=True`: kernels compile once per machine and load from `__pycache__` afterwards.
- `error_model="numpy"`: division by zero gives inf/nan instead of raising, which keeps
  the inner loops free of exception checks.
- `fastmath` is off: kernels count hits and bytes exactly, and reassociating float sums would
  make results depend on the compiler; the one float-heavy kernel family (timing) opts into
  the contract-only subset through `FASTMATH_TIMING` if it ever needs it.

Use `@jit` for serial kernels and `@jit_parallel` for kernels that `prange` over independent
units (sweep points, traces, per-layer caches) -- never over tokens that share cache state.
No module may pass `fastmath=` or `cache=` to numba directly; `tests/test_jit_policy.py` checks.
"""

from __future__ import annotations

import numba

JIT_OPTIONS = dict(cache=True, error_model="numpy", fastmath=False, nogil=True)
FASTMATH_TIMING = False


def jit(func=None, **overrides):
    """`numba.njit` with the project-wide options."""
    options = {**JIT_OPTIONS, **overrides}
    if func is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(func)


def jit_parallel(func=None, **overrides):
    """Like `jit`, with `parallel=True` for `prange` over independent units."""
    return jit(func, parallel=True, **overrides)
