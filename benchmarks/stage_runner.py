"""Run a study's stages one child process each, resumably, and keep what each cost.

A stage is a name and a spec (plain JSON: what it does and with what). The parent runs
every stage not yet done in a child (`python SCRIPT --child NAME --out FILE`), so a stage's
wall time and peak RSS (os.wait4) are its own, and records the result in
`<work>/stages.json`. A finished stage is never redone, and never reused for another spec:
if a stage's spec changed since it ran, the parent stops and names it (delete its entry and
its folder to redo it). Killed stages resume inside their own folders (samples, verdicts and
training checkpoints are all resumable). A stage stopped by Ctrl-C or SIGTERM (`kill` of the
job's process group) still has its time so far added to its record, so a stage's seconds are
its whole cost over every session.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlx_selfdistill.jsonl import write_json_atomic


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class _Stopped(Exception):
    pass


def _stop(signum, frame):
    raise _Stopped(signal.Signals(signum).name)


def spec_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


class StageRecord:
    """`<work>/stages.json`: per stage, its spec hash, result, seconds, peak RSS, attempts."""

    def __init__(self, work: Path):
        self.path = Path(work) / "stages.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.touched: set[str] = set()  # the entries this process wrote: save() merges only these

    def done(self, name: str) -> bool:
        return bool(self.data.get(name, {}).get("done"))

    def result(self, name: str) -> dict:
        entry = self.data.get(name, {})
        if not entry.get("done"):
            raise SystemExit(f"stage {name} has not run yet")
        return entry["result"]

    def save(self) -> None:
        """Write this process's entries into the file as it is now, under a lock: two runners
        (say, two arms at once, each on the cores the other leaves) never drop each other's."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = json.loads(self.path.read_text()) if self.path.exists() else {}
            current.update({name: self.data[name] for name in self.touched})
            self.data = current
            write_json_atomic(self.path, current)


def run_stages(script: str, work: Path, stages: list[tuple[str, dict]], child_args: list[str]) -> StageRecord:
    """Run, in order, each (name, spec) not done yet; stop at the first failure."""
    record = StageRecord(work)
    signal.signal(signal.SIGTERM, _stop)
    for name, spec in stages:
        entry = record.data.get(name, {"seconds": 0.0, "peak_rss_mb": 0.0, "attempts": 0})
        digest = spec_hash(spec)
        if entry.get("spec_hash") not in (None, digest):
            raise SystemExit(f"stage {name}: its spec changed since it ran ({entry.get('spec')} -> {spec}); "
                             f"delete its entry in {record.path} and its folder to run it again")
        entry.update(spec=spec, spec_hash=digest)
        if entry.get("done"):
            continue
        log(f"{name}")
        out = Path(work) / "results" / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, script, "--child", name, "--out", str(out), *child_args])
        stopped = None
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except (_Stopped, KeyboardInterrupt) as exc:  # record the attempt's time, then stop
            stopped = str(exc) or "Ctrl-C"
            proc.terminate()
            _, status, usage = os.wait4(proc.pid, 0)
        entry["seconds"] = round(entry["seconds"] + time.time() - t0, 1)  # summed over interrupted attempts
        entry["peak_rss_mb"] = max(entry["peak_rss_mb"], round(usage.ru_maxrss / 1024, 1))
        entry["attempts"] += 1
        record.data[name] = entry
        record.touched.add(name)
        if stopped:
            record.save()
            raise SystemExit(f"stage {name} stopped ({stopped}) after {entry['seconds']:.0f}s in all; "
                             "run again to resume")
        code = os.waitstatus_to_exitcode(status)
        if code != 0 or not out.exists():
            record.save()
            raise SystemExit(f"stage {name} failed (exit {code})")
        entry.update(done=True, result=json.loads(out.read_text()))
        record.save()
        log(f"{name} done in {entry['seconds']:.0f}s, peak RSS {entry['peak_rss_mb']:.0f} MB")
    return record
