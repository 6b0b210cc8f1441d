"""Problems harvested from a Python codebase: `code:PATH[:train|validation|test]`.

PATH is a source folder, an installed package's folder or an sdist. Functions with a
docstring and literal tests (doctest examples, unit-test asserts) become HumanEval-style
problems whose reference body passes its tests in the sandbox. Offline: nothing is fetched,
nothing leaves the machine.

    tree.py      read the files (sdists from the archive, never extracted)
    modules.py   parse them; which are tests; what each module binds
    context.py   the imports, constants and helpers a function needs
    testexpr.py  what a literal test is; tests as assert lines
    doctests.py  tests from docstring examples (visible)
    unittests.py tests from the unit tests (held out of the prompt)
    guard.py     the setup that hides the harvested package from the candidate
    build.py     the Problem record and its split
    harvest.py   the whole pass, its report, the sandbox check, the cache
"""

from .harvest import Harvest, HarvestReport, explain_empty, harvest, harvest_spec, load_code
from .build import SPLITS, parse_split, split_of

__all__ = ["Harvest", "HarvestReport", "harvest", "harvest_spec", "load_code", "explain_empty", "SPLITS", "parse_split", "split_of"]
