"""Which samples become training data.

Filters compose, applied in the order given, after the health filters:

- health (always, unless disabled): drop samples that never stopped (hit max_tokens),
  ran away repeating themselves, or have no code.
- none: the paper's SSD — keep raw outputs, dropping only empty ones and the shortest
  `drop_shortest` fraction.
- tests: keep samples whose verdict is pass; optionally dedup identical code per problem
  and cap the number kept per problem.
- confidence: keep the top `keep_fraction` by mean log-probability under the model.
- length: keep samples with min_tokens <= num_tokens <= max_tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional

from .errors import UserError
from .prompts import get_style
from .records import Problem, Sample, Verdict, in_key_order

FILTERS = ("none", "tests", "confidence", "length")


@dataclass
class FilterConfig:
    filters: list = field(default_factory=lambda: ["tests"])
    health: bool = True
    drop_shortest: float = 0.1  # SSD: fraction of the shortest outputs dropped
    dedup: bool = True  # tests: identical code (modulo whitespace) kept once per problem
    max_per_problem: Optional[int] = None
    keep_fraction: float = 0.5  # confidence
    min_tokens: int = 1  # length
    max_tokens: Optional[int] = None

    def __post_init__(self):
        if isinstance(self.filters, str):
            self.filters = [f.strip() for f in self.filters.split(",") if f.strip()]
        unknown = [f for f in self.filters if f not in FILTERS]
        if unknown:
            raise UserError(f"unknown filter {unknown[0]!r}: use one of {', '.join(FILTERS)}")
        if not 0 <= self.drop_shortest < 1:
            raise UserError("drop_shortest must be in [0, 1)")
        if not 0 < self.keep_fraction <= 1:
            raise UserError("keep_fraction must be in (0, 1]")


def _normalized(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())


def _health(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.finish_reason == "stop" and s.code.strip()]


def _ssd(samples: list[Sample], drop_shortest: float) -> list[Sample]:
    nonempty = [s for s in samples if s.completion.strip()]
    cut = math.floor(len(nonempty) * drop_shortest)
    if cut == 0:
        return nonempty
    # Stable: ties in length keep key order (filter_samples sorted the input).
    by_length = sorted(range(len(nonempty)), key=lambda i: (nonempty[i].num_tokens, i))
    dropped = set(by_length[:cut])
    return [s for i, s in enumerate(nonempty) if i not in dropped]


def _tests(samples, verdicts: dict, dedup: bool, cap: Optional[int]) -> list[Sample]:
    kept, seen, per_problem = [], set(), {}
    for s in samples:
        v = verdicts.get(s.key)
        if v is None or not v.passed:
            continue
        if dedup:
            key = (s.problem_id, _normalized(s.code))
            if key in seen:
                continue
            seen.add(key)
        if cap is not None and per_problem.get(s.problem_id, 0) >= cap:
            continue
        per_problem[s.problem_id] = per_problem.get(s.problem_id, 0) + 1
        kept.append(s)
    return kept


def _confidence(samples: list[Sample], keep_fraction: float) -> list[Sample]:
    scored = [s for s in samples if s.mean_logprob is not None]
    n = math.ceil(len(scored) * keep_fraction)
    best = sorted(range(len(scored)), key=lambda i: (-scored[i].mean_logprob, i))[:n]
    keep = set(best)
    return [s for i, s in enumerate(scored) if i in keep]


def _length(samples, lo: int, hi: Optional[int]) -> list[Sample]:
    return [s for s in samples if s.num_tokens >= lo and (hi is None or s.num_tokens <= hi)]


def filter_samples(samples: Iterable[Sample], verdicts: Iterable[Verdict] | None = None,
                   config: FilterConfig | None = None) -> tuple[list[Sample], dict]:
    """Apply the health filters then each configured filter; returns (kept, counts per stage).

    Kept samples come in (problem_id, sample_index) order, whatever order they were given in,
    so ties (dedup's first copy, equal lengths or confidences) and the training data's order
    depend only on the samples' content."""
    config = config or FilterConfig()
    current = in_key_order(samples)
    stats = {"input": len(current)}
    if config.health:
        current = _health(current)
        stats["after_health"] = len(current)
    by_key = {v.key: v for v in (verdicts or [])}
    for name in config.filters:
        if name == "none":
            current = _ssd(current, config.drop_shortest)
        elif name == "tests":
            if not by_key and current:
                raise UserError("the 'tests' filter needs verdicts: run verify first")
            current = _tests(current, by_key, config.dedup, config.max_per_problem)
        elif name == "confidence":
            current = _confidence(current, config.keep_fraction)
        elif name == "length":
            current = _length(current, config.min_tokens, config.max_tokens)
        stats[f"after_{name}"] = len(current)
    stats["kept"] = len(current)
    return current, stats


def to_train_examples(kept: Iterable[Sample], problems: dict[str, Problem]) -> list[dict]:
    """Chat examples (what mlx_lm.lora reads) whose assistant turn is the raw completion, in the
    format of the prompt style it was sampled with (a pre-filled reply is part of the turn)."""
    examples = []
    for s in kept:
        problem = problems.get(s.problem_id)
        if problem is None:
            raise UserError(f"sample for unknown problem {s.problem_id!r}: wrong --problems source?")
        style = get_style(s.prompt_style or None)
        examples.append({"messages": style.train_messages(problem, s.completion)})
    return examples
