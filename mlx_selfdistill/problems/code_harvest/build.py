"""One harvested function as a Problem: HumanEval's shape, its setup, its tests, its split.

The prompt shows the context (imports, constants, helpers) above the function's signature
and docstring, body hidden. The docstring's examples are the visible tests; the unit-test
asserts are graded but held out of the prompt (`"hidden": true` on the test). The split is
a hash of the function's file path, so a held-out file's functions are never trained on.
"""

from __future__ import annotations

import ast
import hashlib
import json
import textwrap
from typing import Optional

from ...records import Problem
from .context import Context
from .doctests import FoundTest
from .guard import guard_code
from .modules import Module
from .testexpr import tests_from_code

SPLITS = ("train", "validation", "test")
SPLIT_SHARES = (0.7, 0.1, 0.2)
MIN_BODY_LINES = 3
MAX_TESTS = 100


def split_of(path: str) -> str:
    """train / validation / test, fixed by the file's path (the same on every machine)."""
    x = int(hashlib.sha256(path.encode("utf-8")).hexdigest()[:8], 16) / 0x1_0000_0000
    edge = 0.0
    for name, share in zip(SPLITS, SPLIT_SHARES):
        edge += share
        if x < edge:
            return name
    return SPLITS[-1]


def instruction(name: str, has_context: bool) -> str:
    text = f"Complete the Python function `{name}` below: keep its signature and make it do what its docstring says."
    if has_context:
        text += " The imports, constants and helpers above it are already defined; reply with the function."
    return text


def _lines(mod: Module, start: int, end: int) -> str:
    return "\n".join(mod.lines[start - 1:end])


def body_lines(mod: Module, fn: ast.FunctionDef) -> int:
    """Lines of code in the body after the docstring (blank and comment lines not counted)."""
    body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
    if not body:
        return 0
    text = _lines(mod, body[0].lineno, fn.end_lineno)
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


def stub(mod: Module, fn: ast.FunctionDef) -> str:
    """Decorators, signature and docstring, as written, body removed."""
    start = min([d.lineno for d in fn.decorator_list] + [fn.lineno])
    end = fn.body[0].end_lineno if ast.get_docstring(fn) is not None else fn.body[0].lineno - 1
    return textwrap.dedent(_lines(mod, start, end)).rstrip() + "\n"


def solution(mod: Module, fn: ast.FunctionDef) -> str:
    start = min([d.lineno for d in fn.decorator_list] + [fn.lineno])
    return textwrap.dedent(_lines(mod, start, fn.end_lineno)).rstrip() + "\n"


def problem_tests(found: list[FoundTest], name: str) -> list[dict]:
    """The found asserts as test records, duplicates removed, visible ones first."""
    out, seen = [], set()
    for t in sorted(found, key=lambda t: t.hidden):
        for rec in tests_from_code(t.code, name):
            rec = dict(rec, origin=t.origin, where=t.where, hidden=t.hidden)
            key = json.dumps({k: rec[k] for k in ("type", "input", "output", "code") if k in rec}, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(rec)
    return out[:MAX_TESTS]


def make_problem(package: str, version: str, mod: Module, fn: ast.FunctionDef, context: Context,
                 tests: list[dict], hidden_names) -> Problem:
    shown = context.code.rstrip()
    starter = (shown + "\n\n\n" if shown else "") + stub(mod, fn)
    setup = "from __future__ import annotations\n\n" + guard_code(hidden_names) + "\n" + context.code
    visible = sum(1 for t in tests if not t["hidden"])
    return Problem(
        id=f"{package}/{mod.path}::{fn.name}", prompt=instruction(fn.name, bool(shown)), tests=tests,
        starter_code=starter, entry_point=fn.name, source="code", canonical_solution=solution(mod, fn),
        metadata={"setup": setup, "file": mod.path, "line": fn.lineno, "package": package, "version": version,
                  "split": split_of(mod.path), "visible_tests": visible, "hidden_tests": len(tests) - visible,
                  "helpers": context.names, "imports": context.modules, "hidden_modules": sorted(hidden_names)},
    )


def parse_split(spec_rest: str) -> tuple[str, Optional[str]]:
    """'PATH[:train|validation|test]' -> (path, split or None)."""
    head, sep, tail = spec_rest.rpartition(":")
    if sep and tail in SPLITS:
        return head, tail
    return spec_rest, None
