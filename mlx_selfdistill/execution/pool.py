"""SandboxPool: pre-started sandbox workers, each running one candidate at a time.

    with SandboxPool(workers=None, timeout_s=5, memory_mb=1024) as pool:
        verdict = pool.judge(problem, code)
        verdicts = pool.judge_many([(problem, sample), ...], on_result=print)

Workers are started once (python worker.py, scrubbed environment, own session), and each
candidate costs one fork in a warm worker instead of a fresh interpreter. The pool keeps
the expected values and grades (grading.py); a worker that dies or stops answering is
replaced and its candidate gets a crash / timeout verdict. `pool.protections` says what
holds for candidates (protections.py); the pool refuses to start without a filesystem
allow-list unless built with unsafe_no_isolation=True.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..errors import UserError
from ..records import Problem, Sample, Verdict
from . import seatbelt
from .grading import Plan, grade, plan_tests
from .program import program
from .protections import AREAS, entry, refusal

WORKER_SCRIPT = str(Path(__file__).with_name("worker.py"))
# Imported once in each worker so candidates' most common imports cost nothing after the
# fork. Kept short on purpose: every module makes each fork dearer (page tables, COW faults).
PREIMPORT = ("typing", "math", "collections", "itertools", "functools", "heapq", "bisect", "re", "string")
# Environment variables a worker keeps; everything else (tokens, keys, HOME) is dropped.
KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
ENV_MARKER = "MLX_SELFDISTILL_SANDBOX"
ROOT_PREFIX = "mlxsd-sandbox-"  # then the pool's pid: a root whose process is gone is debris
STARTUP_TIMEOUT_S = 60.0
GRACE_S = 5.0  # how long past a job's timeout the pool waits for its worker's reply
# Jobs queued at each worker: the next one is already in its pipe when a reply goes out,
# so a worker never sits idle while the pool grades.
QUEUE_DEPTH = 2
# Only jobs this small are queued behind a running one: a worker reads stdin only between
# jobs, so a large queued write could block the pool while that worker blocks on writing
# a large reply the pool is not reading. A small one always fits in the pipe's buffer.
QUEUE_MAX_BYTES = 16 * 1024
DEFAULT_OUTPUT_BYTES = 2_000_000
READ_BYTES = 1 << 20


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def scrubbed_env(home: str, marker: str) -> dict:
    env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/bin:/bin")
    env.update({
        "HOME": home, "TMPDIR": home, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1", ENV_MARKER: marker,
    })
    return env


class _Worker:
    def __init__(self, index: int, proc: subprocess.Popen, info: dict):
        self.index, self.proc, self.info = index, proc, info
        # Jobs sent and not answered, in order: (position, plan, problem_id, sample_index).
        # The worker runs them one by one; the first started at `started`.
        self.queue: deque = deque()
        self.started = 0.0
        self.received = bytearray()  # reply bytes not yet split into lines

    def deadline(self, timeout_s: float) -> float:
        return self.started + timeout_s + GRACE_S

    @property
    def pid(self) -> int:
        return self.proc.pid


class SandboxPool:
    def __init__(self, workers: Optional[int] = None, timeout_s: float = 5.0, memory_mb: Optional[int] = 1024,
                 *, output_bytes: int = DEFAULT_OUTPUT_BYTES, network: str = "auto", memory_guard: str = "auto",
                 nproc: int = 64, preimport: Iterable[str] = PREIMPORT, disk_mb: int = 64, disk_files: int = 1000,
                 unsafe_no_isolation: bool = False):
        if os.name != "posix":
            raise UserError("the sandbox needs a POSIX system (Linux or macOS); run verify under WSL on Windows")
        if workers is not None and workers < 1:
            raise UserError(f"--workers must be at least 1, got {workers}")
        if not timeout_s or timeout_s <= 0:
            raise UserError(f"--timeout must be positive, got {timeout_s}")
        if memory_mb is not None and memory_mb < 64:
            raise UserError(f"--memory-mb must be at least 64, got {memory_mb}")
        if network not in ("auto", "seccomp", "none"):
            raise UserError(f"network must be auto, seccomp or none, got {network!r}")
        if memory_guard not in ("auto", "rlimit", "rss", "both"):
            raise UserError(f"memory_guard must be auto, rlimit, rss or both, got {memory_guard!r}")
        if disk_mb < 1 or disk_files < 16:
            raise UserError(f"the disk bound must allow at least 1 MiB and 16 files, got {disk_mb} MiB, {disk_files}")
        self.n_workers = workers or default_workers()
        # Refuse to start without a filesystem allow-list, unless the caller says otherwise.
        self.unsafe_no_isolation = bool(unsafe_no_isolation)
        self.launcher: dict = {}  # protections the command wrapping each worker provides (macOS)
        self.timeout_s, self.memory_mb, self.output_bytes = float(timeout_s), memory_mb, int(output_bytes)
        self.config = {"network": network, "memory_guard": memory_guard, "nproc": nproc, "preimport": list(preimport),
                       "disk_mb": int(disk_mb), "disk_files": int(disk_files)}
        self.workers: list[_Worker] = []
        self.root: Optional[str] = None
        self.marker = ""
        self._plans: dict = {}
        self._lock = threading.Lock()
        self.restarts = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "SandboxPool":
        if self.root is not None:
            return self
        remove_stale_roots()
        self.root = tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-")
        os.chmod(self.root, 0o711)  # sandbox uids may pass through to their box, not list it
        self.marker = os.path.basename(self.root)
        try:
            procs = [self._spawn(i) for i in range(self.n_workers)]  # start all, then wait for all
            self.workers = [self._handshake(i, p) for i, p in enumerate(procs)]
            for w in self.workers:  # each worker sets up its own isolation: all must hold
                reason = refusal(dict(self.launcher, **w.info.get("protections", {})))
                if reason and not self.unsafe_no_isolation:
                    raise UserError(reason)
        except BaseException:
            self.close()
            raise
        return self

    def _spawn(self, i: int) -> subprocess.Popen:
        wdir = os.path.join(self.root, f"w{i}")
        if os.path.isdir(wdir):
            os.chmod(wdir, 0o700)
            shutil.rmtree(wdir, ignore_errors=True)
        os.mkdir(wdir, 0o711)
        box = os.path.join(wdir, "box")  # the children's cwd, HOME and TMPDIR (the worker's env too)
        cmd = [sys.executable, "-s", "-B", WORKER_SCRIPT]
        if seatbelt.available() and self.config["network"] == "auto":  # macOS: deny-by-default profile
            cmd = seatbelt.wrap(cmd, wdir)
            self.launcher = seatbelt.protections()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                cwd=wdir, env=scrubbed_env(box, self.marker), close_fds=True,
                                start_new_session=True)
        config = dict(self.config, box=box, memory_mb=self.memory_mb, output_bytes=self.output_bytes)
        proc.stdin.write((json.dumps(config) + "\n").encode())
        proc.stdin.flush()
        return proc

    def _handshake(self, i: int, proc: subprocess.Popen) -> _Worker:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(STARTUP_TIMEOUT_S)
        sel.close()
        line = proc.stdout.readline() if ready else b""
        try:
            info = json.loads(line)
        except ValueError:
            info = {}
        if not info.get("ready"):
            _kill(proc)
            raise RuntimeError(f"sandbox worker {i} failed to start (python {sys.executable})")
        return _Worker(i, proc, info)

    @property
    def protections(self) -> dict:
        """What holds for candidates (protections.py: filesystem, network, processes, uid,
        disk, each {"ok", "how"}), as the first worker and its launcher report it."""
        if not self.workers:
            return {}
        report = dict(self.workers[0].info.get("protections", {}))
        for area, value in self.launcher.items():
            report.setdefault(area, value)
        for area in AREAS:
            report.setdefault(area, entry(False, "not provided on this platform"))
        return report

    def close(self) -> None:
        for w in self.workers:
            try:
                w.proc.stdin.close()  # EOF: the worker sweeps its descendants and exits
            except OSError:
                pass
        deadline = time.monotonic() + 3.0
        for w in self.workers:
            try:
                w.proc.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill(w.proc)
            w.proc.stdout.close()
        self.workers = []
        if self.root:
            _remove_root(self.root)
            self.root = None

    def __enter__(self) -> "SandboxPool":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- judging -------------------------------------------------------------------------------
    def _plan(self, problem: Problem) -> tuple[Plan, str]:
        """The problem's test plan, and its part of every job line (serialized once)."""
        key = (problem.id, id(problem))
        cached = self._plans.get(key)
        if cached is None:
            plan = plan_tests(problem)
            fields = json.dumps({
                "tests": plan.child_tests, "entry_point": plan.entry_point, "class_name": plan.class_name,
                "timeout_s": self.timeout_s, "memory_mb": self.memory_mb, "output_bytes": self.output_bytes,
            }, ensure_ascii=True)
            cached = self._plans[key] = (plan, fields[1:])  # without its "{": it ends a job line
        return cached

    def judge(self, problem: Problem, code: str, sample_index: int = 0) -> Verdict:
        return self.judge_many([(problem, code, sample_index)])[0]

    def judge_many(self, items: Iterable[tuple], on_result: Optional[Callable[[Verdict], None]] = None) -> list[Verdict]:
        """Judge (problem, sample) pairs across the workers; a sample is a Sample, or code
        text (optionally followed by its sample_index). Verdicts come back in input order;
        on_result sees each as soon as it is ready."""
        jobs = [self._job(item) for item in items]
        with self._lock:
            self.start()
            return self._run(jobs, on_result)

    def _job(self, item: tuple) -> tuple:
        problem, sample = item[0], item[1]
        if isinstance(sample, Sample):
            code, index = sample.code, sample.sample_index
        else:
            code, index = sample, (item[2] if len(item) > 2 else 0)
        if not isinstance(code, str):
            code = "" if code is None else str(code)
        return problem, code, index

    def _run(self, jobs: list, on_result) -> list[Verdict]:
        results: list[Optional[Verdict]] = [None] * len(jobs)
        pending = deque(enumerate(jobs))
        prepared: dict = {}  # position -> (job line, queue entry) of the next job to send
        sel = selectors.DefaultSelector()
        for w in self.workers:
            sel.register(w.proc.stdout, selectors.EVENT_READ, w)

        def finish(w: _Worker, reply: dict) -> None:
            position, plan, problem_id, index = w.queue.popleft()
            w.started = time.monotonic()  # the next queued job starts now
            results[position] = verdict = grade(plan, reply, problem_id, index, self.timeout_s)
            if on_result:
                on_result(verdict)

        def abandon(w: _Worker, reply: dict) -> None:
            """The worker died or hung: its running job gets `reply`, the unstarted go back."""
            finish(w, reply)
            while w.queue:
                position, _, _, _ = w.queue.pop()
                pending.appendleft((position, jobs[position]))
            self._replace(sel, w)

        try:
            remaining = len(jobs)
            while remaining:
                for w in self.workers:
                    while len(w.queue) < QUEUE_DEPTH and pending:
                        position = pending[0][0]
                        if position not in prepared:  # serialized once, even if it has to wait
                            prepared[position] = self._message(*pending[0])
                        if w.queue and len(prepared[position][0]) > QUEUE_MAX_BYTES:
                            break
                        pending.popleft()
                        self._send(w, *prepared.pop(position))
                busy = [w for w in self.workers if w.queue]
                wait = min(w.deadline(self.timeout_s) for w in busy) - time.monotonic()
                for key, _ in sel.select(max(0.0, wait)):
                    w = key.data
                    # Read the pipe directly: with jobs queued, several replies may arrive at
                    # once, and a buffered readline would hide all but the first from select.
                    chunk = os.read(w.proc.stdout.fileno(), READ_BYTES)
                    if not chunk:  # the worker died
                        if w.queue:
                            remaining -= 1
                            abandon(w, {"reason": "worker_died", "duration_s": time.monotonic() - w.started})
                        else:
                            self._replace(sel, w)
                        continue
                    w.received += chunk
                    while w.queue:
                        end = w.received.find(b"\n")
                        if end < 0:
                            break
                        line = bytes(w.received[:end])
                        del w.received[:end + 1]
                        try:
                            reply = json.loads(line)
                        except ValueError:
                            reply = {"reason": "worker_error", "error": "unreadable reply"}
                        remaining -= 1
                        finish(w, reply)
                now = time.monotonic()
                for w in list(self.workers):
                    if w.queue and now > w.deadline(self.timeout_s):
                        remaining -= 1
                        abandon(w, {"reason": "timeout", "duration_s": now - w.started})
        finally:
            sel.close()
        return results  # type: ignore[return-value]

    def _message(self, position: int, job: tuple) -> tuple[bytes, tuple]:
        """(the job line for a worker, its queue entry)."""
        problem, code, index = job
        plan, fields = self._plan(problem)
        code = program(problem, code)  # with the problem's setup, when it has one
        line = '{"id": %d, "code": %s, %s\n' % (position, json.dumps(code, ensure_ascii=True), fields)
        return line.encode("ascii"), (position, plan, problem.id, index)

    def _send(self, w: _Worker, data: bytes, entry: tuple) -> None:
        if not w.queue:
            w.started = time.monotonic()
        w.queue.append(entry)
        try:
            w.proc.stdin.write(data)
            w.proc.stdin.flush()
        except OSError:
            pass  # a dead worker: its stdout hits EOF and the job gets a crash verdict

    def _replace(self, sel, w: _Worker) -> None:
        """Swap a dead or stuck worker for a fresh one."""
        sel.unregister(w.proc.stdout)
        _kill(w.proc)
        w.proc.stdout.close()
        try:
            w.proc.stdin.close()
        except OSError:
            pass
        fresh = self._handshake(w.index, self._spawn(w.index))
        self.workers[self.workers.index(w)] = fresh
        sel.register(fresh.proc.stdout, selectors.EVENT_READ, fresh)
        self.restarts += 1


def inspect_protections() -> dict:
    """What holds for candidates on this machine: a one-worker pool is started (even where it
    would refuse to run candidates) and its report returned, with `refused`: the reason a
    pool would not start here, or None."""
    with SandboxPool(workers=1, timeout_s=5, unsafe_no_isolation=True) as pool:
        report = pool.protections
    report["refused"] = refusal(report)
    return report


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.kill()
    except OSError:
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _remove_root(root: str) -> None:
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            try:
                os.chmod(os.path.join(dirpath, d), 0o700)
            except OSError:
                pass
    shutil.rmtree(root, ignore_errors=True)


def remove_stale_roots(base: Optional[str] = None) -> list[str]:
    """Delete the sandbox roots of pools whose process is gone (a SIGKILL leaves no time to
    clean up). Only our own, and only when their pid no longer exists. Returns them."""
    base = base or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        pid = name[len(ROOT_PREFIX):].split("-", 1)[0]
        if not name.startswith(ROOT_PREFIX) or not pid.isdigit():
            continue
        path = os.path.join(base, name)
        try:
            if os.lstat(path).st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
            continue  # alive: its pool may still be running
        except ProcessLookupError:
            pass
        except (OSError, OverflowError):  # not ours to judge (permission), vanished, or no pid
            continue
        _remove_root(path)
        removed.append(path)
    return removed
