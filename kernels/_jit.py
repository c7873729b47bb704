"""The one place that sets Numba JIT options for every kernel.

- `cache=True`: kernels compile once per machine and load from `__pycache__` afterwards.
- `error_model="numpy"`: division by zero gives inf/nan instead of raising, which keeps
  the inner loops free of exception checks.
- `no_cfunc_wrapper=True`: no kernel is used as a C callback or first-class function value, so the C
  wrapper Numba would otherwise generate (and optimise) for every kernel is skipped; the kernels
  themselves compile to the same code.
- `fastmath` is off: kernels count hits and bytes exactly, and reassociating float sums would
  make results depend on the compiler; the one float-heavy kernel family (timing) opts into
  the contract-only subset through `FASTMATH_TIMING` if it ever needs it.

Use `@jit` for serial kernels and `@jit_parallel` for kernels that `prange` over independent
units (sweep points, traces, per-layer caches) -- never over tokens that share cache state.
Small functions that only kernels call (never Python) take `@jit_helper`: they are compiled into their
callers, without the Python entry point, disk cache entry and per-literal specialisations that a `@jit`
dispatcher costs on every first compile (see `jit_helper`).
No module may pass `fastmath=` or `cache=` to numba directly; `tests/test_jit_policy.py` checks.

Loop-carried counters and flags start typed -- ``n = np.int64(0)``, ``done = np.bool_(False)`` -- not as
``0`` / ``False``: Numba types a literal start as ``Literal[int](0)`` and widens it only on the next round
of type inference, and each round re-resolves every call and index in the kernel; a counter carried
through three nested loops cost the heap kernel three extra rounds (a third of its compile).
"""

from __future__ import annotations

import numba
from numba.extending import register_jitable

JIT_OPTIONS = dict(cache=True, error_model="numpy", fastmath=False, nogil=True, no_cfunc_wrapper=True)
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


def jit_helper(func):
    """For functions called only from other kernels: compiled inside the first caller's compilation,
    once per argument types, and cached on disk as part of each caller.

    A `@jit` dispatcher called from a kernel is a full compile of its own -- a Python entry point that
    unboxes every argument, its own cache entry, and one specialisation per literal argument value (a
    call with a constant ``0`` and one with a variable compile twice) -- about 0.1-0.3 s each on a
    fresh cache. `register_jitable` compiles without the entry point and types literals as plain
    integers first. Called from Python (or with NUMBA_DISABLE_JIT=1) it is the plain Python function.

    Numba caches such compiled overloads per kind of caller (a kernel and a helper have different
    compile flags), so a helper should neither allocate (``np.empty`` would compile again for helpers)
    nor call a helper that kernels also call directly: both would compile twice."""
    options = {key: value for key, value in JIT_OPTIONS.items() if key != "cache"}
    return register_jitable(**options)(func)
