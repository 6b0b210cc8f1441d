"""Token samplers with vLLM / Hugging Face semantics, vectorised over a batch.

Order: temperature first, then top-k, top-p, min-p (HF's warper order; mlx_lm's
make_sampler truncates before the temperature, which changes what e.g. T=1.6, top_k=20,
top_p=0.8 means). T=0 is greedy.

Randomness: each sequence owns a 64-bit seed derived from (seed, problem_id,
sample_index); its step-t uniform is splitmix64 of that seed's t-th counter, drawn on
the host (B numbers a step). A token is then the inverse CDF of the truncated
distribution at that uniform. So a sample's randomness does not depend on which other
sequences share its batch, and a resumed run redraws exactly what an uninterrupted
run would have.
"""

from __future__ import annotations

import hashlib
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import mlx.core as mx
import numpy as np

from .. import blas_governor
from ..errors import UserError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_k: int = 0  # 0 (or <0): no top-k
    top_p: float = 1.0  # 1.0: no top-p
    min_p: float = 0.0  # 0.0: no min-p
    seed: int = 0

    def __post_init__(self):
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise UserError(f"temperature {self.temperature}: must be >= 0 (0 means greedy)")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p {self.top_p}: must be in (0, 1] (1 disables it)")
        if not 0 <= self.min_p < 1:
            raise UserError(f"min_p {self.min_p}: must be in [0, 1) (0 disables it)")
        if int(self.top_k) != self.top_k:
            raise UserError(f"top_k {self.top_k}: must be an integer (0 disables it)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict:
        return asdict(self)


# --- Per-sequence randomness -----------------------------------------------------------

def sequence_seed(seed: int, problem_id: str, sample_index: int) -> int:
    """A 64-bit seed owned by one sample: a pure function of its identity."""
    digest = hashlib.blake2b(f"{seed}\x00{problem_id}\x00{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def step_uniforms(seeds, steps) -> np.ndarray:
    """Uniforms in [0, 1) for each (sequence seed, step): the splitmix64 stream.

    24-bit resolution, so every value is exact in float32 and strictly below 1.
    """
    state = np.asarray(seeds, dtype=np.uint64) + (np.asarray(steps, dtype=np.uint64) + np.uint64(1)) * _GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


# --- The sampler -----------------------------------------------------------------------

def _take(x, idx):
    return mx.take_along_axis(x, idx, axis=-1)


# --- Full-vocabulary passes ------------------------------------------------------------
# The log-normaliser (for every sample's log-probability) and the untruncated softmax read
# the whole vocabulary each step. MLX's CPU exp runs at ~15 ns an element (60 ms for 32 rows
# of Qwen's 152k vocabulary, 10 % of the 0.5B's decode step); numpy's vectorised exp takes
# ~12 ms for the same logsumexp, copy included (timed while writing this). So on the CPU
# backend these two passes run in numpy; on a GPU they stay in MLX.

def _on_cpu() -> bool:
    return mx.default_device() == mx.cpu


# These passes are numpy's, one thread each. Where the machine's cores are free (as many as
# blas_governor gives the BLAS; 2 here) the rows are split among that many threads (numpy lets
# go of the GIL). Every pass works row by row, so a row's bits do not depend on the split.
MIN_ROWS_PER_THREAD = 4
_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0


def _by_rows(fn: Callable[[np.ndarray], tuple], a: np.ndarray) -> tuple:
    """fn(a), computed on row blocks of `a` in parallel; fn returns a tuple of row-wise arrays."""
    global _pool, _pool_size
    threads = min(blas_governor.threads_now(), len(a) // MIN_ROWS_PER_THREAD)
    if threads <= 1:
        return fn(a)
    if threads > _pool_size:
        _pool, _pool_size = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sampler"), threads
    parts = list(_pool.map(fn, np.array_split(a, threads)))
    return tuple(np.concatenate(block, axis=0) for block in zip(*parts))


def log_normalizers(logits: mx.array, temperatures) -> list:
    """logsumexp(logits / t) over the last axis of (B, V), keepdims, for each t; on the CPU
    the row maxima and the shifted logits are computed once for all of them."""
    if not _on_cpu():
        return [mx.logsumexp(logits / t if t != 1 else logits, axis=-1, keepdims=True) for t in temperatures]

    def rows(a: np.ndarray) -> tuple:
        m = a.max(axis=-1, keepdims=True)
        z = a - m
        e = np.empty_like(z)
        out = []
        for t in temperatures:
            np.exp(z if t == 1 else np.multiply(z, np.float32(1 / t), out=e), out=e)
            out.append(m / np.float32(t) + np.log(e.sum(axis=-1, keepdims=True)))
        return tuple(out)

    return [mx.array(part) for part in _by_rows(rows, np.asarray(logits, dtype=np.float32))]


def log_normalizer(logits: mx.array, temperature: float = 1.0) -> mx.array:
    """logsumexp(logits / temperature) over the last axis of (B, V), keepdims."""
    return log_normalizers(logits, [temperature])[0]


def _softmax(logits: mx.array, temperature: float) -> mx.array:
    """softmax(logits / temperature) over the last axis."""
    if not _on_cpu():
        return mx.softmax(logits / temperature, axis=-1)

    def rows(a: np.ndarray) -> tuple:
        a = a / np.float32(temperature)
        e = np.exp(a - a.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True),)

    return mx.array(_by_rows(rows, np.asarray(logits, dtype=np.float32))[0])


# Top-k and the top-p candidates need the k largest of 152k values per row; a partition of
# the whole row cost ~1.7 ms a row here. The k largest values lie in the k blocks of BLOCK
# columns with the largest maxima (a block holding one of them has a max >= the k-th value,
# and fewer than k blocks have a larger max), so the partition runs over the block maxima
# and then over those k blocks' columns: ~5x less work, the same set.
BLOCK = 64


def _top_columns(x, k: int):
    """(B, k) columns of each row's k largest values, in no particular order. `x` is an
    mx.array, or a numpy array on the CPU backend (where numpy's partition is ~10x MLX's)."""
    rows, vocab = x.shape
    blocks = vocab // BLOCK
    if 4 * k * BLOCK > vocab:
        return (np if isinstance(x, np.ndarray) else mx).argpartition(-x, k - 1, axis=-1)[:, :k]
    whole = blocks * BLOCK
    if isinstance(x, np.ndarray):
        grid = x[:, :whole].reshape(rows, blocks, BLOCK)
        best = np.argpartition(-grid.max(axis=-1), k - 1, axis=-1)[:, :k]
        vals = np.take_along_axis(grid, best[:, :, None], axis=1).reshape(rows, k * BLOCK)  # whole blocks
        cols = (best[:, :, None] * BLOCK + np.arange(BLOCK)).reshape(rows, k * BLOCK)
        if whole < vocab:  # the last partial block's columns are candidates as they are
            vals = np.concatenate([vals, x[:, whole:]], axis=1)
            cols = np.concatenate([cols, np.broadcast_to(np.arange(whole, vocab), (rows, vocab - whole))], axis=1)
        return np.take_along_axis(cols, np.argpartition(-vals, k - 1, axis=-1)[:, :k], axis=-1)
    maxima = mx.max(x[:, :whole].reshape(rows, blocks, BLOCK), axis=-1)
    best = mx.argpartition(-maxima, kth=k - 1, axis=-1)[:, :k]
    cols = (best[:, :, None] * BLOCK + mx.arange(BLOCK)).reshape(rows, k * BLOCK)
    if whole < vocab:
        cols = mx.concatenate([cols, mx.broadcast_to(mx.arange(whole, vocab), (rows, vocab - whole))], axis=1)
    part = mx.argpartition(-_take(x, cols), kth=k - 1, axis=-1)[:, :k]
    return _take(cols, part)


# Top-p alone needs the tokens in order of probability. Sorting a 152k vocabulary for
# every row at every step cost as much as the model's own decode step on the CPU; the
# nucleus nearly always lies within the few hundred most likely tokens, so those are
# found (above), sorted, and used whenever their mass reaches top_p in every row (then the
# kept set is exactly the full sort's); otherwise the full sort.
NUCLEUS_CANDIDATES = 256


# Dividing by the temperature keeps the order, so the candidates are found on the logits
# and only their values are tempered (the same floats as tempering the whole row first).

def _sorted_top(logits: mx.array, k: int, temperature: float):
    """(ids, tempered values) of each row's k largest logits, in descending order."""
    if _on_cpu():
        def rows(a: np.ndarray) -> tuple:
            part = _top_columns(a, k)
            vals = np.take_along_axis(a, part, axis=-1)
            order = np.argsort(-vals, axis=-1, kind="stable")
            return np.take_along_axis(part, order, axis=-1), np.take_along_axis(vals, order, -1)

        ids, vals = _by_rows(rows, np.asarray(logits, dtype=np.float32))
        return mx.array(ids), mx.array(vals) / temperature
    part = _top_columns(logits, k)
    vals = _take(logits, part)
    order = mx.argsort(-vals, axis=-1)
    return _take(part, order), _take(vals, order) / temperature


def _nucleus_candidates(logits: mx.array, temperature: float, top_p: float, log_z=None):
    """(ids, tempered values, log normaliser): the vocabulary by descending value, or only
    its head when the head holds at least top_p of the mass in every row."""
    log_z = log_normalizer(logits, temperature) if log_z is None else log_z
    if logits.shape[-1] > 4 * NUCLEUS_CANDIDATES:
        ids, vals = _sorted_top(logits, NUCLEUS_CANDIDATES, temperature)
        head_mass = mx.exp(mx.logsumexp(vals, axis=-1) - log_z[:, 0])
        if mx.all(head_mass >= top_p).item():
            return ids, vals, log_z
    ids = mx.argsort(-logits, axis=-1)
    return ids, _take(logits, ids) / temperature, log_z


def truncated_distribution(logits: mx.array, params: SamplingParams, log_z_tempered=None):
    """(token ids or None, probabilities) of the tempered, truncated distribution.
    `log_z_tempered`: logsumexp(logits / T), when the caller has it.

    ids is None when no sort was needed: then column j is token j. Probabilities are
    zero for removed tokens and sum to the kept mass (renormalise by the last cumsum).
    """
    logits = logits.astype(mx.float32)
    t = params.temperature
    vocab = logits.shape[-1]
    top_k = params.top_k if 0 < params.top_k < vocab else 0
    if top_k:
        ids, vals = _sorted_top(logits, top_k, t)
        probs = mx.softmax(vals, axis=-1)
    elif params.top_p < 1:
        ids, vals, log_z = _nucleus_candidates(logits, t, params.top_p, log_z_tempered)
        probs = mx.exp(vals - log_z)  # under the whole vocabulary, as top-p measures mass
    else:
        ids = None
        probs = _softmax(logits, t)
    keep = None
    if params.top_p < 1:
        # Sorted descending: keep a token while the mass strictly before it is < top_p,
        # i.e. HF/vLLM's "drop the tail whose cumulative mass is <= 1 - top_p".
        keep = (mx.cumsum(probs, axis=-1) - probs) < params.top_p
    if params.min_p > 0:
        # Relative to the top token: invariant to the renormalisations above.
        floor = params.min_p * mx.max(probs, axis=-1, keepdims=True)
        by_min_p = probs >= floor
        keep = by_min_p if keep is None else keep & by_min_p
    if keep is not None:
        probs = mx.where(keep, probs, 0.0)
    return ids, probs


def sample_tokens(logits: mx.array, params: SamplingParams, uniforms: mx.array):
    """Sample one token per row of `logits` (B, V).

    Returns (tokens, logprob under the untempered model, logprob under the sampling
    distribution), each of shape (B,). Greedy rows have sampling log-prob 0.
    """
    logits = logits.astype(mx.float32)
    tempered = not params.greedy and params.top_p < 1 and not 0 < params.top_k < logits.shape[-1]
    if tempered and params.temperature != 1:  # top-p needs the tempered normaliser too: one pass for both
        log_z, log_z_t = log_normalizers(logits, [1.0, params.temperature])
    else:
        log_z = log_z_t = log_normalizer(logits)
    log_z = log_z[:, 0]
    if params.greedy:
        tokens = mx.array(np.asarray(logits).argmax(axis=-1)) if _on_cpu() else mx.argmax(logits, axis=-1)
        lp = _take(logits, tokens[:, None])[:, 0] - log_z
        return tokens, lp, mx.zeros_like(lp)
    ids, probs = truncated_distribution(logits, params, log_z_t if tempered else None)
    cdf = mx.cumsum(probs, axis=-1)
    total = cdf[:, -1:]
    # Inverse CDF: the first column whose cumulative mass exceeds u * total. Removed
    # columns add no mass, so they can never be the first to exceed it.
    pos = mx.sum(cdf <= uniforms[:, None] * total, axis=-1, keepdims=True)
    pos = mx.minimum(pos, probs.shape[-1] - 1)
    sampling_lp = mx.log(_take(probs, pos)[:, 0]) - mx.log(total[:, 0])
    tokens = pos[:, 0] if ids is None else _take(ids, pos)[:, 0]
    lp = _take(logits, tokens[:, None])[:, 0] - log_z
    return tokens, lp, sampling_lp


def analytic_distribution(logits, params: SamplingParams) -> np.ndarray:
    """Reference: the exact sampling distribution over the vocabulary, in numpy float64.

    Written independently of `truncated_distribution` (HF's masking formulation) so
    tests can check the vectorised sampler against it.
    """
    x = np.asarray(logits, dtype=np.float64)
    if params.greedy:
        out = np.zeros_like(x)
        out[np.argmax(x)] = 1.0
        return out
    x = x / params.temperature
    if 0 < params.top_k < len(x):
        kth = np.sort(x)[::-1][params.top_k - 1]
        x = np.where(x >= kth, x, -np.inf)
    if params.top_p < 1:
        p = np.exp(x - x.max())
        p /= p.sum()
        order = np.argsort(p, kind="stable")  # ascending
        cum = np.cumsum(p[order])
        remove = cum <= 1 - params.top_p
        remove[-1] = False
        x[order[remove]] = -np.inf
    if params.min_p > 0:
        p = np.exp(x - x.max())
        p /= p.sum()
        x = np.where(p >= params.min_p * p.max(), x, -np.inf)
    p = np.exp(x - x.max())
    return p / p.sum()
