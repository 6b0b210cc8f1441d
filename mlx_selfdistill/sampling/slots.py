"""The decode batch's KV cache: fixed rows that sequences join and leave without a copy.

mlx_lm's BatchKVCache joins a sequence by concatenating caches (`extend`) and drops a
finished one by gathering rows (`filter`): each copies every layer's whole cache, and with
continuous refill that happens every few steps. Here the batch has a fixed number of rows
(slots); each layer's keys and values live in one preallocated buffer (rows, heads, columns,
dim), and every row writes the same column at each decode step. A sequence joins a free row
by writing its prompt's keys into the columns just left of that column; the columns before
its first one are masked out. Attention reads columns [lo, hi]: from the oldest live row's
first column to the one written now. The buffer is copied only when the write column
reaches its end (dropping the dead columns left of lo; at most once per `STEP` decode
steps) or when a prompt is longer than the columns left of the write column (early on).

Keys are stored after RoPE, so a row's tokens keep their positions wherever they sit;
`offset` gives each row its own next position.

With `per_row` (exact sampling, exact.py) each row attends over its own columns only
(`attend_rows`, reached through row_attention.py): no masked column enters its sums, so its
bits depend on its own length alone, whatever rows are live beside it.
"""

from __future__ import annotations

from typing import Optional, Sequence

import mlx.core as mx
from mlx_lm.models.cache import KVCache, RotatingKVCache

from ..errors import UserError

STEP = 256  # columns added at a time


def _prompt_kv(layer_cache) -> tuple[mx.array, mx.array, Optional[int]]:
    """(keys, values, sliding window or None) of a one-row prompt cache, in token order."""
    if type(layer_cache) is KVCache:
        n = layer_cache.offset
        return layer_cache.keys[..., :n, :], layer_cache.values[..., :n, :], None
    if type(layer_cache) is RotatingKVCache and layer_cache.offset <= layer_cache.max_size:
        n = layer_cache.offset  # nothing rotated out yet: the buffer is in token order
        return layer_cache.keys[..., :n, :], layer_cache.values[..., :n, :], layer_cache.max_size
    if type(layer_cache) is RotatingKVCache:
        raise UserError(f"a prompt of {layer_cache.offset} tokens is longer than this model's sliding window "
                        f"({layer_cache.max_size}): batched sampling needs shorter prompts")
    raise UserError(f"this model's cache ({type(layer_cache).__name__}) does not support batched sampling")


class SlotLayer:
    """One layer's view of the batch: what an mlx_lm attention layer calls on its cache."""

    def __init__(self, batch: "SlotBatch", window: Optional[int]):
        self.batch, self.window = batch, window
        self.keys: Optional[mx.array] = None
        self.values: Optional[mx.array] = None

    @property
    def offset(self) -> mx.array:
        return self.batch.positions  # (rows,): each row's position of the token fed now

    def update_and_fetch(self, keys: mx.array, values: mx.array):
        if keys.shape[2] != 1:
            raise ValueError("a slot batch decodes one token per row per step")
        b = self.batch
        self.keys[..., b.hi:b.hi + 1, :] = keys
        self.values[..., b.hi:b.hi + 1, :] = values
        return self.keys[..., b.lo:b.hi + 1, :], self.values[..., b.lo:b.hi + 1, :]

    def make_mask(self, N: int, return_array: bool = False, window_size: Optional[int] = None, **_):
        return self.batch.mask(window_size or self.window)

    @property
    def state(self):
        return self.keys, self.values

    @property
    def nbytes(self) -> int:
        return 0 if self.keys is None else self.keys.nbytes + self.values.nbytes


class SlotBatch:
    """`rows` slots over the layers of `template` (a one-row prompt cache of the model)."""

    def __init__(self, template: Sequence, rows: int, per_row: bool = False):
        self.rows, self.per_row = rows, per_row
        self.attention_calls = 0  # attend_rows calls in the current step (per_row: one a layer)
        self.layers = [SlotLayer(self, _prompt_kv(c)[2]) for c in template]
        self.hi = 0  # the column the next decode step writes
        self.cap = 0  # columns allocated
        self.start: list[Optional[int]] = [None] * rows  # a live row's first column; None: free
        self.length = [0] * rows  # tokens in the row's cache: the position of its next token
        self.copies = 0  # whole-cache copies made (relayouts and row compactions)
        self.steps = 0
        self.columns_read = 0  # sum over steps of the columns attention read (hi - lo + 1)
        self.positions: Optional[mx.array] = None
        self._masks: dict = {}
        self._firsts: dict = {}  # per step: window -> each row's first column (_first_columns)

    # --- bookkeeping ---------------------------------------------------------------------

    @property
    def lo(self) -> int:
        """The first column attention reads."""
        return self._first_live()

    def _first_live(self) -> int:
        live = [s for s in self.start if s is not None]
        return min(live) if live else self.hi

    def live_rows(self) -> list[int]:
        return [r for r, s in enumerate(self.start) if s is not None]

    def free(self, row: int) -> None:
        self.start[row] = None

    def _relayout(self, need_left: int) -> None:
        """Copy the live columns (from the first live row's first one to hi) into a new buffer
        with >= need_left columns before the write column and STEP free ones after it."""
        lo = self._first_live()
        used = self.hi - lo
        new_hi = max(used, need_left)
        new_cap = -(-(new_hi + STEP) // STEP) * STEP
        for layer in self.layers:
            if layer.keys is None:
                continue
            for name in ("keys", "values"):
                old = getattr(layer, name)
                new = mx.zeros(old.shape[:2] + (new_cap,) + old.shape[3:], old.dtype)
                if used:
                    new[..., new_hi - used:new_hi, :] = old[..., lo:self.hi, :]
                setattr(layer, name, new)
        mx.eval([layer.state for layer in self.layers])
        shift = new_hi - self.hi
        self.start = [None if s is None else s + shift for s in self.start]
        self.hi, self.cap = new_hi, new_cap
        self.copies += 1

    def admit(self, rows: Sequence[int], prompt_cache: Sequence) -> None:
        """Put the one-row prompt cache into each of `rows` (free slots)."""
        kv = [_prompt_kv(c) for c in prompt_cache]
        n = kv[0][0].shape[2]
        if self.layers[0].keys is None:
            for layer, (k, v, _) in zip(self.layers, kv):
                layer.keys = mx.zeros((self.rows, k.shape[1], 0, k.shape[3]), k.dtype)
                layer.values = mx.zeros((self.rows, v.shape[1], 0, v.shape[3]), v.dtype)
        if self.hi < n or self.hi >= self.cap:
            self._relayout(n)
        for layer, (k, v, _) in zip(self.layers, kv):
            for r in rows:
                layer.keys[r:r + 1, :, self.hi - n:self.hi, :] = k
                layer.values[r:r + 1, :, self.hi - n:self.hi, :] = v
        for r in rows:
            self.start[r], self.length[r] = self.hi - n, n

    def keep_rows(self, rows: Sequence[int]) -> None:
        """Shrink the batch to `rows` (in that order): a copy, for the end of a run when
        free rows would only cost compute."""
        idx = mx.array(list(rows))
        for layer in self.layers:
            layer.keys, layer.values = layer.keys[idx], layer.values[idx]
        mx.eval([layer.state for layer in self.layers])
        self.start = [self.start[r] for r in rows]
        self.length = [self.length[r] for r in rows]
        self.rows = len(rows)
        self.copies += 1

    # --- one decode step -----------------------------------------------------------------

    def _first_columns(self, window: Optional[int]) -> list[int]:
        """Each row's first column attention reads this step (within a sliding window). A free
        row reads only its own column, so its (unused) attention stays finite."""
        if window not in self._firsts:
            floor = self.hi - window + 1 if window is not None else 0
            self._firsts[window] = [max(self.hi if s is None else s, floor) for s in self.start]
        return self._firsts[window]

    def mask(self, window: Optional[int]) -> mx.array:
        if window not in self._masks:
            cols = mx.arange(self.lo, self.hi + 1)
            ok = cols[None, :] >= mx.array(self._first_columns(window))[:, None]
            self._masks[window] = ok[:, None, None, :]
        return self._masks[window]

    def attend_rows(self, queries: mx.array, keys: mx.array, values: mx.array, scale: float,
                    window: Optional[int] = None, sinks: Optional[mx.array] = None) -> mx.array:
        """One decode step's attention, each row over its own columns only (`keys` and `values`
        are update_and_fetch's columns [lo, hi]): a row's sums never see a masked column, so its
        bits cannot depend on how far the other rows reach. A free row sees its own column."""
        self.attention_calls += 1
        lo = self.lo
        outs = [mx.fast.scaled_dot_product_attention(queries[r:r + 1], keys[r:r + 1, :, first - lo:],
                                                     values[r:r + 1, :, first - lo:], scale=scale, sinks=sinks)
                for r, first in enumerate(self._first_columns(window))]
        return mx.concatenate(outs, axis=0)

    def forward(self, model, tokens: Sequence[int]) -> mx.array:
        """Logits (rows, vocab) of one decode step; `tokens` holds each row's next input."""
        if self.hi >= self.cap:
            self._relayout(0)
        self.positions = mx.array(self.length)
        self._masks, self._firsts = {}, {}
        self.steps += 1
        self.columns_read += self.hi - self.lo + 1
        self.attention_calls = 0
        logits = model(mx.array(list(tokens))[:, None], cache=self.layers)[:, -1, :]
        if self.per_row and self.attention_calls != len(self.layers):
            raise UserError(f"exact sampling cannot reach this model's attention ({type(model).__module__}: "
                            f"{self.attention_calls} of {len(self.layers)} layers call mlx_lm's "
                            "scaled_dot_product_attention): sample without --exact")
        self.hi += 1
        self.length = [n + 1 for n in self.length]
        return logits
