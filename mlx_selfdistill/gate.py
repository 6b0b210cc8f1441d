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
from pathlib import Path
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


# -- the gate's stages, on a loop.Run (passed in: loop.py imports this module) ---------------------

def validate(run, where: Path, model: str, adapter: str | None, progress=None) -> dict:
    """pass@k of (model, adapter) on the validation problems, kept in where/validation/ (beside the
    adapter it checks, so whatever removes a round's adapter removes its validation too)."""
    return run.evaluate(f"validation {where.name}", model, adapter, progress, problems=run.val_problems(),
                        out_dir=where / "validation")


def select_round(run, r: int, examples: list[dict], progress=None) -> dict:
    """Train one adapter per value of gate.select, validate each, and install the best as round r's
    adapter (ties: the value listed first). Each candidate, its validation and the install resume."""
    import json
    import shutil

    from .jsonl import write_json_atomic

    rd = run.round_dir(r)
    marker = rd / "train_done.json"
    if marker.exists():
        return json.loads(marker.read_text())
    (key, values), = run.config.gate.select.items()
    candidates, results = [], []
    for value in values:
        where = rd / "select" / f"{key}={value}"
        result = run.train(r, examples, progress, where=where, overrides={key: value})
        check = validate(run, where, run.train_base_for(r), str(where / "adapters"), progress)
        candidates.append(Candidate(f"round {r}, {key}={value}", check["pass_at_1"], r, str(where / "adapters")))
        results.append((value, result, check))
    winner = best(candidates)
    value, result, check = results[candidates.index(winner)]
    staging = rd / ".adapters.installing"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("adapters.safetensors", "adapter_config.json"):
        shutil.copy2(Path(winner.adapter) / name, staging / name)
    shutil.rmtree(rd / "adapters", ignore_errors=True)
    staging.rename(rd / "adapters")
    run.fuse_if_needed(r)
    chosen = dict(result, selected={"field": key, "value": value, "validation": check,
                                    "candidates": [{"value": v, "validation_pass_at_1": c["pass_at_1"]}
                                                   for v, _, c in results]})
    write_json_atomic(marker, chosen)
    return chosen


def decide(run, base_validation: dict, round_validations: dict[int, dict]) -> dict:
    """Which model the run hands back (written to <run>/kept.json): the best round on validation
    if it beats the base, else the base model."""
    from .jsonl import write_json_atomic

    candidates = []
    for r, check in sorted(round_validations.items()):
        model, adapter = run.student_after(r)
        candidates.append(Candidate(f"round {r}", check["pass_at_1"], r, adapter if adapter else model))
    winner, message = keep(base_validation["pass_at_1"], candidates)
    model, adapter = run.student_after(winner.round) if winner else (run.config.model, None)
    kept = {"round": winner.round if winner else 0, "model": model, "adapter": adapter, "message": message,
            "validation_problems": len(run.val_problems()),
            "validation_pass_at_1": {"base": base_validation["pass_at_1"],
                                     **{f"round_{r}": c["pass_at_1"] for r, c in sorted(round_validations.items())}}}
    write_json_atomic(run.dir / "kept.json", kept)
    return kept
