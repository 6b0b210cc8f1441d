"""Literal tests from a function's docstring examples (`>>> f(...)` followed by a literal).

Examples are read with the standard doctest parser and judged one by one. An example whose
output is not a Python literal (a custom object's repr, a print, a traceback) or whose call
is not literal is left out. A variable bound to the function's result (`>>> g = f(3)`) makes
the examples that use it one session: they become one test, run in order, since a generator
consumed by several `next()` calls cannot be split into independent calls.
"""

from __future__ import annotations

import ast
import copy
import doctest
from dataclasses import dataclass

from .testexpr import Target, actual_expr, assert_line, is_literal, literal, safe_arg, uses_session

_PARSER = doctest.DocTestParser()


@dataclass
class FoundTest:
    code: str  # assert statement(s) naming the function
    origin: str  # doctest / unittest / pytest
    where: str  # file:line
    hidden: bool


def _examples(docstring: str):
    try:
        return _PARSER.get_examples(docstring)
    except ValueError:  # inconsistent indentation and the like: the docstring is not a doctest
        return []


def doctest_tests(docstring: str, target: Target, path: str, first_line: int) -> list[FoundTest]:
    out: list[FoundTest] = []
    constants: dict = {}  # name -> the literal (or lambda) node an example bound it to
    session: set = set()
    session_lines: list = []
    session_asserts = 0
    session_start = None
    for ex in _examples(docstring):
        where = f"{path}:{first_line + ex.lineno}"
        if ex.options.get(doctest.SKIP):
            continue
        try:
            tree = ast.parse(ex.source)
        except SyntaxError:
            continue
        if len(tree.body) != 1:
            continue
        stmt = _inline(tree.body[0], constants)
        want = ex.want.strip()
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name = stmt.targets[0].id
            session.discard(name)
            constants.pop(name, None)
            if safe_arg(stmt.value):  # a literal, or a lambda over builtins: inlined where used
                constants[name] = stmt.value
                continue
            bound = actual_expr(stmt.value, target, frozenset(session))
            if bound is not None:
                session.add(name)
                session_lines.append(f"{name} = {ast.unparse(bound)}")
                session_start = session_start or where
            continue
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue
        if not isinstance(stmt, ast.Expr) or not want or want.startswith("Traceback"):
            for n in ast.walk(stmt):  # names an unknown statement rebinds are no longer known
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    session.discard(n.id)
                    constants.pop(n.id, None)
            continue
        if ex.options.get(doctest.ELLIPSIS) and "..." in want:
            continue
        try:
            expected_node = ast.parse(" ".join(want.split()) if "\n" in want else want, mode="eval").body
        except SyntaxError:
            continue
        expected = literal(expected_node)
        if not is_literal(expected_node):
            continue
        actual = actual_expr(stmt.value, target, frozenset(session))
        if actual is None:
            continue
        line = assert_line(actual, expected)
        if uses_session(actual, frozenset(session)):
            session_lines.append(line)
            session_asserts += 1
        else:
            out.append(FoundTest(line, "doctest", where, hidden=False))
    if session_asserts:
        out.append(FoundTest("\n".join(session_lines), "doctest", session_start or path, hidden=False))
    return out


class _Inline(ast.NodeTransformer):
    def __init__(self, constants: dict):
        self.constants = constants

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load) and node.id in self.constants:
            return ast.copy_location(copy.deepcopy(self.constants[node.id]), node)
        return node


def _inline(stmt: ast.stmt, constants: dict) -> ast.stmt:
    if not constants:
        return stmt
    return ast.fix_missing_locations(_Inline(constants).visit(stmt))
