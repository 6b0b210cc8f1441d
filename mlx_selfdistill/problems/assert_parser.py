"""Turn assert-style test scripts into structured tests, with `ast` only.

HumanEval's `check(candidate)`, MBPP's `assert f(...) == ...` lines and the EvalPlus
hub scripts (`inputs = [...]`, `results = [...]`, a loop calling `assertion(...)`) are
code. Most of their asserts have one of a few shapes that say "calling the function on
these literal arguments gives this literal value"; those become call tests, which the
sandbox grades one by one and can report per test. Whatever does not fit stays code, in
one assert test that keeps the script's imports and helpers.

Nothing here runs the script: literals are read with `ast.literal_eval` on literal nodes.

Call tests may carry extra keys the grader honours:
  "atol" / "rtol": float tolerance (from `abs(f(x) - y) < tol`, `math.isclose`, EvalPlus atol)
  "compare": "truthy": pass when bool(result) == output (from `assert f(x)` / `assert not f(x)`)
A value becomes JSON only if it survives a JSON round trip unchanged (so tuples, sets,
dicts with non-string keys, NaN stay in assert code, where Python compares them exactly).
"""

from __future__ import annotations

import ast
import builtins
import copy
import json
from typing import Any, Iterable, Optional

from ..pyparse import parse_quietly

_NO = object()  # "not a literal"
# EvalPlus compares float results with this tolerance when its atol is 0.
EVALPLUS_FLOAT_ATOL = 1e-6


class AssertParseError(ValueError):
    """The test script is not valid Python."""


def json_exact(value: Any) -> bool:
    """True if the value comes back from JSON equal and of the same shape."""
    try:
        return json.loads(json.dumps(value, allow_nan=False)) == value
    except (TypeError, ValueError, RecursionError):
        return False


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NO


def _candidate_call(node: ast.AST, names: set[str]) -> Optional[list]:
    """The literal positional arguments of `candidate(...)`, or None if not that shape."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names):
        return None
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        return None
    args = []
    for a in node.args:
        v = _literal(a)
        if v is _NO or not json_exact(v):
            return None
        args.append(v)
    return args


def _number(node: ast.AST) -> Any:
    v = _literal(node)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not json_exact(v):
        return _NO
    return v


def _abs_diff(node: ast.AST, names: set[str]):
    """`abs(candidate(x) - y)` or `abs(y - candidate(x))` -> (args, y), else None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "abs"
            and len(node.args) == 1 and not node.keywords):
        return None
    inner = node.args[0]
    if not (isinstance(inner, ast.BinOp) and isinstance(inner.op, ast.Sub)):
        return None
    for call, other in ((inner.left, inner.right), (inner.right, inner.left)):
        args = _candidate_call(call, names)
        if args is not None:
            y = _number(other)
            if y is not _NO:
                return args, y
    return None


def assert_to_call_test(node: ast.Assert, names: Iterable[str]) -> Optional[dict]:
    """One `assert` statement as a call test, or None when its shape is not one we know."""
    names = set(names)
    test = node.test
    # assert candidate(x)  /  assert not candidate(x)
    args = _candidate_call(test, names)
    if args is not None:
        return {"type": "call", "input": args, "output": True, "compare": "truthy"}
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        args = _candidate_call(test.operand, names)
        if args is not None:
            return {"type": "call", "input": args, "output": False, "compare": "truthy"}
    # math.isclose(candidate(x), y[, abs_tol=, rel_tol=])
    if (isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute) and test.func.attr == "isclose"
            and isinstance(test.func.value, ast.Name) and test.func.value.id == "math" and len(test.args) == 2):
        for call, other in ((test.args[0], test.args[1]), (test.args[1], test.args[0])):
            args = _candidate_call(call, names)
            y = _number(other)
            if args is None or y is _NO:
                continue
            out = {"type": "call", "input": args, "output": y, "rtol": 1e-9, "atol": 0.0}
            for kw in test.keywords:
                tol = _number(kw.value)
                if kw.arg not in ("abs_tol", "rel_tol") or tol is _NO:
                    return None
                out["atol" if kw.arg == "abs_tol" else "rtol"] = float(tol)
            return out
        return None
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    op, left, right = test.ops[0], test.left, test.comparators[0]
    # candidate(x) == y  /  y == candidate(x)
    if isinstance(op, ast.Eq):
        for call, other in ((left, right), (right, left)):
            args = _candidate_call(call, names)
            if args is None:
                continue
            y = _literal(other)
            if y is _NO or not json_exact(y):
                return None
            return {"type": "call", "input": args, "output": y}
        return None
    # abs(candidate(x) - y) < tol
    if isinstance(op, (ast.Lt, ast.LtE)):
        found, tol = _abs_diff(left, names), _number(right)
        if found is not None and tol is not _NO:
            args, y = found
            return {"type": "call", "input": args, "output": y, "atol": float(tol)}
    return None


def _is_trivial(stmt: ast.stmt) -> bool:
    """`assert True`, a docstring, `pass`: nothing to grade."""
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return True
    return isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Constant) and stmt.test.value is True


def _grades_something(stmts: list[ast.stmt]) -> bool:
    return any(isinstance(n, (ast.Assert, ast.Call, ast.Raise)) for s in stmts for n in ast.walk(s))


def _assigned_literal(stmt: ast.stmt, name: str) -> Any:
    if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == name):
        v = _literal(stmt.value)
        return v if isinstance(v, (list, tuple)) else _NO
    return _NO


def _evalplus_loop(stmt: ast.stmt, names: set[str]) -> Any:
    """The atol of `for ... in ...zip(inputs, results)...: assertion(candidate(*inp), exp, atol)`."""
    if not (isinstance(stmt, ast.For) and len(stmt.body) == 1 and not stmt.orelse):
        return _NO
    iter_names = {n.id for n in ast.walk(stmt.iter) if isinstance(n, ast.Name)}
    if not {"inputs", "results"} <= iter_names:
        return _NO
    body = stmt.body[0]
    if not (isinstance(body, ast.Expr) and isinstance(body.value, ast.Call)):
        return _NO
    call = body.value
    if not (isinstance(call.func, ast.Name) and call.func.id == "assertion" and len(call.args) == 3):
        return _NO
    inner = call.args[0]
    if not (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and inner.func.id in names
            and len(inner.args) == 1 and isinstance(inner.args[0], ast.Starred)):
        return _NO
    return _number(call.args[2])


def _evalplus_tests(inputs, results, atol) -> tuple[list[dict], list, list]:
    """Call tests for the JSON-exact pairs; the other pairs are returned for assert code."""
    tests, rest_in, rest_out = [], [], []
    for inp, exp in zip(inputs, results):
        args = list(inp) if isinstance(inp, (list, tuple)) else [inp]
        if json_exact(args) and json_exact(exp):
            t = {"type": "call", "input": args, "output": exp}
            tol = atol or (EVALPLUS_FLOAT_ATOL if has_float(exp) else 0)
            if tol:
                t["atol"] = float(tol)
            tests.append(t)
        else:
            rest_in.append(inp)
            rest_out.append(exp)
    return tests, rest_in, rest_out


def has_float(value) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, (list, tuple)):
        return any(has_float(v) for v in value)
    return False


def _reprs_roundtrip(values) -> bool:
    try:
        return ast.literal_eval(repr(values)) == values
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def _split_body(body: list[ast.stmt], names: set[str]) -> tuple[list[dict], list[ast.stmt]]:
    """Convert what converts; keep the other statements (in order) as code."""
    tests: list[dict] = []
    kept: list[ast.stmt] = []
    i = 0
    while i < len(body):
        stmt = body[i]
        # EvalPlus: inputs = [...]; results = [...]; for ...: assertion(candidate(*inp), exp, atol)
        if i + 2 < len(body):
            inputs, results = _assigned_literal(stmt, "inputs"), _assigned_literal(body[i + 1], "results")
            atol = _evalplus_loop(body[i + 2], names) if inputs is not _NO and results is not _NO else _NO
            if atol is not _NO and len(inputs) == len(results):
                converted, rest_in, rest_out = _evalplus_tests(inputs, results, atol)
                if not rest_in:
                    tests.extend(converted)
                    i += 3
                    continue
                if _reprs_roundtrip(rest_in) and _reprs_roundtrip(rest_out):
                    tests.extend(converted)
                    kept.extend(ast.parse(f"inputs = {rest_in!r}\nresults = {rest_out!r}").body)
                    kept.append(body[i + 2])
                    i += 3
                    continue
        if _is_trivial(stmt):
            i += 1
            continue
        t = assert_to_call_test(stmt, names) if isinstance(stmt, ast.Assert) else None
        if t is not None:
            tests.append(t)
        else:
            kept.append(stmt)
        i += 1
    return tests, kept


def _find_check(tree: ast.Module) -> Optional[ast.FunctionDef]:
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "check" and stmt.args.args:
            return stmt
    return None


def _is_check_call(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "check")


def parse_test_script(source: str, entry_point: Optional[str] = None) -> list[dict]:
    """Tests from a test script: call tests where the asserts allow, one assert test for the rest.

    The script is either a HumanEval-style `def check(candidate): ...` (a trailing
    `check(...)` call is ignored) or bare module-level asserts calling `entry_point`
    (or `candidate`). The returned assert test, if any, refers to the function as
    `candidate` (check style) or by its name (bare style), as the script did.
    """
    try:
        tree = parse_quietly(source)
    except SyntaxError as exc:
        raise AssertParseError(f"test script is not valid Python: {exc.msg} (line {exc.lineno})") from None
    check = _find_check(tree)
    if check is not None:
        param = check.args.args[0].arg
        tests, kept = _split_body(check.body, {param})
        if _grades_something(kept):
            prelude = [s for s in tree.body if s is not check and not _is_check_call(s)]
            fn = copy.copy(check)
            fn.body, fn.decorator_list = kept, []
            module = ast.Module(body=prelude + [fn], type_ignores=[])
            code = ast.unparse(ast.fix_missing_locations(module)) + "\n\ncheck(candidate)\n"
            tests.append({"type": "assert", "code": code})
        return tests
    names = {"candidate"} | ({entry_point} if entry_point else set())
    tests, kept = _split_body(tree.body, names)
    if _grades_something([s for s in kept if not isinstance(s, (ast.Import, ast.ImportFrom, ast.FunctionDef))]):
        tests.append({"type": "assert", "code": ast.unparse(ast.Module(body=kept, type_ignores=[])) + "\n"})
    return tests


def parse_asserts(lines: Iterable[str], entry_point: Optional[str] = None, setup: str = "") -> list[dict]:
    """MBPP-style: a list of assert lines (plus optional setup code) as tests."""
    source = (setup.rstrip() + "\n" if setup and setup.strip() else "") + "\n".join(lines)
    return parse_test_script(source, entry_point)


def defined_functions(code: str) -> list[str]:
    """The top-level function names a solution defines ([] if it does not parse)."""
    try:
        tree = parse_quietly(code)
    except (SyntaxError, ValueError):
        return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def entry_point_from_asserts(lines: Iterable[str], defined: Iterable[str] = ()) -> Optional[str]:
    """The function an MBPP assert calls: the first called name the reference solution
    defines (`defined`; MBPP task 126 names its function `sum`, a builtin), else the first
    called name that is not a builtin."""
    called = []
    for line in lines:
        try:
            tree = parse_quietly(line)
        except SyntaxError:
            continue
        called += [node.func.id for node in ast.walk(tree)
                   if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id != "candidate"]
    defined = set(defined)
    for name in called:
        if name in defined:
            return name
    return next((name for name in called if not hasattr(builtins, name)), None)
