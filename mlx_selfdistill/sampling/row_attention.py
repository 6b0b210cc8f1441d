"""Route a model's attention to SlotBatch.attend_rows while it decodes an exact batch.

mlx_lm's attention layers all call `scaled_dot_product_attention(queries, keys, values,
cache=..., scale=..., mask=...)` from their own module's namespace, with the layer's cache.
Exact sampling needs each row to attend over its own columns only (slots.py), which one
batched call with a mask cannot give on MLX's CPU backend: its sums change bits with the
count of masked columns (benchmarks/batch_invariance.py). mlx_lm offers no hook there, so
for the duration of a run this wraps that name in the model's modules: a call whose cache is
a per-row slot layer goes to `attend_rows`; every other call (another cache, another model,
a prompt's prefill) goes to mlx_lm's function unchanged. The names are restored on exit.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import mlx.nn as nn

from .slots import SlotLayer

NAME = "scaled_dot_product_attention"


def _routed(original):
    def attention(queries, keys, values, cache=None, scale=1.0, mask=None, sinks=None):
        if isinstance(cache, SlotLayer) and cache.batch.per_row:
            return cache.batch.attend_rows(queries, keys, values, scale, cache.window, sinks)
        return original(queries, keys, values, cache=cache, scale=scale, mask=mask, sinks=sinks)

    attention.routes = original
    return attention


@contextmanager
def per_row_attention(model: nn.Module) -> Iterator[None]:
    modules = {sys.modules[type(m).__module__] for _, m in model.named_modules()}
    swapped = []
    for module in modules:
        original = getattr(module, NAME, None)
        if original is None or hasattr(original, "routes"):  # none here, or already routed (nested runs)
            continue
        setattr(module, NAME, _routed(original))
        swapped.append((module, original))
    try:
        yield
    finally:
        for module, original in swapped:
            setattr(module, NAME, original)
