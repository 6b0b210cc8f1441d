"""When a sequence ends: EOS, stop strings, max_tokens, runaway repetition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class RunawayConfig:
    """A tail made of one block of <= max_period tokens repeated >= min_repeats times,
    spanning >= min_span tokens, is a runaway (a released SSD checkpoint never stopped).

    The defaults need e.g. one token 128 times in a row, or a 64-token block 8 times:
    long exact repetition that real code (even a literal table) rarely produces.
    """

    enabled: bool = True
    max_period: int = 64
    min_repeats: int = 8
    min_span: int = 128
    check_every: int = 8  # tokens between checks of one sequence; bounds the host cost


def repetition_period(tokens: Sequence[int], cfg: RunawayConfig) -> Optional[int]:
    """The shortest period p of a runaway tail of `tokens`, or None."""
    n = len(tokens)
    if n < cfg.min_span:
        return None
    for p in range(1, cfg.max_period + 1):
        span = max(p * cfg.min_repeats, cfg.min_span)
        if span > n:
            break
        tail = np.asarray(tokens[n - span:])
        if np.array_equal(tail[p:], tail[:-p]):
            return p
    return None


class StopStrings:
    """Finds the first stop string in generated text, decoding only a recent window
    of tokens each step (full decodes would cost O(n^2) over a sequence)."""

    def __init__(self, tokenizer, stop: Sequence[str]):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        longest = max((len(s) for s in self.stop), default=0)
        # A stop string of L characters spans at most L tokens, plus a few partial-byte tokens.
        self.window = 2 * longest + 8

    def __bool__(self):
        return bool(self.stop)

    def hit(self, tokens: Sequence[int]) -> bool:
        if not self.stop:
            return False
        text = self.tokenizer.decode(list(tokens[-self.window:]))
        return any(s in text for s in self.stop)

    def truncate(self, text: str) -> str:
        """The text before the earliest stop string (the stop string is not kept)."""
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        return text if cut < 0 else text[:cut]
