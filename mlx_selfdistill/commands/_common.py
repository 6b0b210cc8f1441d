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


UNSAFE_HELP = ("Run candidates even where the sandbox cannot restrict their file access "
               "(no Landlock / Seatbelt). Untrusted code can then read and change your files.")


def unsafe_option(fn):
    """--unsafe-no-isolation, for every command that starts a sandbox pool."""
    import click

    return click.option("--unsafe-no-isolation", "unsafe_no_isolation", is_flag=True, help=UNSAFE_HELP)(fn)


def protections_table(report: dict, title: str = "sandbox protections") -> Table:
    """One row per area (filesystem, network, processes, uid, disk): in force or not, and how."""
    from rich.markup import escape

    from ..execution.protections import rows

    t = Table(title=title)
    t.add_column("area", no_wrap=True)
    t.add_column("status")
    t.add_column("how", overflow="fold")
    for area, ok, how in rows(report):
        t.add_row(area, "[green]in force[/green]" if ok else "[yellow]missing[/yellow]", escape(how))
    return t
