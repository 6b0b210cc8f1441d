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
from ..jsonl import JsonlWriter
from ..progress import Progress
from ..records import Problem, Sample, Verdict, in_key_order, read_records
from .pool import SandboxPool, default_workers

Problems = Union[Mapping[str, Problem], Iterable[Problem], str]


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


def verify_into_file(problems: Problems, samples: Sequence[Sample], out_path: Union[str, Path], *,
                     workers: Optional[int] = None, timeout_s: float = 5.0, memory_mb: Optional[int] = 1024,
                     on_result: Optional[Callable[[Verdict], None]] = None, **pool_options) -> tuple[list, dict]:
    """Judge the samples not yet in out_path, appending each verdict as it comes (resumable).

    Returns every verdict of the file in (problem_id, sample_index) order (not the order the
    sandbox finished them in) and what this call did: judged, skipped, seconds, protections.
    A sample listed twice is judged once."""
    _workers(workers, timeout_s, 1)
    verdicts = read_records(out_path, Verdict, missing_ok=True)
    done = {v.key for v in verdicts}
    seen, todo = set(done), []
    for s in samples:
        if s.key not in seen:
            seen.add(s.key)
            todo.append(s)
    pairs = _pairs(as_problem_map(problems), todo)
    t0 = time.perf_counter()
    protections: dict = {}
    if pairs:
        n = _workers(workers, timeout_s, len(pairs))
        with SandboxPool(workers=n, timeout_s=timeout_s, memory_mb=memory_mb, **pool_options) as pool, \
                JsonlWriter(out_path) as writer:
            protections = pool.protections

            def record(v: Verdict) -> None:
                writer.write(v)
                verdicts.append(v)
                if on_result:
                    on_result(v)

            pool.judge_many(pairs, on_result=record)
    info = {"judged": len(todo), "skipped": len(done), "seconds": time.perf_counter() - t0,
            "protections": protections}
    return in_key_order(verdicts), info


def verify_file(problems: Problems, samples_path: Union[str, Path], out_path: Union[str, Path], *,
                workers: Optional[int] = None, timeout_s: float = 5.0, memory_mb: Optional[int] = 1024,
                progress: Progress = None, **pool_options) -> dict:
    """Judge every sample of samples_path not yet in out_path; returns a summary dict."""
    samples = read_records(samples_path, Sample)
    todo = len({s.key for s in samples} - {v.key for v in read_records(out_path, Verdict, missing_ok=True)})
    counts: Counter = Counter()
    if progress:
        progress("verify", {"total": todo, "advance": 0})

    def on_result(v: Verdict) -> None:
        counts[v.status] += 1
        if progress:
            progress("verify", {"total": todo, "advance": 1, "text": f"{counts['pass']} pass"})

    verdicts, info = verify_into_file(problems, samples, out_path, workers=workers, timeout_s=timeout_s,
                                      memory_mb=memory_mb, on_result=on_result, **pool_options)
    seconds = info["seconds"]
    by_status = Counter(v.status for v in verdicts)
    total = len(verdicts)
    return {
        "samples": len(samples),
        "judged": info["judged"],
        "skipped": info["skipped"],
        "verdicts": total,
        "by_status": dict(sorted(by_status.items())),
        "pass_rate": round(by_status.get("pass", 0) / total, 4) if total else 0.0,
        "problems_passed": len({v.problem_id for v in verdicts if v.passed}),
        "seconds": round(seconds, 3),
        "candidates_per_s": round(info["judged"] / seconds, 1) if info["judged"] and seconds > 0 else None,
        "protections": info["protections"],
        "out": str(out_path),
    }
