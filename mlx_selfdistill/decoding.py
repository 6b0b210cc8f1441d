"""How a model is decoded when it is measured, defined once for `eval`, `bench` and a run's
evaluation, so their pass@1 on the same model and problems agree; and the one-line caption
that every result table prints, so a number is never shown without how it was sampled.

Light on purpose (no mlx): the CLI reads these defaults to build its options.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping


@dataclass(frozen=True)
class EvalDecoding:
    """Untruncated sampling at T=1 (the model's own distribution), 4 samples a problem."""

    n: int = 4
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k
    top_p: float = 1.0  # 1.0: no top-p
    min_p: float = 0.0  # 0.0: no min-p
    max_tokens: int = 256
    seed: int = 1234

    def to_dict(self) -> dict:
        return asdict(self)


EVAL = EvalDecoding()

CAPTION_FIELDS = ("temperature", "top_k", "top_p", "min_p", "n", "max_tokens", "seed")
_SHORT = {"temperature": "T"}


def caption(settings: Mapping, label: str = "sampling") -> str:
    """'sampling: T=1 top_k=0 top_p=1 min_p=0 n=4 max_tokens=256 seed=1234' (fields it lacks: '?')."""
    parts = []
    for key in CAPTION_FIELDS:
        value = settings.get(key, "?")
        parts.append(f"{_SHORT.get(key, key)}={value:g}" if isinstance(value, float) else f"{_SHORT.get(key, key)}={value}")
    return f"{label}: " + " ".join(parts)
