"""The parsed codebase: each file's module name, top-level bindings and functions, with `ast` only.

Which files are tests (their asserts become problems' tests, their functions never become
problems), which names each module binds at top level and by what statement (what the
context builder ships beside a function), and which top-level packages the tree defines (what
the candidate must not be able to import).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Optional

from ...pyparse import parse_quietly
from .tree import SourceTree

TEST_DIRS = {"test", "tests", "testing", "unittests"}
SKIP_FILES = {"setup.py", "conftest.py", "noxfile.py", "fabfile.py"}
NON_CODE_DIRS = {"docs", "doc", "examples", "example", "benchmarks", "bench", "scripts", "tools"}


@dataclass
class Module:
    path: str  # relative posix path
    name: str  # dotted module name
    tree: ast.Module
    source: str
    is_test: bool
    bindings: dict = field(default_factory=dict)  # name -> the top-level statement that binds it last
    star_imports: list = field(default_factory=list)
    functions: dict = field(default_factory=dict)  # name -> ast.FunctionDef (module level)
    _lines: Optional[list] = field(default=None, repr=False)

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.path.endswith("__init__.py") else self.name.rpartition(".")[0]

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.source.splitlines()
        return self._lines

    def segment(self, stmt: ast.stmt) -> str:
        """A top-level statement's source as written, decorators included (whole lines:
        ast.get_source_segment re-splits the file on every call, too slow for big modules)."""
        start = min([d.lineno for d in getattr(stmt, "decorator_list", [])] + [stmt.lineno])
        return "\n".join(self.lines[start - 1:stmt.end_lineno])


def is_test_path(path: str) -> bool:
    p = PurePosixPath(path)
    return (p.name.startswith("test_") or p.name.endswith("_test.py") or p.name in ("tests.py", "test.py")
            or any(part in TEST_DIRS for part in p.parts[:-1]))


def module_name(path: str) -> str:
    parts = list(PurePosixPath(path).with_suffix("").parts)
    if parts and parts[0] in ("src", "lib") and len(parts) > 1:
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__init__"


def bound_names(stmt: ast.stmt) -> list[str]:
    """Names a top-level statement binds (for if/try blocks: every name bound inside)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name.split(".")[0]) for a in stmt.names if a.name != "*"]
    if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)
                and isinstance(n.ctx, ast.Store)]
    if isinstance(stmt, (ast.If, ast.Try, getattr(ast, "TryStar", ast.Try), ast.With)):
        return sorted({n for child in ast.iter_child_nodes(stmt) if isinstance(child, ast.stmt)
                       for n in bound_names(child)}
                      | {n for h in getattr(stmt, "handlers", []) for s in h.body for n in bound_names(s)})
    return []


def _index(mod: Module) -> None:
    for stmt in mod.tree.body:
        if isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names):
            mod.star_imports.append(stmt)
        if isinstance(stmt, ast.AugAssign):
            continue  # mutates a binding; shipped with it as a setup statement, not a binding
        for name in bound_names(stmt):
            mod.bindings[name] = stmt
        if isinstance(stmt, ast.FunctionDef):
            mod.functions[stmt.name] = stmt


@dataclass
class Codebase:
    tree: SourceTree
    modules: dict = field(default_factory=dict)  # dotted name -> Module
    parse_errors: list = field(default_factory=list)  # (path, why)

    def source_modules(self) -> list[Module]:
        return [m for m in self.modules.values() if not m.is_test]

    def test_modules(self) -> list[Module]:
        return [m for m in self.modules.values() if m.is_test]

    def top_level_names(self) -> set[str]:
        """The packages and modules the tree defines at its top, minus the standard library's."""
        names = {m.name.split(".")[0] for m in self.modules.values() if not m.is_test}
        return {n for n in names if n.isidentifier() and n not in sys.stdlib_module_names}


def absolute_module(mod: Module, node: ast.ImportFrom) -> str:
    """The dotted module an ImportFrom names, relative imports resolved against `mod`."""
    if not node.level:
        return node.module or ""
    base = mod.package.split(".") if mod.package else []
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def parse_codebase(tree: SourceTree) -> Codebase:
    cb = Codebase(tree=tree)
    for path, text in sorted(tree.files.items()):
        p = PurePosixPath(path)
        if p.name in SKIP_FILES or (p.parts[0] in NON_CODE_DIRS and not is_test_path(path)):
            continue
        try:
            parsed = parse_quietly(text, filename=path)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            cb.parse_errors.append((path, f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}"))
            continue
        mod = Module(path=path, name=module_name(path), tree=parsed, source=text, is_test=is_test_path(path))
        _index(mod)
        if mod.name in cb.modules and not mod.is_test:
            continue  # the same module twice (src/ and a copy): the first wins
        cb.modules[mod.name if not mod.is_test else f"{mod.name}@{path}"] = mod
    return cb
