"""When an expression is a literal test of a function, and how it becomes an assert line.

A test calls the harvested function on arguments that are Python literals (or builtins,
lambdas over builtins, `iter`/`range` of literals) and compares the result, possibly
wrapped in `list`, `sorted`, `set`, ... (a generator's result), with a literal. Anything
else (fixtures, package objects, custom reprs) is not a literal test and is left out.
Each test is written as one `assert` statement naming the function; the project's assert
parser then turns the plain ones into call tests the sandbox grades one by one.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from typing import Callable, Optional

from ..assert_parser import AssertParseError, parse_test_script

WRAPPERS = {"list", "sorted", "set", "tuple", "frozenset", "dict", "next", "len", "str", "repr", "bool"}
SAFE_CALLS = {"iter", "range", "reversed", "list", "tuple", "set", "frozenset", "dict", "str", "int", "float",
              "complex", "bytes", "bytearray", "zip", "enumerate", "sorted", "len", "abs", "min", "max", "sum"}
UNSAFE_BUILTINS = {"print", "open", "input", "exec", "eval", "compile", "exit", "quit", "breakpoint", "globals",
                   "locals", "vars", "__import__", "help", "setattr", "delattr", "memoryview", "id", "hash",
                   "object", "type", "super", "classmethod", "staticmethod", "property", "dir", "getattr",
                   "hasattr", "isinstance", "issubclass", "callable", "format", "NotImplemented", "Ellipsis",
                   "copyright", "credits", "license"}
SAFE_NAMES = set(dir(builtins)) - UNSAFE_BUILTINS
_NO = object()  # "not a literal"


def literal(node: ast.AST):
    """The value of a literal node, or _NO."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NO


def is_literal(node: ast.AST) -> bool:
    return literal(node) is not _NO


def literal_node(value) -> ast.expr:
    return ast.parse(repr(value), mode="eval").body


def safe_arg(node: ast.AST) -> bool:
    """A literal, or something as deterministic and self-contained as one."""
    if is_literal(node):
        return True
    if isinstance(node, ast.Name):
        return node.id in SAFE_NAMES
    if isinstance(node, ast.Attribute):  # str.upper, operator-like methods of builtins
        base = node.value
        return isinstance(base, ast.Name) and base.id in SAFE_NAMES and not node.attr.startswith("_")
    if isinstance(node, ast.Lambda):
        bound = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
        return all(n.id in bound or n.id in SAFE_NAMES for n in ast.walk(node.body) if isinstance(n, ast.Name)) \
            and not any(isinstance(n, (ast.Await, ast.Yield, ast.NamedExpr)) for n in ast.walk(node.body))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SAFE_CALLS:
        return all(safe_arg(a) for a in node.args) and all(safe_arg(k.value) for k in node.keywords)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return all(safe_arg(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and safe_arg(k) and safe_arg(v) for k, v in zip(node.keys, node.values))
    if isinstance(node, ast.Starred):
        return safe_arg(node.value)
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):  # [0] * 5, -x, 2 ** 10
        return all(safe_arg(c) for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr))
    return False


@dataclass
class Target:
    """How to recognise a call to the harvested function in a test's namespace."""
    name: str  # the function's name (what the assert line calls)
    is_target: Callable[[ast.expr], bool]  # does this callee expression name it?


def actual_expr(node: ast.AST, target: Target, session: frozenset = frozenset()) -> Optional[ast.expr]:
    """`node` rewritten to call the function by its name, if it is a literal test expression.
    `session` names variables bound to earlier results (a doctest's `g = f(x)`)."""
    if isinstance(node, ast.Name) and node.id in session:
        return node
    if isinstance(node, ast.Subscript) and is_literal(node.slice):
        inner = actual_expr(node.value, target, session)
        return ast.Subscript(value=inner, slice=node.slice, ctx=ast.Load()) if inner is not None else None
    if not isinstance(node, ast.Call):
        return None
    if target.is_target(node.func):
        if all(safe_arg(a) for a in node.args) and all(k.arg is not None and safe_arg(k.value)
                                                          for k in node.keywords):
            return ast.Call(func=ast.Name(id=target.name, ctx=ast.Load()), args=_spread(node.args),
                            keywords=node.keywords)
        return None
    if (isinstance(node.func, ast.Name) and node.func.id in WRAPPERS and len(node.args) == 1
            and all(safe_arg(k.value) for k in node.keywords)):
        inner = actual_expr(node.args[0], target, session)
        if inner is not None:
            return ast.Call(func=node.func, args=[inner], keywords=node.keywords)
    return None


def _spread(args: list) -> list:
    """`f(*([1, 2], 3))` (a parametrize row spread into a call) as `f([1, 2], 3)`."""
    out = []
    for a in args:
        if isinstance(a, ast.Starred) and isinstance(a.value, (ast.List, ast.Tuple)):
            out.extend(a.value.elts)
        else:
            out.append(a)
    return out


def uses_session(node: ast.AST, session: frozenset) -> bool:
    return any(isinstance(n, ast.Name) and n.id in session for n in ast.walk(node))


def assert_line(actual: ast.expr, expected, *, compare: str = "eq") -> str:
    """`assert <actual> == <expected>` (or truthy / falsy / identity with None)."""
    a = ast.unparse(actual)
    if compare == "truthy":
        return f"assert {a}"
    if compare == "falsy":
        return f"assert not {a}"
    if expected is None:
        return f"assert {a} is None"
    return f"assert {a} == {ast.unparse(literal_node(expected))}"


def tests_from_code(code: str, entry_point: str) -> list[dict]:
    """One harvested assert (or session script) as the project's test records."""
    try:
        return parse_test_script(code, entry_point)
    except AssertParseError:
        return []
