"""pytest-benchmark case for CLI start-up (issue #2: `moesim --help` must not import numba; start-up
under 0.3 s).

    pytest benchmarks/test_cli_bench.py --benchmark-columns=min,mean,rounds

Reported, never asserted: the start-up of `moesim --help` in a fresh interpreter, and its ratio to a bare
`python -c pass` timed in the same test (the interpreter's own start-up on this machine).
"""

from __future__ import annotations

import subprocess
import sys
import time

HELP = [sys.executable, "-c", "from moesim.cli import main; main(['--help'])"]
BARE = [sys.executable, "-c", "pass"]


def _best_of(command: list[str], rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        best = min(best, time.perf_counter() - started)
    return best


def test_help_start_up(benchmark):
    bare_seconds = _best_of(BARE)
    benchmark.pedantic(subprocess.run, args=(HELP,), kwargs=dict(check=True, capture_output=True),
                       rounds=5, iterations=1, warmup_rounds=1)
    help_seconds = benchmark.stats.stats.min
    benchmark.extra_info.update(help_seconds=help_seconds, bare_python_seconds=bare_seconds,
                                help_over_bare_python=help_seconds / bare_seconds)
    print(f"\nmoesim --help: {help_seconds:.3f} s ({help_seconds / bare_seconds:.1f} x a bare python start-up of "
          f"{bare_seconds:.3f} s; goal < 0.3 s)")
