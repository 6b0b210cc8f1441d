"""DrawSettings: everything `sample_problems` is asked to draw, as one record.

Two kinds of setting travel together. Some make a sample what it is, so a samples file must
never mix them: the decoding (`SamplingParams`), `max_tokens`, `exact` and the prompt style.
The others only change how fast and in how much memory the engine runs: its rows, KV tokens
and prefill chunk. The CLI, the loop, evaluation, benchmarks and notebooks build one of these
instead of passing a dozen loose keyword arguments down the stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from ..errors import UserError
from .samplers import SamplingParams
from .stopping import RunawayConfig


@dataclass(frozen=True)
class DrawSettings:
    n: int = 1  # samples per problem, indices 0..n-1
    params: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int = 512
    # prompts/styles.py name (its stop strings join `stop`); None: chat, or raw with raw_prompt
    prompt_style: Optional[str] = None
    raw_prompt: bool = False
    stop: tuple = ()
    # Engine limits: rows decoded at once ("auto": the fastest on this machine, rows.py), KV
    # tokens held across them, prompt tokens prefilled per step.
    max_batch: Union[int, str] = 32
    max_kv_tokens: Optional[int] = None
    prefill_step: int = 512
    runaway: RunawayConfig = field(default_factory=RunawayConfig)
    # Bits independent of the rows decoded beside them, at a few % of speed (exact.py).
    exact: bool = False

    def __post_init__(self):
        if self.n < 1:
            raise UserError(f"n {self.n}: must be >= 1 samples per problem")
        object.__setattr__(self, "stop", tuple(self.stop))

    def identity(self) -> dict:
        """What each sample records as its `sampling`: the settings a resumed file must share
        (`exact` only when set, so files from before it existed still match)."""
        return {**self.params.to_dict(), "max_tokens": self.max_tokens, **({"exact": True} if self.exact else {})}
