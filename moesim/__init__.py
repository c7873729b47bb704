"""moesim: replay MoE expert-routing traces through a modelled memory hierarchy.

Importing this package is cheap on purpose: numba, pyarrow and the kernels load only
when a command that needs them runs, so `moesim --help` starts fast.
"""

__version__ = "0.1.0"
