"""`ast.parse` for code we did not write (dataset solutions, model answers, harvested files).

Such code often holds invalid escapes like '\\d' in plain strings; Python warns about each one at
parse time (DeprecationWarning, SyntaxWarning from 3.12), which floods a user's terminal and a test
log with warnings about someone else's code. Parsing is all we do with it here, so the warnings
carry nothing for us."""

from __future__ import annotations

import ast
import warnings


def parse_quietly(source: str, filename: str = "<unknown>") -> ast.Module:
    """`ast.parse(source)` without the escape-sequence warnings; raises what ast.parse raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        return ast.parse(source, filename=filename)
