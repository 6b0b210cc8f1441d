"""Rich progress bars for the library's progress events.

Library stages call `progress(stage, info)` (see mlx_selfdistill/progress.py for the info
keys); `text` is shown beside the bar. One bar per (stage, where).
"""

from __future__ import annotations

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)

from ._common import console


class StageProgress:
    """Bars on stderr. `json_stdout`: stdout carries the JSON result, so the bars are drawn only
    where stderr is a terminal (a long `bench --json` in a shell still shows its progress; a
    pipe or a captured stderr gets nothing)."""

    def __init__(self, json_stdout: bool = False):
        enabled = not json_stdout or console.is_terminal
        self.bars = Progress(SpinnerColumn(), TextColumn("{task.description:<22}"), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[text]}"),
                             console=console, transient=False, disable=not enabled)
        self.tasks: dict = {}

    def __enter__(self):
        self.bars.__enter__()
        return self

    def __exit__(self, *exc):
        self.bars.__exit__(*exc)

    def __call__(self, stage: str, info: dict) -> None:
        where = info.get("where")
        key = (stage, where)
        label = f"{stage} {where}" if where not in (None, "") else stage
        if isinstance(where, int):
            label = f"{stage} round {where}"
        if key not in self.tasks:
            self.tasks[key] = self.bars.add_task(label, total=info.get("total"), text="")
        task = self.tasks[key]
        update = {"text": str(info.get("text", ""))}
        if info.get("total") is not None:
            update["total"] = info["total"]
        if "completed" in info:
            update["completed"] = info["completed"]
        self.bars.update(task, advance=info.get("advance", 0), **update)
