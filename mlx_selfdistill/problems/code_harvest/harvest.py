"""Harvest a codebase into problems, with a report of what was found, kept and dropped.

Every module-level function is considered; one with literal tests is "found"; it is kept
when it also has a docstring, a body of MIN_BODY_LINES or more, a context that resolves,
and its own body passes all its tests in the sandbox, run exactly as a candidate would be
(so a wrong docstring example drops it). The result is cached by the codebase's content, so
`--problems code:X:train` and `--eval-problems code:X:test` harvest (and sandbox) once.
"""

from __future__ import annotations

import ast
import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ...errors import UserError
from ...jsonl import write_json_atomic
from ...records import Problem
from .build import MIN_BODY_LINES, SPLITS, body_lines, make_problem, parse_split, problem_tests
from .context import ContextError, build_context
from .doctests import doctest_tests
from .modules import parse_codebase
from .testexpr import Target
from .tree import SourceTree, read_tree
from .unittests import unit_tests

HARVEST_VERSION = 1
log = logging.getLogger(__name__)

# Drop reasons, in the order they are checked.
NO_TESTS = "no literal tests"
NO_DOCSTRING = "no docstring"
SHORT_BODY = f"body under {MIN_BODY_LINES} lines"
REFERENCE_FAILS = "reference fails its tests"


@dataclass
class HarvestReport:
    package: str
    origin: str
    version: str
    files: int = 0
    test_files: int = 0
    skipped_files: list = field(default_factory=list)  # [path, why]: unreadable or unparsable
    functions: int = 0  # module-level functions considered
    found: int = 0  # with at least one literal test
    kept: int = 0
    dropped: dict = field(default_factory=dict)  # reason -> count (every function not kept)
    tests: dict = field(default_factory=dict)  # visible / hidden tests of the kept problems
    splits: dict = field(default_factory=dict)  # split -> kept problems
    reference_failures: list = field(default_factory=list)  # [id, detail], the first few

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Harvest:
    problems: list  # every kept problem, all splits
    report: HarvestReport

    def split(self, name: Optional[str]) -> list[Problem]:
        if name is None:
            return list(self.problems)
        return [p for p in self.problems if p.metadata.get("split") == name]


def _target(fn_name: str) -> Target:
    def is_target(func: ast.expr) -> bool:
        return (isinstance(func, ast.Name) and func.id == fn_name) or (
            isinstance(func, ast.Attribute) and func.attr == fn_name and isinstance(func.value, (ast.Name, ast.Attribute)))
    return Target(fn_name, is_target)


def collect(tree: SourceTree) -> tuple[list[Problem], HarvestReport]:
    """Candidate problems (before the sandbox check) and the report so far."""
    cb = parse_codebase(tree)
    report = HarvestReport(package=tree.name, origin=tree.origin, version=tree.version,
                           files=len(cb.source_modules()), test_files=len(cb.test_modules()),
                           skipped_files=[list(x) for x in tree.unreadable + cb.parse_errors])
    for p, why in report.skipped_files:
        log.warning("%s: skipped (%s)", p, why)
    functions = {(m.name, name): (m, fn) for m in cb.source_modules() for name, fn in m.functions.items()}
    report.functions = len(functions)
    from_units: dict = {}
    for key, test in unit_tests(cb, functions):
        from_units.setdefault(key, []).append(test)
    hidden_names = cb.top_level_names()
    dropped: Counter = Counter()
    problems = []
    for key, (mod, fn) in functions.items():
        doc = ast.get_docstring(fn)
        # The raw docstring, as doctest reads it: its example line numbers are then exact.
        raw = fn.body[0].value.value if doc is not None else ""
        found = (doctest_tests(raw, _target(fn.name), mod.path, fn.body[0].lineno) if doc else []) \
            + from_units.get(key, [])
        tests = problem_tests(found, fn.name) if found else []
        if not tests:
            dropped[NO_TESTS] += 1
            continue
        report.found += 1
        if doc is None:
            dropped[NO_DOCSTRING] += 1
            continue
        if body_lines(mod, fn) < MIN_BODY_LINES:
            dropped[SHORT_BODY] += 1
            continue
        try:
            context = build_context(cb, mod, fn)
        except ContextError as exc:
            dropped[exc.reason] += 1
            continue
        problems.append(make_problem(tree.name, tree.version, mod, fn, context, tests, hidden_names))
    report.dropped = dict(dropped)
    return problems, report


def check_references(problems: list[Problem], report: HarvestReport, *, workers: Optional[int] = None,
                     timeout_s: float = 5.0, progress: Optional[Callable[[int, int], None]] = None) -> list[Problem]:
    """The problems whose own reference passes every test in the sandbox."""
    from ...execution.pool import SandboxPool, default_workers

    if not problems:
        return []
    done = [0]

    def on_result(_verdict) -> None:
        done[0] += 1
        if progress:
            progress(done[0], len(problems))

    n = max(1, min(workers or default_workers(), len(problems)))
    with SandboxPool(workers=n, timeout_s=timeout_s, memory_mb=1024) as pool:
        verdicts = pool.judge_many([(p, p.canonical_solution, 0) for p in problems], on_result=on_result)
    kept = []
    for p, v in zip(problems, verdicts):
        if v.passed:
            kept.append(p)
        else:
            report.dropped[REFERENCE_FAILS] = report.dropped.get(REFERENCE_FAILS, 0) + 1
            if len(report.reference_failures) < 20:
                report.reference_failures.append([p.id, v.detail[:160]])
    return kept


def _finish(report: HarvestReport, kept: list[Problem]) -> None:
    report.kept = len(kept)
    report.tests = {"visible": sum(p.metadata["visible_tests"] for p in kept),
                    "hidden": sum(p.metadata["hidden_tests"] for p in kept)}
    report.splits = {s: sum(1 for p in kept if p.metadata["split"] == s) for s in SPLITS}
    report.dropped = dict(sorted(report.dropped.items(), key=lambda kv: -kv[1]))


def _cache_file(digest: str, cache_dir) -> Path:
    base = Path(cache_dir) if cache_dir else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlx-selfdistill"
    return base / "harvest" / f"{digest[:24]}-v{HARVEST_VERSION}.json"


def harvest(path, *, cache_dir=None, progress: Optional[Callable[[int, int], None]] = None,
            workers: Optional[int] = None, use_cache: bool = True) -> Harvest:
    """Every kept problem of the codebase at `path`, with the harvest's report."""
    path = Path(path).expanduser()
    tree = read_tree(path)
    cache = _cache_file(tree.digest(), cache_dir) if use_cache else None
    if cache is not None and cache.is_file():
        try:
            data = json.loads(cache.read_text(encoding="utf-8"))
            report = HarvestReport(**data["report"])
            report.origin = str(path)
            return Harvest([Problem.from_dict(p) for p in data["problems"]], report)
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache is redone, not trusted
    problems, report = collect(tree)
    kept = check_references(problems, report, workers=workers, progress=progress)
    _finish(report, kept)
    if cache is not None:
        try:
            write_json_atomic(cache, {"report": report.to_dict(), "problems": [p.to_dict() for p in kept]})
        except OSError as exc:
            log.warning("%s: cannot write the harvest cache (%s); pass --cache-dir", cache, exc)
    return Harvest(kept, report)


def explain_empty(report: HarvestReport) -> str:
    reasons = ", ".join(f"{k}: {v}" for k, v in report.dropped.items()) or "no functions"
    return (f"{report.origin}: no problems harvested from {report.functions} functions in {report.files} files "
            f"({reasons}); a function needs a docstring and literal tests (doctest examples or unit-test asserts)")


def harvest_spec(spec_rest: str, *, cache_dir=None, progress=None) -> tuple[Harvest, list[Problem]]:
    """The harvest of `code:PATH[:split]` and the problems of the split it names."""
    path_text, split = parse_split(spec_rest)
    if not path_text:
        raise UserError("code: needs a path, e.g. code:./mypackage or code:dist/mypkg-1.0.tar.gz[:train]")
    h = harvest(path_text, cache_dir=cache_dir, progress=progress)
    if not h.problems:
        raise UserError(explain_empty(h.report))
    chosen = h.split(split)
    if not chosen:
        raise UserError(f"code:{spec_rest}: the {split} split is empty ({len(h.problems)} problems in the whole "
                        f"harvest: {h.report.splits}); use another split or code:{path_text} for all")
    return h, chosen


def load_code(spec_rest: str, *, cache_dir=None, progress=None) -> list[Problem]:
    """The problems of `code:PATH[:train|validation|test]`."""
    return harvest_spec(spec_rest, cache_dir=cache_dir, progress=progress)[1]
