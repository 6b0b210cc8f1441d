"""Test-only crash points: make a process SIGKILL itself at an exact unit of work.

A resume test must kill a run at the same place every time (after the 5th sample, between two
training checkpoints, ...), which polling files from outside cannot promise on a busy machine.
With `MLX_SELFDISTILL_TEST_KILL=NAME:N` set, the process kills itself (SIGKILL: no cleanup, no
flush, like the OOM killer or a pulled plug) when the Nth unit named NAME is done:

- a JSONL record appended by JsonlWriter: NAME is a path suffix, e.g. `round_1/samples.jsonl`,
  `round_1/eval/verdicts.jsonl` (the count is records written by this process);
- `train-step`: an optimizer step finished (and its checkpoint, if one was due, written).

Not a user setting: unset, `reached` is one comparison against None.
"""

from __future__ import annotations

import os
import signal

ENV = "MLX_SELFDISTILL_TEST_KILL"


def _parse(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    name, _, count = text.rpartition(":")
    return (name, int(count)) if name and count.isdigit() else None


_TARGET = _parse(os.environ.get(ENV))


def reached(name: str, count: int) -> None:
    """Called after each unit of work; kills this process at the configured one."""
    if _TARGET is None:
        return
    want, at = _TARGET
    if count == at and (name == want or name.endswith("/" + want)):
        os.kill(os.getpid(), signal.SIGKILL)
