"""Numba-JIT kernels (installed as `moesim.kernels`).

Kernels take plain typed numpy arrays and scalars only -- no dataclasses, Arrow objects or
Python containers cross this boundary. The thin public wrappers live in `moesim/`.
"""
