"""Append-only JSONL files that survive a kill at any moment.

Every stage appends one record per finished unit of work and flushes it. A process
killed mid-write can leave a partial last line; `repair` cuts it off so a resumed
stage neither loses the records before it nor chokes on it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from . import killpoints
from .errors import DataError, UserError


def iter_jsonl(path: str | os.PathLike, *, allow_partial_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line; malformed lines raise DataError.

    With allow_partial_tail, a final line without a newline that does not parse is
    ignored: it is the trace of a killed writer, not user data.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a .jsonl file")
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    last_complete = data.endswith(b"\n")
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        is_tail = i == len(lines) and not last_complete
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if is_tail and allow_partial_tail:
                return
            raise DataError(path, f"not valid JSON ({exc.__class__.__name__}: {exc})", line=i) from None
        if not isinstance(obj, dict):
            raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", line=i)
        yield i, obj


def read_jsonl(path: str | os.PathLike, **kw) -> list[dict]:
    return [obj for _, obj in iter_jsonl(path, **kw)]


def repair(path: str | os.PathLike) -> int:
    """Truncate a partial trailing line left by a killed writer. Returns bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "rb+") as fh:
        data = fh.read()
        if not data or data.endswith(b"\n"):
            return 0
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)
        return len(data) - cut


class JsonlWriter:
    """Appends records, one flushed line each, so a kill loses at most the line in flight."""

    def __init__(self, path: str | os.PathLike, *, fsync: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._fsync = fsync
        self._written = 0

    def write(self, record: Any) -> None:
        if hasattr(record, "to_dict"):
            record = record.to_dict()
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())
        self._written += 1
        killpoints.reached(self.path.as_posix(), self._written)

    def write_many(self, records: Iterable[Any]) -> None:
        for r in records:
            self.write(r)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _write_atomic(path: str | os.PathLike, write: Callable[[Any], None]) -> None:
    """Write next to the target, then rename: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, default=None) -> None:
    _write_atomic(path, lambda fh: fh.write(json.dumps(obj, indent=2, ensure_ascii=False, default=default) + "\n"))


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """A whole JSONL file at once (e.g. train.jsonl, rewritten from its inputs on every run)."""
    _write_atomic(path, lambda fh: fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
