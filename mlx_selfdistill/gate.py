"""The validation gate: a run never hands back a model that is worse than the one it started from.

Every round's adapter (and, with `select`, every candidate setting's adapter) is evaluated on
validation problems the training never saw: `gate.problems`, or by default a held-back slice
of the training problems. The run keeps the best of them only if it beats the base model on
validation; otherwise it keeps the base model and says so. Everything here is decision
logic on plain data; loop.py runs the evaluations and records them (resumably).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional, Sequence

from .errors import UserError

NO_GAIN = "no round beat the base on validation: keeping the base model"


@dataclass
class GateSettings:
    # Validation problems (a source spec); None: hold back `holdout` of the training problems.
    problems: Optional[str] = None
    holdout: float = 0.1  # 0 turns the gate off (the last round is kept, as before the gate)
    # A train field and the values to try, one adapter each, the best on validation kept:
    # {"lr": [1e-5, 3e-5, 1e-4]} (the CLI's --select lr=1e-5,3e-5,1e-4).
    select: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.holdout, (int, float)) or isinstance(self.holdout, bool) or not 0 <= self.holdout < 1:
            raise UserError(f"gate.holdout {self.holdout!r}: expected a fraction in [0, 1), e.g. 0.1")
        if not isinstance(self.select, dict) or len(self.select) > 1:
            raise UserError("gate.select: one train field and its values, e.g. --select lr=1e-5,3e-5,1e-4")
        for key, values in self.select.items():
            if not isinstance(values, list) or len(values) < 2:
                raise UserError(f"gate.select {key}: give at least two values to choose from, e.g. {key}=1e-5,1e-4")

    @property
    def enabled(self) -> bool:
        return self.problems is not None or self.holdout > 0


def parse_select(text: str) -> dict:
    """'lr=1e-5,3e-5,1e-4' -> {'lr': ['1e-5', '3e-5', '1e-4']}: the values stay text here and are
    converted to the train field's type when the whole config is validated."""
    key, sep, raw = text.partition("=")
    values = [part.strip() for part in raw.split(",")]
    if not sep or not key.strip() or not all(values):
        raise UserError(f"--select {text!r}: expected FIELD=V1,V2,..., e.g. --select lr=1e-5,3e-5,1e-4")
    return {key.strip(): values}


def held_back(problem_ids: Sequence[str], fraction: float) -> set[str]:
    """The ids held back for validation: a fixed fraction chosen by a hash of each id, so the
    slice does not depend on the order or the number of problems, and a resumed run gets the same."""
    if fraction <= 0:
        return set()
    ranked = sorted(problem_ids, key=lambda pid: hashlib.sha256(pid.encode()).hexdigest())
    count = max(1, round(len(ranked) * fraction))
    if count >= len(ranked):
        raise UserError(f"gate.holdout {fraction}: {len(ranked)} training problem(s) are too few to hold any back; "
                        "give --val-problems or set gate.holdout=0")
    return set(ranked[:count])


@dataclass(frozen=True)
class Candidate:
    label: str  # "round 2", "round 1, lr=3e-05"
    passed: float  # validation pass@1 (or passes) of this adapter
    round: int
    adapter: Optional[str]


def best(candidates: Sequence[Candidate]) -> Optional[Candidate]:
    """The highest validation score; ties go to the earlier (fewer rounds, first value listed)."""
    top = None
    for c in candidates:
        if top is None or c.passed > top.passed:
            top = c
    return top


def keep(base_passed: float, candidates: Sequence[Candidate]) -> tuple[Optional[Candidate], str]:
    """(the candidate to hand back, or None for the base model; the sentence that says why)."""
    winner = best(candidates)
    if winner is None or winner.passed <= base_passed:
        return None, NO_GAIN
    return winner, f"kept {winner.label}: validation pass@1 {winner.passed:.3f} against the base's {base_passed:.3f}"
