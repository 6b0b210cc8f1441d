"""MBPP, full (text, code, task_id, test_list, test_setup_code, challenge_test_list) and
sanitized (prompt, code, task_id, test_imports, test_list).

The function name is not a field: it is read from the asserts. The prompt shows the
first assert, as EvalPlus does, so the model knows the name and the call shape.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..records import Problem
from .assert_parser import entry_point_from_asserts
from .common import require_tests, tests_from_script
from .readers import field, iter_rows


def mbpp_prompt(text: str, first_test: str) -> str:
    return f"{text.strip()}\nYour code should pass this test:\n{first_test.strip()}"


def _defined_and_called(code, test_list: list[str]) -> str | None:
    """A function the reference solution defines and the asserts call: the entry point of a task
    that names its function after a builtin (MBPP 126 defines `sum`), which the asserts alone
    cannot tell from a builtin call."""
    import ast

    try:
        defined = [n.name for n in ast.parse(code or "").body if isinstance(n, ast.FunctionDef)]
        called = {n.func.id for t in test_list for n in ast.walk(ast.parse(t))
                  if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    except SyntaxError:
        return None
    return next((name for name in defined if name in called), None)


def load_mbpp(path: str | Path, *, source: str = "mbpp") -> list[Problem]:
    problems = []
    for line, row in iter_rows(path):
        sanitized = "prompt" in row and "text" not in row
        text = field(row, "prompt" if sanitized else "text", path, line, str)
        task_id = field(row, "task_id", path, line, (int, str))
        test_list = field(row, "test_list", path, line, list)
        if not test_list or not all(isinstance(t, str) for t in test_list):
            raise DataError(path, "expected a non-empty list of assert strings", line=line, field="test_list")
        entry = entry_point_from_asserts(test_list) or _defined_and_called(row.get("code"), test_list)
        if entry is None:
            raise DataError(path, "cannot find the tested function's name in the asserts", line=line,
                            field="test_list")
        if sanitized:
            setup = "\n".join(field(row, "test_imports", path, line, list, default=[]))
        else:
            setup = field(row, "test_setup_code", path, line, str, default="")
        challenge = field(row, "challenge_test_list", path, line, list, default=[])
        script = (setup.rstrip() + "\n" if setup.strip() else "") + "\n".join(test_list)
        tests = tests_from_script(script, entry, path, line, "test_list")
        if challenge:
            extra = tests_from_script((setup.rstrip() + "\n" if setup.strip() else "") + "\n".join(challenge),
                                      entry, path, line, "challenge_test_list")
            tests += [dict(t, group="challenge") for t in extra]
        problems.append(Problem(
            id=f"Mbpp/{task_id}", prompt=mbpp_prompt(text, test_list[0]), tests=require_tests(tests, path, line, "test_list"),
            entry_point=entry, source=source, canonical_solution=field(row, "code", path, line, str, default=None),
            metadata={"variant": "sanitized" if sanitized else "full"},
        ))
    return problems
