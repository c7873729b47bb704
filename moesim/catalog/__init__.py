"""Catalogs of models, quantizations, devices and engines, held as data files in `data/`.

Every entry loads into a frozen dataclass and carries a `source`.
"""
