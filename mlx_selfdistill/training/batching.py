"""Batches by token budget, drawn at random, cut into length-sorted chunks.

Each example becomes a row segment of (input, target, weight) triples: inputs are its
tokens but the last, targets the tokens but the first, weights 1 on the completion.

Length grouping `batch` (the default): the epoch's shuffled examples are cut into batches
of about `batch_tokens` real tokens each, so every optimizer step sees a random sample of
the data; inside a batch the examples are sorted by length and split into padded chunks
(fewest padded positions, a small cost per chunk), whose gradients add up to the batch's.
Length grouping `epoch` sorts the whole epoch by length first, so one batch holds examples
of nearly equal length: the least padding, but a biased step whenever length goes with
content (long replies are the ones with prose), which raised the final loss in
benchmarks/training.py. Evaluation uses it: there the order does not matter.

Packed, a batch's examples are laid end to end in rows of `pack_len` (first-fit
decreasing) and a block-diagonal causal mask keeps each one's attention inside itself.

The plan of epoch e depends only on (seed, e) and the lengths, never on the number of
processes: data-parallel ranks split each batch by rows, and a resumed run finds its
place by counting batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .data import TokenizedExample

GROUPINGS = ("batch", "epoch")
# What one more chunk costs, in padded positions: a chunk is a separate forward and
# backward pass, so splitting a batch only pays when it saves more padding than this.
CHUNK_OVERHEAD = 64


def round_up(n: int, multiple: int) -> int:
    return multiple * math.ceil(n / multiple)


@dataclass
class Batch:
    inputs: np.ndarray  # (rows, L) int32
    targets: np.ndarray  # (rows, L) int32
    weights: np.ndarray  # (rows, L) float32: 1 where the loss counts
    segments: Optional[np.ndarray]  # (rows, L) int32 when packed: which example each token is; -1 = padding
    real_tokens: int  # non-padding positions

    @property
    def positions(self) -> int:
        return int(self.inputs.size)


class BatchPlan:
    """Which examples go in which batch, epoch by epoch, and how a batch splits into chunks."""

    def __init__(self, lengths: list[int], *, batch_tokens: int, seed: int, pad_multiple: int = 8,
                 pack: bool = False, pack_len: Optional[int] = None, shuffle: bool = True,
                 grouping: str = "batch"):
        if grouping not in GROUPINGS:
            raise ValueError(f"length grouping {grouping!r}: use one of {', '.join(GROUPINGS)}")
        # A segment is len - 1 positions (the last token is only a target).
        self.seg = np.asarray(lengths, dtype=np.int64) - 1
        if len(self.seg) == 0:
            raise ValueError("no examples to batch")
        self.batch_tokens, self.seed, self.pad_multiple = batch_tokens, seed, pad_multiple
        self.pack, self.shuffle, self.grouping = pack, shuffle, grouping
        longest = round_up(int(self.seg.max()), pad_multiple)
        if pack_len is None:  # room for a few examples per row, within one batch's budget
            pack_len = min(4 * longest, max(batch_tokens, longest))
        self.pack_len = max(round_up(pack_len, pad_multiple), longest)
        self._cache: dict[int, list[list[list[int]]]] = {}
        self.batches_per_epoch = len(self.epoch(0))

    def epoch(self, e: int) -> list[list[list[int]]]:
        """Batches of epoch e; a batch is a list of rows; a row a list of example indices."""
        if e not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            self._cache[e] = self._plan(e)
        return self._cache[e]

    def _plan(self, e: int) -> list[list[list[int]]]:
        rng = np.random.default_rng([self.seed, e])
        order = rng.permutation(len(self.seg)) if self.shuffle else np.arange(len(self.seg))
        if self.grouping == "batch":  # already random: each batch a slice of the shuffled order
            return [self._rows(members) for members in self._even_slices(order)]
        if self.pack:
            rows = self._packed_rows(order)
            per_batch = max(1, self.batch_tokens // self.pack_len)
            batches = [rows[i:i + per_batch] for i in range(0, len(rows), per_batch)]
        else:
            by_length = order[np.argsort(self.seg[order], kind="stable")]
            batches, current = [], []
            for i in by_length.tolist():
                width = round_up(int(self.seg[i]), self.pad_multiple)  # the widest so far: lengths ascend
                if current and width * (len(current) + 1) > self.batch_tokens:
                    batches.append(current)
                    current = []
                current.append([i])
            batches.append(current)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _even_slices(self, order: np.ndarray) -> list[np.ndarray]:
        """Cut the order into ceil(tokens / batch_tokens) slices of nearly equal token counts
        (no runt batch at the end: a step on a handful of examples is a noisy one)."""
        seg = self.seg[order]
        total = int(seg.sum())
        n = max(1, math.ceil(total / self.batch_tokens))
        starts = np.cumsum(seg) - seg
        which = starts * n // max(total, 1)  # the slice each example starts in: non-decreasing
        cuts = np.searchsorted(which, np.arange(1, n))
        return [s for s in np.split(order, cuts) if len(s)]

    def _rows(self, members: np.ndarray) -> list[list[int]]:
        if self.pack:
            return self._packed_rows(members)
        return [[i] for i in members[np.argsort(self.seg[members], kind="stable")].tolist()]

    def _packed_rows(self, order: np.ndarray) -> list[list[int]]:
        by_length = order[np.argsort(-self.seg[order], kind="stable")]
        free = np.zeros(0, dtype=np.int64)
        rows: list[list[int]] = []
        for i in by_length.tolist():
            need = int(self.seg[i])
            fits = np.nonzero(free >= need)[0]
            if len(fits):
                r = int(fits[0])
            else:
                r = len(rows)
                rows.append([])
                free = np.append(free, self.pack_len)
            rows[r].append(i)
            free[r] -= need
        return rows

    def locate(self, micro_batch: int) -> tuple[int, int]:
        return divmod(micro_batch, self.batches_per_epoch)

    def rows(self, micro_batch: int) -> list[list[int]]:
        e, i = self.locate(micro_batch)
        return self.epoch(e)[i]

    def width(self, row: list[int]) -> int:
        """Padded length of a row (packed rows all have pack_len: fewer shapes)."""
        return self.pack_len if self.pack else round_up(int(sum(self.seg[i] for i in row)), self.pad_multiple)

    def chunks(self, rows: list[list[int]]) -> list[list[list[int]]]:
        """Rows split into padded chunks: sorted by width, cut where it saves the most."""
        by_width = sorted(((self.width(r), r) for r in rows), key=lambda wr: wr[0])
        bounds = chunk_bounds([w for w, _ in by_width], self.batch_tokens, CHUNK_OVERHEAD)
        return [[r for _, r in by_width[a:b]] for a, b in bounds]


def chunk_bounds(widths: list[int], budget: int, overhead: int = CHUNK_OVERHEAD) -> list[tuple[int, int]]:
    """Cut ascending widths into consecutive chunks [a, b) that minimise padded positions
    plus `overhead` per chunk, each chunk at most `budget` positions (a lone row may
    exceed it). Dynamic programming: O(n^2), n being a batch's rows."""
    n = len(widths)
    best = [0] + [math.inf] * n
    cut = [0] * (n + 1)
    for b in range(1, n + 1):
        for a in range(b - 1, -1, -1):
            size = (b - a) * widths[b - 1]  # the widest row is the last: widths ascend
            if size > budget and b - a > 1:
                break
            cost = best[a] + size + overhead
            if cost < best[b]:
                best[b], cut[b] = cost, a
    bounds, b = [], n
    while b > 0:
        bounds.append((cut[b], b))
        b = cut[b]
    return bounds[::-1]


def shard_rows(rows: list[list[int]], rank: int, world: int) -> list[list[int]]:
    """This rank's share of a global batch: every world-th row (rows are length-sorted)."""
    return rows[rank::world]


def make_batch(examples: list[TokenizedExample], rows: list[list[int]], *, pad_multiple: int = 8,
               packed: bool = False, width: Optional[int] = None) -> Batch:
    if not rows:  # a rank with no share of a tiny batch still joins the collective
        z = np.zeros((1, pad_multiple), np.int32)
        return Batch(z, z, np.zeros((1, pad_multiple), np.float32),
                     np.full((1, pad_multiple), -1, np.int32) if packed else None, 0)
    row_lens = [sum(len(examples[i]) - 1 for i in row) for row in rows]
    L = width or round_up(max(row_lens), pad_multiple)
    inputs = np.zeros((len(rows), L), np.int32)
    targets = np.zeros((len(rows), L), np.int32)
    weights = np.zeros((len(rows), L), np.float32)
    segments = np.full((len(rows), L), -1, np.int32) if packed else None
    for r, row in enumerate(rows):
        at = 0
        for s, i in enumerate(row):
            ex = examples[i]
            n = len(ex) - 1
            toks = np.asarray(ex.tokens, np.int32)
            inputs[r, at:at + n] = toks[:-1]
            targets[r, at:at + n] = toks[1:]
            # target k is token k + 1: a completion token when k + 1 >= prompt_len
            weights[r, at + max(ex.prompt_len - 1, 0):at + n] = 1.0
            if packed:
                segments[r, at:at + n] = s
            at += n
    return Batch(inputs, targets, weights, segments, int(sum(row_lens)))


def block_causal_mask(segments: np.ndarray) -> np.ndarray:
    """(rows, 1, L, L) bool: token q sees token k iff k <= q and both are the same example.

    Padding (-1) forms its own block, so every query sees at least itself (no NaN rows).
    """
    L = segments.shape[1]
    causal = np.tril(np.ones((L, L), dtype=bool))
    same = segments[:, :, None] == segments[:, None, :]
    return (same & causal)[:, None]
