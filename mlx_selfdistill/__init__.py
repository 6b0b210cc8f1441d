"""mlx-selfdistill: make a code model better on your own machine.

sample -> verify (sandbox) -> filter -> train (LoRA) -> evaluate -> bench.
"""

# First, before anything can import mlx: bind MLX's CPU backend to a fast BLAS (Linux).
from . import blas as _blas

_blas.load()

__version__ = "0.1.0"
