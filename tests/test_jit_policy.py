"""JIT options are set in exactly one place (`kernels/_jit.py`); every kernel module uses it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
JIT_MODULE = REPO / "kernels" / "_jit.py"
FORBIDDEN = {
    "fastmath=": re.compile(r"\bfastmath\s*="),
    "cache=": re.compile(r"\bcache\s*=\s*(True|False)"),
    "numba.njit": re.compile(r"\bnumba\s*\.\s*(njit|jit)\b|\bfrom\s+numba\s+import\s+[^\n]*\b(njit|jit)\b"),
}


def python_sources():
    for top in ("kernels", "moesim"):
        for path in sorted((REPO / top).rglob("*.py")):
            if path != JIT_MODULE:
                yield path


def test_no_jit_options_outside_the_jit_module():
    offenders = []
    for path in python_sources():
        text = path.read_text()
        for what, pattern in FORBIDDEN.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                offenders.append(f"{path.relative_to(REPO)}:{line}: {what}")
    assert not offenders, "JIT options belong in kernels/_jit.py only:\n" + "\n".join(offenders)


def test_the_lint_catches_a_violation():
    sample = "import numba\n@numba.njit(fastmath=True, cache=False)\ndef f(x):\n    return x\n"
    assert all(p.search(sample) for p in FORBIDDEN.values())


def test_every_kernel_module_decorates_with_the_project_jit():
    for path in sorted((REPO / "kernels").glob("*.py")):
        if path.name in ("_jit.py", "__init__.py"):
            continue
        tree = ast.parse(path.read_text())
        decorated = [
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef)
            and any(
                (isinstance(d, ast.Name) and d.id in ("jit", "jit_parallel"))
                or (isinstance(d, ast.Call) and getattr(d.func, "id", "") in ("jit", "jit_parallel"))
                for d in node.decorator_list
            )
        ]
        assert decorated, f"{path.name} defines no @jit kernels"
        assert "from moesim.kernels._jit import" in path.read_text(), path.name
