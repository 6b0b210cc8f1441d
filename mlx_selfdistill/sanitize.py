"""Trim a reply's code to the entry point and what it needs (EvalPlus-style post-processing).

Benchmarks that compare with published figures grade only the solution: the model's own
demo calls, asserts and `if __name__` blocks are dropped before the tests run, so a wrong
example in a demo cannot fail a right function. Kept: every top-level import, and the
functions, classes and assignments the entry point reaches through the names it uses.
The code is only parsed (ast), never run. Code that does not parse, or lacks the entry
point, is returned unchanged: the sandbox then reports what is wrong with it.
"""

from __future__ import annotations

import ast

from .pyparse import parse_quietly

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, _DEFS):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _used_names(node: ast.stmt) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _first_line(node: ast.stmt) -> int:
    # A decorated definition starts at its first decorator, not at `def`.
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])


def keep_entry_point(code: str, entry_point: str | None) -> str:
    """`code` reduced to its imports, the entry point and the definitions it depends on."""
    if not entry_point:
        return code
    try:
        tree = parse_quietly(code)
    except (SyntaxError, ValueError):  # ValueError: null bytes
        return code
    definitions: dict[str, ast.stmt] = {}
    for node in tree.body:
        for name in _defined_names(node):
            definitions[name] = node  # a later definition wins, as at run time
    if not isinstance(definitions.get(entry_point), _DEFS):
        return code
    needed, queue = set(), [entry_point]
    while queue:
        name = queue.pop()
        node = definitions.get(name)
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        queue.extend(_used_names(node) - {name})
    lines = code.splitlines()
    kept = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in needed]
    return "\n\n".join("\n".join(lines[_first_line(n) - 1:n.end_lineno]) for n in kept) + "\n"
