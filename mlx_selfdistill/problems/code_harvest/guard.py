"""Setup code that hides the harvested package from the candidate.

A harvested function's original is one `import` away when the package is installed in the
Python the sandbox runs (e.g. `code:.venv/lib/python3.11/site-packages/toolz`): a candidate
that imports it would pass without writing anything. The setup therefore starts by dropping
the package from `sys.modules` and putting a finder first on `sys.meta_path` that refuses
its names, as if it were not installed. (A leak guard, not a security boundary: the sandbox
is the boundary.)
"""

from __future__ import annotations

GUARD = '''def _hide_harvested(names):
    import sys

    class HarvestedPackageHidden:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name.partition(".")[0] in names:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    for key in list(sys.modules):
        if key.partition(".")[0] in names:
            del sys.modules[key]
    sys.meta_path.insert(0, HarvestedPackageHidden)


_hide_harvested(frozenset({names}))
del _hide_harvested
'''


def guard_code(names) -> str:
    """The guard for these top-level package names ('' when there are none)."""
    names = sorted(set(names))
    if not names:
        return ""
    return GUARD.replace("{names}", "{" + ", ".join(repr(n) for n in names) + "}")
