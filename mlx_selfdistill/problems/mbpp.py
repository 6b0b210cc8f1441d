"""MBPP, full (text, code, task_id, test_list, test_setup_code, challenge_test_list) and
sanitized (prompt, code, task_id, test_imports, test_list), with the paper's splits.

The function name is not a field: it is read from the asserts (preferring a name the
reference solution defines). The prompt shows the first assert, as EvalPlus does, so the
model knows the name and the call shape. A record that cannot be used is skipped with a
one-line warning (skipped.py); it never aborts the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import DataError, UserError
from ..records import Problem
from .assert_parser import defined_functions, entry_point_from_asserts
from .common import require_tests, tests_from_script
from .readers import field, iter_rows
from .skipped import skip

# Austin et al. (arXiv 2108.07732), by task_id: few-shot prompt, test, validation, train.
SPLITS = {"prompt": range(1, 11), "test": range(11, 511), "validation": range(511, 601), "train": range(601, 975)}


def check_split(split: Optional[str]) -> Optional[str]:
    if split not in (None, "", *SPLITS):
        raise UserError(f"unknown MBPP split {split!r}: use one of {', '.join(SPLITS)}")
    return split or None


def in_split(task_id, split: Optional[str]) -> bool:
    if split is None:
        return True
    try:
        number = int(str(task_id).rsplit("/", 1)[-1])
    except ValueError:
        return False
    return number in SPLITS[split]


def mbpp_prompt(text: str, first_test: str) -> str:
    return f"{text.strip()}\nYour code should pass this test:\n{first_test.strip()}"


def load_mbpp(path: str | Path, *, source: str = "mbpp", split: Optional[str] = None) -> list[Problem]:
    """The records of one MBPP file (those of `split`, when given: train, validation, test, prompt)."""
    split = check_split(split)
    problems = []
    for line, row in iter_rows(path):
        try:
            problem = _problem(row, path, line, source)
        except DataError as exc:
            skip(path, line, str(exc).split(": ", 1)[-1])
            continue
        if in_split(row.get("task_id"), split):
            problems.append(problem)
    return problems


def _problem(row: dict, path, line: int, source: str) -> Problem:
    sanitized = "prompt" in row and "text" not in row
    text = field(row, "prompt" if sanitized else "text", path, line, str)
    task_id = field(row, "task_id", path, line, (int, str))
    test_list = field(row, "test_list", path, line, list)
    if not test_list or not all(isinstance(t, str) for t in test_list):
        raise DataError(path, "expected a non-empty list of assert strings", line=line, field="test_list")
    code = field(row, "code", path, line, str, default=None)
    entry = entry_point_from_asserts(test_list, defined_functions(code or ""))
    if entry is None:
        raise DataError(path, "cannot find the tested function's name in the asserts", line=line, field="test_list")
    if sanitized:
        setup = "\n".join(field(row, "test_imports", path, line, list, default=[]))
    else:
        setup = field(row, "test_setup_code", path, line, str, default="")
    head = setup.rstrip() + "\n" if setup.strip() else ""
    tests = tests_from_script(head + "\n".join(test_list), entry, path, line, "test_list")
    challenge = field(row, "challenge_test_list", path, line, list, default=[])
    if challenge:
        extra = tests_from_script(head + "\n".join(challenge), entry, path, line, "challenge_test_list")
        tests += [dict(t, group="challenge") for t in extra]
    return Problem(
        id=f"Mbpp/{task_id}", prompt=mbpp_prompt(text, test_list[0]), tests=require_tests(tests, path, line, "test_list"),
        entry_point=entry, source=source, canonical_solution=code,
        metadata={"variant": "sanitized" if sanitized else "full"},
    )
