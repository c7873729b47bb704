"""Numba-JIT kernels (installed as `moesim.kernels`).

Kernels take plain typed numpy arrays and scalars only -- no dataclasses, Arrow objects or
Python containers cross this boundary. The thin public wrappers live in `moesim/`.
"""

import os

# Every kernel module imports Numba after this package runs. When colorama is installed, Numba wraps every
# message it builds while matching call signatures (thousands per kernel, almost all discarded) in
# colorama's stream set-up: ~0.4 s of a fresh compile in a profile. moesim turns Numba errors into one
# plain line anyway, so highlighting buys nothing. Numba reads the setting when it is first imported.
os.environ.setdefault("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", "1")
