"""What a harvested function needs beside it: imports, constants, helpers, import-time setup.

The function's free names are followed through its module's top-level bindings (and,
through `from .x import y`, into the package's other modules) until only builtins and
imports of other distributions remain. What that reaches is shipped as the problem's setup,
run before the candidate in the sandbox, and shown above the stub in the prompt. A name
that leads nowhere (a star import, a whole package module used as an object, a name
defined twice) drops the function with a reason rather than shipping a broken setup.
"""

from __future__ import annotations

import ast
import builtins
import textwrap
from dataclasses import dataclass, field

from .modules import Codebase, Module, absolute_module, bound_names

MAX_CONTEXT_CHARS = 6000
# Imports whose use makes a function's result depend on more than its arguments.
NONDETERMINISTIC = {"random", "secrets", "uuid", "time", "threading", "multiprocessing", "subprocess", "socket",
                    "asyncio", "tempfile", "shutil", "getpass", "requests", "urllib", "http"}
BUILTINS = set(dir(builtins))


class ContextError(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def _annotation_nodes(node: ast.AST) -> set[int]:
    """ids of annotation subtrees (never evaluated: the setup turns on postponed annotations)."""
    out: set[int] = set()
    for n in ast.walk(node):
        anns = []
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            anns.append(n.returns)
        elif isinstance(n, ast.arg):
            anns.append(n.annotation)
        elif isinstance(n, ast.AnnAssign):
            anns.append(n.annotation)
        for a in anns:
            if a is not None:
                out.update(id(x) for x in ast.walk(a))
    return out


def free_names(node: ast.AST) -> set[str]:
    """Names a statement reads but does not bind itself (scopes approximated as one)."""
    skip = _annotation_nodes(node)
    loads, stores, declared = set(), set(), set()
    for n in ast.walk(node):
        if id(n) in skip:
            continue
        if isinstance(n, ast.Name):
            (loads if isinstance(n.ctx, ast.Load) else stores).add(n.id)
        elif isinstance(n, ast.arg):
            stores.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stores.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            stores.update((a.asname or a.name.split(".")[0]) for a in n.names)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            stores.add(n.name)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            declared.update(n.names)  # assigned inside, yet bound outside: still free
    stores -= declared
    loads |= declared
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        # A def's own decorators and defaults run outside it; its name is bound by the def.
        outer = [*node.decorator_list]
        if not isinstance(node, ast.ClassDef):
            outer += [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]
        else:
            outer += [*node.bases, *[k.value for k in node.keywords]]
        outer_loads = {n.id for o in outer for n in ast.walk(o) if isinstance(n, ast.Name)}
        stores.discard(node.name)
        return ((loads - stores) | outer_loads) - BUILTINS - {node.name}
    return loads - stores - BUILTINS


@dataclass
class Context:
    code: str  # imports, constants and helpers, in an order that runs
    names: list = field(default_factory=list)  # what it defines, for the problem's metadata
    modules: list = field(default_factory=list)  # other distributions it imports


@dataclass
class _Item:
    key: tuple  # (module name, statement position) or ("import", text)
    text: str
    binds: tuple


class _Builder:
    def __init__(self, cb: Codebase):
        self.cb = cb
        self.roots = {m.name.split(".")[0] for m in cb.modules.values() if not m.is_test}
        self.items: list[_Item] = []
        self.seen: set = set()
        self.owner: dict = {}  # bound name -> key of the item binding it
        self.external: set = set()
        self.chars = 0
        self.namespaces: dict = {}  # local name of a package module -> (module name, attributes used)

    def _add(self, item: _Item) -> None:
        for name in item.binds:
            prev = self.owner.get(name)
            if prev is not None and prev != item.key:
                raise ContextError("name clash", f"{name} is defined in two places the function reaches")
            self.owner[name] = item.key
        self.items.append(item)
        self.chars += len(item.text)
        if self.chars > MAX_CONTEXT_CHARS:  # stop early: a package's whole API can be reachable
            raise ContextError("context too large", f"over {MAX_CONTEXT_CHARS} characters of helpers")

    def need(self, mod: Module, names, stack=(), user=None) -> None:
        """Resolve the names `user` (a statement) reads in `mod`."""
        for name in sorted(names):
            self.resolve(mod, name, stack, user)

    def resolve(self, mod: Module, name: str, stack=(), user=None) -> None:
        stmt = mod.bindings.get(name)
        if stmt is None:
            if name in BUILTINS:
                return
            for star in mod.star_imports:
                target = self.cb.modules.get(absolute_module(mod, star))
                if target is not None and name in target.bindings:
                    return self.resolve(target, name, stack, user)
            raise ContextError("unresolved name", f"{name} in {mod.path}")
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            return self._import(mod, stmt, name, stack, user)
        key = (mod.name, stmt.lineno, stmt.col_offset)
        if key in self.seen or key in stack:
            return
        self.seen.add(key)
        self.need(mod, free_names(stmt), (*stack, key), stmt)
        self._add(_Item(key, mod.segment(stmt), tuple(bound_names(stmt))))

    def _import(self, mod: Module, stmt, name: str, stack, user) -> None:
        alias = next(a for a in stmt.names if (a.asname or a.name.split(".")[0]) == name)
        if isinstance(stmt, ast.ImportFrom):
            target_name = absolute_module(mod, stmt)
            if stmt.level or target_name.split(".")[0] in self.roots:
                return self._package_import(mod, target_name, alias, name, stack, user)
            if target_name == "__future__":
                return
            text = f"from {target_name} import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
            root = target_name.split(".")[0]
        else:
            root = alias.name.split(".")[0]
            if root in self.roots:  # `import pkg as p` / `import pkg.sub`: p.x binds the module's x
                dotted = alias.name if alias.asname else root
                return self._module_object(mod, name, self.cb.modules.get(dotted), stack, user)
            text = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
        if root in NONDETERMINISTIC:
            raise ContextError("nondeterministic", f"imports {root}")
        self._import_item(text, name, root)

    def _package_import(self, mod: Module, target_name: str, alias, name: str, stack, user) -> None:
        submodule = f"{target_name}.{alias.name}" if target_name else alias.name
        if submodule in self.cb.modules:  # `from . import utils`: a module used as an object
            return self._module_object(mod, name, self.cb.modules[submodule], stack, user)
        target = self.cb.modules.get(target_name)
        if target is None:
            raise ContextError("unresolved name", f"module {target_name} (imported in {mod.path})")
        self.resolve(target, alias.name, stack)
        if name != alias.name:  # `from .x import y as z`: bind z too
            key = ("alias", name, target_name, alias.name)
            if key not in self.seen:
                self.seen.add(key)
                self._add(_Item(key, f"{name} = {alias.name}", (name,)))

    def _module_object(self, mod: Module, name: str, target, stack, user) -> None:
        """A package module used as `name.attr`: ship each attribute it reads and, at the end,
        bind `name` to a namespace of them. Any other use (passing the module around) drops."""
        if target is None or user is None:
            raise ContextError("uses a package module", f"{name} in {mod.path}")
        loads = [n for n in ast.walk(user) if isinstance(n, ast.Name) and n.id == name]
        attrs = {n.attr for n in ast.walk(user) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                 and n.value.id == name and isinstance(n.ctx, ast.Load)}
        bases = sum(1 for n in ast.walk(user) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                    and n.value.id == name)
        if len(loads) != bases or not attrs:
            raise ContextError("uses a package module", f"{name} used as an object in {mod.path}")
        known = self.namespaces.setdefault(name, (target.name, set()))
        if known[0] != target.name:
            raise ContextError("name clash", f"{name} names two package modules")
        for attr in sorted(attrs - known[1]):
            if f"{target.name}.{attr}" in self.cb.modules:
                raise ContextError("uses a package module", f"{name}.{attr} in {mod.path}")
            known[1].add(attr)
            self.resolve(target, attr, stack, None)

    def namespace_items(self) -> None:
        if not self.namespaces:
            return
        self._import_item("import types", "types", "types")
        for name, (module, attrs) in sorted(self.namespaces.items()):
            fields = ", ".join(f"{a}={a}" for a in sorted(attrs))
            self._add(_Item(("namespace", name), f"{name} = types.SimpleNamespace({fields})  # {module}, as used here",
                            (name,)))

    def _import_item(self, text: str, name: str, root: str) -> None:
        key = ("import", text)
        if key not in self.seen:
            self.seen.add(key)
            self.external.add(root)
            self._add(_Item(key, text, (name,)))

    def import_time_setup(self) -> None:
        """Top-level calls and mutations that touch what is shipped (e.g. registering
        irregular words into a shipped table) ship too, after it, in source order."""
        changed = True
        while changed:
            changed = False
            shipped_by_module: dict = {}
            for item in self.items:
                if len(item.key) == 3 and isinstance(item.key[0], str) and item.key[0] in self.cb.modules:
                    shipped_by_module.setdefault(item.key[0], set()).update(item.binds)
            for mod_name, shipped in shipped_by_module.items():
                mod = self.cb.modules[mod_name]
                for stmt in mod.tree.body:
                    key = (mod.name, stmt.lineno, stmt.col_offset)
                    if key in self.seen or not _is_setup_statement(stmt):
                        continue
                    touched = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
                    for name in list(touched):  # `_irregular("person", "people")` mutates PLURALS
                        called = mod.functions.get(name)
                        if called is not None:
                            touched |= free_names(called)
                    if touched & shipped:
                        self.seen.add(key)
                        self.need(mod, free_names(stmt) - shipped, (), stmt)
                        self.items.append(_Item(key, mod.segment(stmt), ()))
                        changed = True


def _is_setup_statement(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Expr):
        return isinstance(stmt.value, ast.Call)
    if isinstance(stmt, (ast.AugAssign, ast.For)):
        return True
    if isinstance(stmt, ast.Assign):
        return any(isinstance(t, (ast.Subscript, ast.Attribute)) for t in stmt.targets)
    return False


def build_context(cb: Codebase, mod: Module, fn: ast.FunctionDef) -> Context:
    """The setup a function needs, or ContextError saying why it cannot have one."""
    b = _Builder(cb)
    b.owner[fn.name] = ("function",)
    b.need(mod, free_names(fn), ((mod.name, fn.lineno, fn.col_offset),), fn)
    b.import_time_setup()
    b.namespace_items()
    imports = [i.text for i in b.items if i.key[0] == "import"]
    rest = [i.text.strip("\n") for i in b.items if i.key[0] != "import"]
    code = "\n".join(imports) + ("\n\n" if imports and rest else "") + "\n\n".join(
        textwrap.dedent(t) for t in rest)
    code = code.strip("\n")
    if len(code) > MAX_CONTEXT_CHARS:
        raise ContextError("context too large", f"{len(code)} characters of helpers")
    names = sorted({n for i in b.items for n in i.binds})
    return Context(code=code + "\n" if code else "", names=names, modules=sorted(b.external))
