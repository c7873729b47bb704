"""Catalogs of models, quantizations, devices and engines, held as data files in `data/`.

Every entry loads into a frozen dataclass and carries a `source`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib import resources


def data_file_hash(names: Iterable[str]) -> str:
    """sha256 (hex) over the named files under `moesim/catalog/data/`, in the given order.

    Each file contributes its name and its bytes, so renaming or editing any of them changes the hash;
    the sweep stores these hashes so results can be tied to the catalog they came from."""
    digest = hashlib.sha256()
    root = resources.files("moesim.catalog").joinpath("data")
    for name in names:
        digest.update(name.encode() + b"\0")
        digest.update(root.joinpath(name).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
