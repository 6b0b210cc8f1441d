"""Small helpers shared by CLI commands: console, JSON output, tables."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table

# Progress bars and messages go to stderr; result tables to stdout (with --json, stdout
# carries the JSON instead and no table is printed).
console = Console(stderr=True)
out = Console()


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(title: str, columns: list[str], rows: list[list]) -> Table:
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(x) for x in r])
    return t
