"""A prompt style's fixed header, prefilled once per run instead of once per prompt.

A chat template puts the same system text and instruction before every problem: 43 of an
MBPP-validation prompt's mean 127 tokens under Qwen's template and the evalplus style.
Greedy evaluation prefills every problem for one sample, so the header was a third of its
prefill.

The engine prefills each prompt alone, so that a prompt's cache never depends on the other
prompts (that is what makes a resumed run draw what an uninterrupted one would). Sharing
keeps that: where a prompt is split is a function of the prompt alone (the style's header,
when the prompt starts with it), and the header's KV cache is a function of the header's
tokens alone, so a prompt's cache is the same whichever prompts ran before it. A split
prefill may still differ from a whole one in the floats' last bits, since the BLAS may sum
in another order for another row count (on this CPU: up to 2e-6 in the embedded tiny
model's logits). The tokens sampled stay the same in tests/test_prefix.py, and the real
0.5B's and SmolLM2's MBPP-validation evaluations rerun bit for bit with the header shared
(benchmarks/prefix_equivalence.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import mlx.core as mx
from mlx_lm.models.cache import KVCache

from ..errors import UserError
from ..records import Problem

MIN_HEADER = 8  # shorter headers (raw prompts) are not worth a cache entry
_PROBES = ("Return the sum of two numbers.", "(1) x, y: 2?")  # two tasks that share no start


def style_header(tokenizer, style: str) -> list[int]:
    """The tokens every prompt of `style` starts with: the common start of two renderings
    of unrelated tasks, less its last token (it may merge with a task's first characters)."""
    from ..models import prompt_tokens

    try:
        a, b = (prompt_tokens(tokenizer, Problem(id=str(i), prompt=text, tests=[]), style=style)
                for i, text in enumerate(_PROBES))
    except UserError:  # the style cannot render for this model: the real prompts will say why
        return []
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n - 1] if n - 1 >= MIN_HEADER else []


def shared_length(prompt: Sequence[int], header: Sequence[int]) -> int:
    """How many of the prompt's first tokens are the header (0 when it does not start with it).
    At least one token is left to prefill, since the last one's logits start the reply."""
    n = len(header)
    return n if 0 < n < len(prompt) and list(prompt[:n]) == list(header) else 0


class HeaderCache:
    """The KV caches of the last few headers seen, by their tokens."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._store: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.tokens_reused = 0  # prompt tokens not prefilled again

    @staticmethod
    def supports(cache: Sequence) -> bool:
        return all(type(c) is KVCache for c in cache)

    def restore(self, cache: Sequence, header: Sequence[int]) -> bool:
        """Fill the fresh prompt cache with the header's keys and values; False when absent."""
        kv = self._store.get(tuple(header))
        if kv is None:
            self.misses += 1
            return False
        self._store.move_to_end(tuple(header))
        n = len(header)
        for layer, (keys, values) in zip(cache, kv):
            # Fresh slices: the cache's own in-place writes must never reach the stored arrays.
            layer.keys, layer.values, layer.offset = keys[..., :n, :], values[..., :n, :], n
        self.hits += 1
        self.tokens_reused += n
        return True

    def store(self, cache: Sequence, header: Sequence[int]) -> None:
        """Keep the header's keys and values from a cache that has just prefilled exactly it."""
        n = len(header)
        kv = [(layer.keys[..., :n, :], layer.values[..., :n, :]) for layer in cache]
        mx.eval(kv)
        self._store[tuple(header)] = kv
        while len(self._store) > self.capacity:
            self._store.popitem(last=False)

    def stats(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "tokens_reused": self.tokens_reused}

