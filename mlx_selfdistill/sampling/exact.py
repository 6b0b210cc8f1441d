"""Exact sampling: a sample's bits depend on (seed, problem, sample index) alone.

The engine's samples are meant to be a function of (seed, problem, sample index), so a
resumed run or another `--max-batch` draws the same ones. Their text is; their low bits
(log-probabilities, and so in rare ties a token) are not, for two reasons measured on
OpenBLAS (benchmarks/batch_invariance.py, row_invariance.py):

* **Small products.** OpenBLAS runs a product of at most 100^3 multiply-adds on its
  small-matrix kernel, whose bits for a row depend on how many rows share the product. A
  decode step's projection has `rows x in x out` multiply-adds, so with few rows the small
  projections (a 0.5B's key/value ones) land there. `row_floor` is the fewest rows that
  keep every projection of the model above the limit; the engine never decodes fewer.
* **The attention window.** The slot batch attends over the columns its rows span, masking
  a row's columns before its prompt; how many there are depends on the other rows, and the
  attention's sums give other bits when they change. In exact mode each row attends over
  its own columns only, one attention call a row (SlotBatch.attend_rows, reached through
  row_attention.py), so no masked column enters its sums.

On the 0.5B at 32 rows this costs 7 % of the default engine's speed (one attention call a
row; results/engine_speed.json, `exact`). An earlier version fixed each request's window to a
power of two holding its prompt and max_tokens instead, and ran each window's requests as
their own batch: 28-33 % slower (`exact_fixed_span`), from the extra batch drains. It is an
option (`--exact`), not the default, because its samples differ in low bits from the default
engine's. The floor outranks `max_batch` and `max_kv_tokens`: below it the extra rows idle,
but their cache is allocated.
"""

from __future__ import annotations

import math

import mlx.nn as nn

SMALL_PRODUCT_LIMIT = 100 ** 3  # OpenBLAS's small-matrix permit (x86-64 builds): M*N*K at most this


def _in_out(layer: nn.Module) -> tuple[int, int]:
    out_dim, packed = layer.weight.shape
    if isinstance(layer, nn.QuantizedLinear):
        return packed * 32 // layer.bits, out_dim  # 32-bit words holding `bits`-bit weights
    return packed, out_dim


def row_floor(model: nn.Module) -> int:
    """The fewest decode rows for which every linear layer's product exceeds the small-matrix
    limit. A LoRA adapter's rank-r products (its arrays, not layers) are not counted: their
    bits held at every row count measured (benchmarks/row_invariance.py)."""
    sizes = [math.prod(_in_out(m)) for _, m in model.named_modules()
             if isinstance(m, (nn.Linear, nn.QuantizedLinear))]
    smallest = min(sizes, default=SMALL_PRODUCT_LIMIT + 1)
    return max(1, SMALL_PRODUCT_LIMIT // smallest + 1)
