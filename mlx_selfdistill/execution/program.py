"""The program a candidate is run as: its problem's setup, then the candidate's code.

A problem may carry setup code in `metadata["setup"]` (a harvested function's imports,
constants and helpers: problems/code_harvest), run in the candidate's namespace before
its code, so the candidate writes only the function. `from __future__` imports must open
a module, so the candidate's are hoisted above the setup.
"""

from __future__ import annotations

import re

from ..records import Problem

_FUTURE = re.compile(r"^from\s+__future__\s+import\s+[^\n;]+$", re.M)


def setup_of(problem: Problem) -> str:
    setup = (problem.metadata or {}).get("setup")
    return setup if isinstance(setup, str) else ""


def program(problem: Problem, code: str) -> str:
    """The source the sandbox child runs for this candidate."""
    setup = setup_of(problem)
    if not setup.strip():
        return code
    futures = _FUTURE.findall(code)
    body = _FUTURE.sub("", code) if futures else code
    head = "\n".join(futures) + "\n" if futures else ""
    return f"{head}{setup.rstrip()}\n\n\n{body}"
