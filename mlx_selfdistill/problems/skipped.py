"""Records a loader cannot use are skipped with a warning, never abort a whole file.

A loader calls `skip(path, line, reason)`; the warning names the file, the line and the
reason in one line. Callers that want the count (the `problems` command) collect the
warnings with `collect_skips()`; others see them printed once each by Python.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator


class SkippedRecord(UserWarning):
    """A dataset record was skipped (the message says where and why)."""


def skip(path, line, reason: str) -> None:
    where = f"{path}:{line}" if line is not None else str(path)
    warnings.warn(f"{where}: skipped: {reason}", SkippedRecord, stacklevel=2)


@contextmanager
def collect_skips() -> Iterator[list[str]]:
    """Inside the block, skipped-record warnings are collected (as messages) instead of shown."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedRecord)
        try:
            yield found
        finally:
            for w in caught:
                if issubclass(w.category, SkippedRecord):
                    found.append(str(w.message))
                else:  # not ours: show it as it would have been shown
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
