"""The validation gate: a run never hands back a model that is worse than the one it started from.

Every round's adapter (and, with `select`, every candidate setting's adapter) is evaluated on
validation problems the training never saw: `gate.problems`, or by default a held-back slice
of the training problems. The run keeps the best of them only if its gain over the base model
on validation is unlikely to be luck: a one-sided exact sign test on the problems whose outcome
changed, at `gate.alpha` divided by the number of adapters compared (the best of several is
picked, so one of them would win by chance). Otherwise it keeps the base model and says so.
A one-problem edge on 41 validation problems once kept a round that was worse on the test
files (benchmarks/results/code_run.json); "scores higher" alone is not evidence.

Everything here is decision logic on plain data; loop.py runs the evaluations and records them
(resumably).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

from .errors import UserError

NO_GAIN = "no round beat the base on validation: keeping the base model"
NOT_SHOWN = "no round's gain on validation is beyond chance"


@dataclass
class GateSettings:
    # Validation problems (a source spec); None: hold back `holdout` of the training problems.
    problems: Optional[str] = None
    holdout: float = 0.1  # 0 turns the gate off (the last round is kept, as before the gate)
    # A train field and the values to try, one adapter each, the best on validation kept:
    # {"lr": [1e-5, 3e-5, 1e-4]} (the CLI's --select lr=1e-5,3e-5,1e-4).
    select: dict = field(default_factory=dict)
    # The largest one-sided sign-test p-value (before dividing by the adapters compared) at which
    # the best round is kept; 1 keeps any round that scores higher than the base.
    alpha: float = 0.1

    def __post_init__(self):
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or not 0 < self.alpha <= 1:
            raise UserError(f"gate.alpha {self.alpha!r}: expected a p-value threshold in (0, 1], e.g. 0.1")
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
    label: str  # "round 2", "round 1, lr=3e-05", "base"
    passed: float  # validation pass@1 of this model
    round: int
    adapter: Optional[str]
    # problem id -> this model's pass rate on it (its share of passing samples)
    per_problem: Mapping[str, float] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Decision:
    kept: Optional[Candidate]  # None: the base model
    message: str
    evidence: Optional[dict] = None  # the best round against the base: flips, p, the threshold (None: no rounds)


def best(candidates: Sequence[Candidate]) -> Optional[Candidate]:
    """The highest validation score; ties go to the earlier (fewer rounds, first value listed)."""
    top = None
    for c in candidates:
        if top is None or c.passed > top.passed:
            top = c
    return top


def threshold(alpha: float, compared: int) -> float:
    """The p-value the best of `compared` adapters must reach (Bonferroni); alpha 1 turns the test
    off (any p passes: a round that scores higher is kept)."""
    return 1.0 if alpha >= 1 else alpha / max(1, compared)


def can_show_gain(problems: int, alpha: float, compared: int) -> bool:
    """Whether `problems` validation problems can show a gain at all: the smallest sign-test
    p-value (every problem improved) is 0.5 ** problems."""
    return 0.5 ** problems <= threshold(alpha, compared)


def too_few_warning(config, problems: int) -> str | None:
    """Said before any work when no round could ever be kept on this many validation problems."""
    alpha, n = config.gate.alpha, adapters_compared(config, config.rounds)
    if can_show_gain(problems, alpha, n):
        return None
    return (f"{problems} validation problem(s) cannot show a gain at gate.alpha={alpha:g} over {n} adapter(s) "
            f"(the best possible p is {0.5 ** problems:.3g}): the base model will be kept; give --val-problems "
            "more problems, or --set gate.alpha=1 to keep any round that scores higher")


def paired_evidence(base: Candidate, winner: Candidate, alpha: float, compared: int) -> dict:
    """Problems the winner does better and worse on than the base, and the sign test on them."""
    from .metrics import sign_test_p

    ups = sum(winner.per_problem.get(pid, 0.0) > score for pid, score in base.per_problem.items())
    downs = sum(winner.per_problem.get(pid, 0.0) < score for pid, score in base.per_problem.items())
    return {"flips_up": ups, "flips_down": downs, "sign_test_p": sign_test_p(ups, downs),
            "threshold": threshold(alpha, compared), "compared": compared, "alpha": alpha}


def keep(base: Candidate, candidates: Sequence[Candidate], alpha: float, compared: int | None = None) -> Decision:
    """The candidate to hand back (or the base model) and the sentence that says why. `compared`:
    how many adapters the candidates were picked from (default: the candidates)."""
    winner = best(candidates)
    if winner is None:
        return Decision(None, NO_GAIN)
    ev = paired_evidence(base, winner, alpha, compared or len(candidates))
    if winner.passed <= base.passed:
        return Decision(None, NO_GAIN, ev)
    scores = (f"validation pass@1 {winner.passed:.3f} against the base's {base.passed:.3f}, "
              f"+{ev['flips_up']}/-{ev['flips_down']} problems, one-sided sign test p={ev['sign_test_p']:.3g}")
    if ev["sign_test_p"] > ev["threshold"]:
        return Decision(None, f"{NOT_SHOWN} ({winner.label}: {scores} > {ev['threshold']:.3g}): "
                              "keeping the base model", ev)
    return Decision(winner, f"kept {winner.label}: {scores}", ev)


def per_problem(check: dict) -> dict[str, float]:
    """problem id -> pass rate, from the verdicts of a validation evaluation (its work_dir)."""
    from .records import Verdict, read_records

    if "per_problem" in check:
        return check["per_problem"]
    runs: dict[str, list[bool]] = {}
    for v in read_records(Path(check["work_dir"]) / "verdicts.jsonl", Verdict):
        runs.setdefault(v.problem_id, []).append(v.passed)
    return {pid: sum(outcomes) / len(outcomes) for pid, outcomes in sorted(runs.items())}


# -- the gate's stages, on a loop.Run (passed in: loop.py imports this module) ---------------------

def validate(run, where: Path, model: str, adapter: str | None, progress=None) -> dict:
    """pass@k of (model, adapter) on the validation problems, kept in where/validation/ (beside the
    adapter it checks, so whatever removes a round's adapter removes its validation too)."""
    check = run.evaluate(f"validation {where.name}", model, adapter, progress, problems=run.val_problems(),
                         out_dir=where / "validation")
    return dict(check, per_problem=per_problem(check))


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


def adapters_compared(config, rounds: int) -> int:
    """How many adapters the kept one is the best of: each round, times each --select value."""
    values = next(iter(config.gate.select.values()), [None])
    return max(1, rounds) * len(values)


def decide(run, base_validation: dict, round_validations: dict[int, dict]) -> dict:
    """Which model the run hands back (written to <run>/kept.json): the best round on validation
    if its gain over the base passes the sign test, else the base model."""
    from .jsonl import write_json_atomic

    candidates = []
    for r, check in sorted(round_validations.items()):
        model, adapter = run.student_after(r)
        candidates.append(Candidate(f"round {r}", check["pass_at_1"], r, adapter if adapter else model,
                                    per_problem(check)))
    base = Candidate("base", base_validation["pass_at_1"], 0, None, per_problem(base_validation))
    decision = keep(base, candidates, run.config.gate.alpha, adapters_compared(run.config, len(candidates)))
    winner = decision.kept
    model, adapter = run.student_after(winner.round) if winner else (run.config.model, None)
    kept = {"round": winner.round if winner else 0, "model": model, "adapter": adapter, "message": decision.message,
            "evidence": decision.evidence, "validation_problems": len(run.val_problems()),
            "validation_pass_at_1": {"base": base_validation["pass_at_1"],
                                     **{f"round_{r}": c["pass_at_1"] for r, c in sorted(round_validations.items())}}}
    write_json_atomic(run.dir / "kept.json", kept)
    return kept
