"""Does a row's product depend on how many rows share it? MLX's CPU matmul on OpenBLAS sgemm.

The engine's exact resume and its `--max-batch` invariance assume that a decode row's bits do
not depend on the other rows in its batch. This measures the assumption at the Qwen2.5-Coder
0.5B's and 1.5B's projection shapes (random float32 weights of those shapes: the kernels
depend on shapes, not values): for each row count M in 1..64, whether every row of an M-row
product equals the same row of the 64-row product, bit for bit. Products run on sgemm
(blas_gemv.batch_invariant), as in the engine.

    python benchmarks/row_invariance.py   # -> benchmarks/results/row_invariance.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlx_selfdistill  # noqa: F401  first: binds MLX to the fast BLAS (Linux) before mlx loads
import mlx.core as mx
import numpy as np

from mlx_selfdistill import blas, blas_gemv
from mlx_selfdistill.jsonl import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "row_invariance.json"
# (in, out) of each projection: q/o, k/v, MLP up/gate, MLP down, output layer
SHAPES = {
    "Qwen2.5-Coder-0.5B": {"q_proj": (896, 896), "k_proj": (896, 128), "up_proj": (896, 4864),
                           "down_proj": (4864, 896), "lm_head": (896, 151936)},
    "Qwen2.5-Coder-1.5B": {"q_proj": (1536, 1536), "k_proj": (1536, 256), "up_proj": (1536, 8960),
                           "down_proj": (8960, 1536), "lm_head": (1536, 151936)},
}
MAX_ROWS = 64


def rows_that_differ(k: int, n: int, seed: int = 0) -> list[int]:
    """The row counts M < MAX_ROWS whose product's rows are not the MAX_ROWS-row product's rows."""
    rng = np.random.default_rng(seed)
    w = mx.array(rng.standard_normal((n, k)).astype(np.float32))
    x = mx.array(rng.standard_normal((MAX_ROWS, k)).astype(np.float32))
    with blas_gemv.batch_invariant():
        ref = x @ w.T
        mx.eval(ref)
        ref = np.array(ref)
        differ = []
        for m in range(1, MAX_ROWS):
            out = x[:m] @ w.T
            mx.eval(out)
            if not np.array_equal(np.array(out), ref[:m]):
                differ.append(m)
    return differ


def main() -> None:
    result = {"blas": blas.state().to_dict(), "mlx": mx.__version__, "max_rows": MAX_ROWS, "models": {}}
    for model, shapes in SHAPES.items():
        result["models"][model] = {}
        for name, (k, n) in shapes.items():
            differ = rows_that_differ(k, n)
            result["models"][model][name] = {"in": k, "out": n, "row_counts_that_differ": differ}
            print(f"{model} {name} {k}x{n}: rows differ at M = {differ or 'none'}", flush=True)
    worst = max((max(v["row_counts_that_differ"], default=0) for m in result["models"].values() for v in m.values()))
    result["rows_from_which_bits_are_invariant"] = worst + 1
    write_json_atomic(RESULTS, result)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
