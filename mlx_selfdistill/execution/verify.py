"""Library entry points: judge samples in memory, or a samples file into a verdicts file.

verify_file is resumable: verdicts already in the output file are kept and their samples
skipped; each new verdict is appended (and flushed) as soon as it is ready.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

from ..errors import UserError
from ..jsonl import JsonlWriter, iter_jsonl
from ..records import Problem, Sample, Verdict
from .pool import SandboxPool, default_workers

Problems = Union[Mapping[str, Problem], Iterable[Problem], str]
Progress = Optional[Callable[[str, dict], None]]


def as_problem_map(problems: Problems) -> dict[str, Problem]:
    if isinstance(problems, str):
        from ..problems import load_problems

        problems = load_problems(problems)
    if isinstance(problems, Mapping):
        return dict(problems)
    return {p.id: p for p in problems}


def _workers(workers: Optional[int], timeout_s: float, jobs: int) -> int:
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    return max(1, min(workers or default_workers(), jobs))


def _pairs(problem_map: dict, samples: Sequence[Sample]) -> list[tuple[Problem, Sample]]:
    missing = sorted({s.problem_id for s in samples if s.problem_id not in problem_map})
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise UserError(f"samples refer to problems not in the problem source: {', '.join(missing[:3])}{more}; "
                        "pass the --problems source the samples were drawn from")
    return [(problem_map[s.problem_id], s) for s in samples]


def verify_samples(problems: Problems, samples: Sequence[Sample], *, workers: Optional[int] = None,
                   timeout_s: float = 5.0, memory_mb: Optional[int] = 1024,
                   on_result: Optional[Callable[[Verdict], None]] = None, pool: Optional[SandboxPool] = None,
                   **pool_options) -> list[Verdict]:
    """One Verdict per sample, in order. Starts a pool for the call unless one is given."""
    pairs = _pairs(as_problem_map(problems), list(samples))
    if not pairs:
        return []
    if pool is not None:
        return pool.judge_many(pairs, on_result=on_result)
    n = _workers(workers, timeout_s, len(pairs))
    with SandboxPool(workers=n, timeout_s=timeout_s, memory_mb=memory_mb, **pool_options) as own:
        return own.judge_many(pairs, on_result=on_result)


def read_samples(path: Union[str, Path]) -> list[Sample]:
    return [Sample.from_dict(obj, path=path, line=line) for line, obj in iter_jsonl(path, allow_partial_tail=True)]


def read_verdicts(path: Union[str, Path]) -> list[Verdict]:
    if not Path(path).exists():
        return []
    return [Verdict.from_dict(obj, path=path, line=line) for line, obj in iter_jsonl(path, allow_partial_tail=True)]


def verify_file(problems: Problems, samples_path: Union[str, Path], out_path: Union[str, Path], *,
                workers: Optional[int] = None, timeout_s: float = 5.0, memory_mb: Optional[int] = 1024,
                progress: Progress = None, **pool_options) -> dict:
    """Judge every sample of samples_path not yet in out_path; returns a summary dict."""
    _workers(workers, timeout_s, 1)
    samples = read_samples(samples_path)
    problem_map = as_problem_map(problems)
    done = {v.key for v in read_verdicts(out_path)}
    seen, todo = set(done), []
    for s in samples:  # a sample listed twice is judged once
        if s.key not in seen:
            seen.add(s.key)
            todo.append(s)
    pairs = _pairs(problem_map, todo)
    t0 = time.perf_counter()
    protections: dict = {}
    if progress:
        progress("verify", {"total": len(todo), "advance": 0})
    if pairs:
        n = _workers(workers, timeout_s, len(pairs))
        with SandboxPool(workers=n, timeout_s=timeout_s, memory_mb=memory_mb, **pool_options) as pool, \
                JsonlWriter(out_path) as writer:
            protections = pool.protections
            counts: Counter = Counter()

            def on_result(v: Verdict) -> None:
                writer.write(v)
                counts[v.status] += 1
                if progress:
                    progress("verify", {"total": len(todo), "advance": 1,
                                        "text": f"{counts['pass']} pass"})

            pool.judge_many(pairs, on_result=on_result)
    seconds = time.perf_counter() - t0
    verdicts = read_verdicts(out_path)
    by_status = Counter(v.status for v in verdicts)
    total = len(verdicts)
    return {
        "samples": len(samples),
        "judged": len(todo),
        "skipped": len(done),
        "verdicts": total,
        "by_status": dict(sorted(by_status.items())),
        "pass_rate": round(by_status.get("pass", 0) / total, 4) if total else 0.0,
        "problems_passed": len({v.problem_id for v in verdicts if v.passed}),
        "seconds": round(seconds, 3),
        "candidates_per_s": round(len(todo) / seconds, 1) if todo and seconds > 0 else None,
        "protections": protections,
        "out": str(out_path),
    }
