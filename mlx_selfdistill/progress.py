"""The library's progress events: `progress(stage, info)`, rendered by the CLI's bars.

info keys: `where` (round or label), `total`, and either `advance` (increment) or
`completed` (absolute), plus an optional `text`. None means silent.
"""

from __future__ import annotations

from typing import Callable, Optional

Progress = Optional[Callable[[str, dict], None]]


def stage_callback(progress: Progress, stage: str, where) -> Optional[Callable[..., None]]:
    """A callback for one stage that stamps `where` on every event (None when silent)."""
    if progress is None:
        return None
    return lambda info=None, **kw: progress(stage, {"where": where, **(info or {}), **kw})
