"""Shared fixtures. Tests that read ../shared skip cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present next to the checkout")
    return SHARED


@pytest.fixture(scope="session")
def real_trace_dir(shared_dir) -> Path:
    path = shared_dir / "traces" / "real"
    if not path.is_dir():
        pytest.skip("../shared/traces/real is not present")
    return path
