"""Literal tests from the codebase's own unit tests: plain asserts, unittest's assertEqual
family, pytest parametrize tables and loops over literal tables.

Only test functions that need nothing but literals are read: a test with fixtures, patches,
other decorators, a setUp, or a statement with side effects (a call that is not an
assertion, a `with` that is not subTest/raises) is skipped whole, since its asserts may
depend on that state. Parameters, loop variables and local names bound to literals are
substituted into the asserts, so each table row becomes one test.
"""

from __future__ import annotations

import ast
import itertools
from typing import Iterator, Optional

from .doctests import FoundTest
from .modules import Codebase, Module, absolute_module
from .testexpr import _NO, Target, actual_expr, assert_line, is_literal, literal, literal_node

MAX_ROWS = 200  # rows of one table or loop
EQUAL = {"assertEqual", "assertEquals", "assertListEqual", "assertTupleEqual", "assertDictEqual",
         "assertSetEqual", "assertSequenceEqual", "assert_equal", "failUnlessEqual"}
SETUP_METHODS = {"setUp", "setUpClass", "setup_method", "setup_class", "setup", "asyncSetUp"}
NO_STATE = {"assertRaises", "assertRaisesRegex", "assertWarns", "raises", "warns", "subTest"}

FnKey = tuple  # (module name, function name)


class _Substitute(ast.NodeTransformer):
    def __init__(self, env: dict):
        self.env = env

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load) and node.id in self.env:
            return ast.copy_location(literal_node(self.env[node.id]), node)
        return node


def substitute(node: ast.AST, env: dict) -> ast.AST:
    if not env:
        return node
    import copy

    return ast.fix_missing_locations(_Substitute(env).visit(copy.deepcopy(node)))


class TestModule:
    """One test file: what its names refer to in the harvested package."""

    def __init__(self, cb: Codebase, mod: Module, functions: dict):
        self.cb, self.mod = cb, mod
        self.functions = functions  # FnKey -> harvested function (its module name, node)
        self.by_name: dict = {}
        for key in functions:
            self.by_name.setdefault(key[1], []).append(key)
        self.from_imports: dict = {}  # local name -> (module, attribute)
        self.module_aliases: dict = {}  # local name -> dotted module
        self.constants: dict = {}  # top-level names bound once to a literal
        counts: dict = {}
        for stmt in mod.tree.body:
            if isinstance(stmt, ast.ImportFrom):
                base = absolute_module(mod, stmt)
                for a in stmt.names:
                    dotted = f"{base}.{a.name}" if base else a.name
                    if dotted in cb.modules:
                        self.module_aliases[a.asname or a.name] = dotted
                    else:
                        self.from_imports[a.asname or a.name] = (base, a.name)
            elif isinstance(stmt, ast.Import):
                for a in stmt.names:
                    self.module_aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            for name in _stored_names(stmt):
                counts[name] = counts.get(name, 0) + 1
        for stmt in mod.tree.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                name = stmt.targets[0].id
                if counts.get(name) == 1 and is_literal(stmt.value):
                    self.constants[name] = literal(stmt.value)
        self.local_defs = {s.name for s in mod.tree.body if isinstance(s, (ast.FunctionDef, ast.ClassDef))}
        # `parametrize = pytest.mark.parametrize`, then `@parametrize(...)`
        self.parametrize_names = {t.id for s in mod.tree.body if isinstance(s, ast.Assign)
                                  and _decorator_name(s.value).endswith("mark.parametrize")
                                  for t in s.targets if isinstance(t, ast.Name)}

    def _find(self, module: str, name: str, depth: int = 0) -> Optional[FnKey]:
        if (module, name) in self.functions:
            return (module, name)
        target = self.cb.modules.get(module)
        if target is not None and depth < 4:  # a re-export: `from .itertoolz import groupby` in __init__
            stmt = target.bindings.get(name)
            if isinstance(stmt, ast.ImportFrom):
                alias = next((a for a in stmt.names if (a.asname or a.name) == name), None)
                if alias is not None:
                    return self._find(absolute_module(target, stmt), alias.name, depth + 1)
            for star in target.star_imports:
                found = self._find(absolute_module(target, star), name, depth + 1)
                if found:
                    return found
        keys = self.by_name.get(name, [])
        if len(keys) == 1 and module.split(".")[0] == keys[0][0].split(".")[0]:
            return keys[0]
        return None

    def resolve(self, func: ast.expr) -> Optional[FnKey]:
        """The harvested function a callee expression names in this file, if any."""
        if isinstance(func, ast.Name):
            if func.id in self.local_defs:
                return None
            if func.id in self.from_imports:
                return self._find(*self.from_imports[func.id])
            return None
        if isinstance(func, ast.Attribute):
            parts = []
            node = func
            while isinstance(node, ast.Attribute):
                parts.append(node.attr)
                node = node.value
            if not isinstance(node, ast.Name) or node.id not in self.module_aliases:
                return None
            dotted = ".".join([self.module_aliases[node.id], *reversed(parts[1:])])
            return self._find(dotted, func.attr)
        return None


def _stored_names(stmt: ast.stmt) -> list[str]:
    return [n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]


def _decorator_name(d: ast.expr) -> str:
    node = d.func if isinstance(d, ast.Call) else d
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _param_rows(dec: ast.Call, tm: TestModule) -> Optional[list[dict]]:
    """The rows of one `pytest.mark.parametrize(names, values)` as {name: value} dicts."""
    if len(dec.args) < 2:
        return None
    names_node, values_node = dec.args[0], dec.args[1]
    names = literal(names_node)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        return None
    if isinstance(values_node, ast.Name) and values_node.id in tm.constants:
        values = tm.constants[values_node.id]
    elif isinstance(values_node, (ast.List, ast.Tuple)):
        values = []
        for elt in values_node.elts:
            if isinstance(elt, ast.Call) and _decorator_name(elt) == "pytest.param":
                if any(k.arg == "marks" for k in elt.keywords):
                    continue  # xfail/skip rows
                elt = ast.Tuple(elts=elt.args, ctx=ast.Load()) if len(names) > 1 else (elt.args[0] if elt.args else elt)
            v = literal(elt)
            if v is _NO:
                return None
            values.append(v)
    else:
        values = literal(values_node)
    if not isinstance(values, (list, tuple)):
        return None
    rows = []
    for v in values[:MAX_ROWS]:
        if len(names) == 1:
            rows.append({names[0]: v})
        elif isinstance(v, (list, tuple)) and len(v) == len(names):
            rows.append(dict(zip(names, v)))
        else:
            return None
    return rows


class _Skip(Exception):
    """This test function has state the harvester cannot see: drop all of it."""


class Walker:
    def __init__(self, tm: TestModule, origin: str):
        self.tm, self.origin = tm, origin
        self.found: list = []  # (FnKey, FoundTest)

    def _target_of(self, call_node: ast.expr) -> Optional[tuple]:
        """(FnKey, Target) of the harvested function an expression tests, if any."""
        for n in ast.walk(call_node):
            if isinstance(n, ast.Call):
                key = self.tm.resolve(n.func)
                if key is not None:
                    fn = key

                    def is_target(f, fn=fn):
                        return self.tm.resolve(f) == fn

                    return key, Target(key[1], is_target)
        return None

    def _emit(self, actual: ast.expr, expected, compare: str, line: int) -> None:
        found = self._target_of(actual)
        if found is None:
            return
        key, target = found
        rewritten = actual_expr(actual, target)
        if rewritten is None:
            return
        code = assert_line(rewritten, expected, compare=compare)
        self.found.append((key, FoundTest(code, self.origin, f"{self.tm.mod.path}:{line}", hidden=True)))

    def _compare(self, a: ast.expr, b: ast.expr, line: int) -> None:
        for actual, other in ((a, b), (b, a)):
            if is_literal(other) and not is_literal(actual):
                self._emit(actual, literal(other), "eq", line)
                return

    def statement(self, stmt: ast.stmt, env: dict) -> None:
        if isinstance(stmt, ast.Assert):
            test = substitute(stmt.test, env)
            if isinstance(test, ast.Compare) and len(test.ops) == 1:
                op, right = test.ops[0], test.comparators[0]
                if isinstance(op, ast.Eq):
                    self._compare(test.left, right, stmt.lineno)
                elif isinstance(op, ast.Is) and is_literal(right) and literal(right) in (None, True, False):
                    self._emit(test.left, literal(right), "eq", stmt.lineno)
            elif isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
                self._emit(test.operand, None, "falsy", stmt.lineno)
            elif isinstance(test, ast.Call):
                self._emit(test, None, "truthy", stmt.lineno)
            return
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            call = substitute(stmt.value, env)
            name = _decorator_name(call.func).split(".")[-1]
            args = call.args
            if name in EQUAL and len(args) >= 2:
                self._compare(args[0], args[1], stmt.lineno)
            elif name in ("assertTrue", "assert_", "failUnless") and args:
                self._emit(args[0], None, "truthy", stmt.lineno)
            elif name in ("assertFalse", "failIf") and args:
                self._emit(args[0], None, "falsy", stmt.lineno)
            elif name == "assertIsNone" and args:
                self._emit(args[0], None, "eq", stmt.lineno)
            elif name == "assertIs" and len(args) >= 2 and is_literal(args[1]) and literal(args[1]) in (None, True, False):
                self._emit(args[0], literal(args[1]), "eq", stmt.lineno)
            elif not name.startswith("assert"):
                raise _Skip()  # a call for its side effect: later asserts may depend on it
            return
        if isinstance(stmt, ast.For):
            iterable = substitute(stmt.iter, env)
            rows = literal(iterable)
            names = [n.id for n in ast.walk(stmt.target) if isinstance(n, ast.Name)]
            if rows is _NO or not isinstance(rows, (list, tuple, set, frozenset, dict)) or stmt.orelse:
                raise _Skip()
            for row in list(rows)[:MAX_ROWS]:
                bound = _unpack(stmt.target, row)
                if bound is None:
                    raise _Skip()
                inner = dict(env, **bound)
                for s in stmt.body:
                    self.statement(s, inner)
            for n in names:
                env.pop(n, None)
            return
        if isinstance(stmt, ast.With):
            kinds = {_decorator_name(i.context_expr).split(".")[-1] for i in stmt.items}
            if not kinds <= NO_STATE:
                raise _Skip()
            if kinds == {"subTest"}:
                for s in stmt.body:
                    self.statement(s, env)
            return  # the body of assertRaises / pytest.raises expects an exception: not a value test
        if isinstance(stmt, ast.Assign):
            names = _stored_names(stmt)
            value = substitute(stmt.value, env)
            for n in names:
                env.pop(n, None)
            if len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) and is_literal(value):
                env[stmt.targets[0].id] = literal(value)
            return
        if isinstance(stmt, (ast.Pass, ast.Import, ast.ImportFrom)) or (
                isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
            return
        raise _Skip()  # if/try/while/del/...: the asserts inside depend on more than literals

    def test_function(self, fn: ast.FunctionDef, *, method: bool) -> None:
        tables: list = []
        for d in fn.decorator_list:
            name = _decorator_name(d)
            if (name.endswith("mark.parametrize") or name in self.tm.parametrize_names) and isinstance(d, ast.Call):
                rows = _param_rows(d, self.tm)
                if rows is None:
                    return
                tables.append(rows)
            else:
                return  # fixtures, patches, skips, hypothesis: not a literal test
        params = [a.arg for a in fn.args.args + fn.args.kwonlyargs]
        if method:
            params = params[1:]
        given = set().union(*(set(t[0]) for t in tables if t)) if tables else set()
        if set(params) - given or fn.args.vararg or fn.args.kwarg:
            return  # a fixture argument
        combos = itertools.product(*tables) if tables else [()]
        before = len(self.found)
        for combo in itertools.islice(combos, MAX_ROWS):
            env = dict(self.tm.constants)
            for row in combo:
                env.update(row)
            try:
                for s in fn.body:
                    self.statement(s, env)
            except _Skip:
                del self.found[before:]
                return


def _unpack(target: ast.expr, value) -> Optional[dict]:
    if isinstance(target, ast.Name):
        return {target.id: value}
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (list, tuple)) and len(value) == len(target.elts):
        out: dict = {}
        for t, v in zip(target.elts, value):
            sub = _unpack(t, v)
            if sub is None:
                return None
            out.update(sub)
        return out
    return None


def _has_autouse_fixture(mod: Module) -> bool:
    for n in ast.walk(mod.tree):
        if isinstance(n, ast.Call) and _decorator_name(n.func).endswith("fixture"):
            if any(k.arg == "autouse" and isinstance(k.value, ast.Constant) and k.value.value for k in n.keywords):
                return True
    return False


def unit_tests(cb: Codebase, functions: dict) -> Iterator[tuple]:
    """(FnKey, FoundTest) for every literal test in the codebase's test files."""
    for mod in cb.test_modules():
        if _has_autouse_fixture(mod):
            continue
        tm = TestModule(cb, mod, functions)
        origin = "pytest" if "pytest" in tm.module_aliases else "unittest"
        walker = Walker(tm, origin)
        for stmt in mod.tree.body:
            if isinstance(stmt, ast.FunctionDef) and stmt.name.startswith("test"):
                walker.test_function(stmt, method=False)
            elif isinstance(stmt, ast.ClassDef):
                methods = [s for s in stmt.body if isinstance(s, ast.FunctionDef)]
                if any(m.name in SETUP_METHODS for m in methods):
                    continue
                for m in methods:
                    if m.name.startswith("test"):
                        walker.test_function(m, method=True)
        yield from walker.found
