"""BLAS threads that follow the cores other processes leave free (Linux CPU backend).

No fixed thread count is right for MLX's CPU backend here. Measured on this 2-core machine:
with nothing else running, a 2nd OpenBLAS thread makes the 0.5B decode 1.5x faster (47 -> 72
tok/s at 32 rows, 3.6 -> 5.5 at one row; results/engine_speed.json); with other processes
busy it made sampling 28x slower (results/blas_threads.json), because OpenBLAS's threads
spin-wait for a core another process holds. So long loops (the sampling engine's decode
steps, the trainer's micro-batches) call `tick()` between steps, where MLX's stream is idle.
Every `window_s` it reads how much CPU the *other* processes took on the cores this process
may use (/proc/stat's busy time, minus this process's own CPU time) and sets the BLAS threads
to the cores they left free: it lowers at once and raises only after two windows agree.

Thread counts do not change the numbers, so exact resume holds: OpenBLAS splits a matmul's
output among its threads, not the sums (tests/test_blas_governor.py flips the threads at every
step and gets the same samples, log-probabilities and trained weights bit for bit; the 0.5B's
matmul shapes at 1, 7, 32 and 300 rows gave equal bits on 1 and 2 threads too).

Active only when `blas.load()` bound OpenBLAS and the user set no thread count
(OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS or OMP_NUM_THREADS fix it); elsewhere `tick()` does
nothing. macOS has no OpenBLAS to govern (Accelerate or Metal).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from mlx_selfdistill import blas

# A core counts as free when others used less than this much of it: a 2nd spinning thread
# beside a process that wants a quarter of a core already costs more than it gains.
FREE_MARGIN = 0.25
WINDOW_S = 2.0
# /proc/stat's cpu columns: user nice system idle iowait irq softirq steal (guest is in user).
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


def parse_proc_stat(text: str, cores: set[int]) -> float:
    """Busy seconds so far, summed over `cores`, from /proc/stat text ("cpuN ..." lines, in
    clock ticks). Steal counts as busy: the hypervisor ran someone else on that core."""
    ticks = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        if int(name[3:]) in cores:
            values = [int(v) for v in rest.split()]
            ticks += sum(values[i] for i in _BUSY_COLUMNS if i < len(values))
    return ticks / os.sysconf("SC_CLK_TCK")


def threads_for(others_busy: float, cores: int) -> int:
    """The BLAS threads for `cores` usable cores when other processes keep `others_busy`
    cores busy: one per core they leave free, at least one."""
    return max(1, min(cores, math.floor(cores - others_busy + FREE_MARGIN)))


def _read_proc_stat() -> str:
    with open("/proc/stat") as f:
        return f.read()


@dataclass
class Governor:
    """Sets `set_threads(n)` from what other processes use; `tick()` is cheap between
    windows. The readers are injectable so the policy can be tested on recorded data."""

    set_threads: Callable[[int], None]
    threads: int
    cores: set[int] = field(default_factory=lambda: set(os.sched_getaffinity(0)))
    window_s: float = WINDOW_S
    read_stat: Callable[[], str] = _read_proc_stat
    own_cpu: Callable[[], float] = time.process_time  # every thread of this process
    clock: Callable[[], float] = time.monotonic
    changes: int = 0
    seconds_at: dict = field(default_factory=dict)  # threads -> wall seconds spent there
    last_others: Optional[float] = None
    _raise_votes: int = 0
    _mark: Optional[tuple] = None

    def _sample(self) -> tuple[float, float, float]:
        return self.clock(), parse_proc_stat(self.read_stat(), self.cores), self.own_cpu()

    def tick(self) -> int:
        """Re-decide once per window; returns the threads in force."""
        now = self.clock()
        if self._mark is None:
            self._mark = self._sample()
            return self.threads
        if now - self._mark[0] < self.window_s:
            return self.threads
        sample = self._sample()
        wall = sample[0] - self._mark[0]
        others = max(0.0, (sample[1] - self._mark[1]) - (sample[2] - self._mark[2])) / wall
        self.seconds_at[self.threads] = self.seconds_at.get(self.threads, 0.0) + wall
        self._mark, self.last_others = sample, others
        want = threads_for(others, len(self.cores))
        self._raise_votes = self._raise_votes + 1 if want > self.threads else 0
        if want < self.threads or self._raise_votes >= 2:
            self.set_threads(want)
            self.threads, self._raise_votes = want, 0
            self.changes += 1
        return self.threads

    def summary(self) -> dict:
        return {"mode": "auto", "threads": self.threads, "changes": self.changes,
                "seconds_at": {str(k): round(v, 1) for k, v in sorted(self.seconds_at.items())},
                "others_busy_cores": None if self.last_others is None else round(self.last_others, 2)}


_governor: Optional[Governor] = None
_decided = False


def governor() -> Optional[Governor]:
    """This process's governor, made at the first call; None where threads are fixed."""
    global _governor, _decided
    if not _decided:
        _decided = True
        state = blas.state()
        if (state.status == "loaded" and state.threads is not None and blas.threads_chosen_by_user() is None
                and os.path.exists("/proc/stat") and hasattr(os, "sched_getaffinity")):
            _governor = Governor(set_threads=blas.set_threads, threads=state.threads)
    return _governor


def threads_now() -> int:
    """The cores this process may compute on now: the governor's count, or the fixed BLAS
    threads (1 without OpenBLAS). Host-side numpy passes split their rows over as many."""
    g = _governor if _decided else governor()
    if g is not None:
        return g.threads
    return blas.state().threads or 1


def tick() -> None:
    """Call between compute steps (MLX's stream idle); a no-op where threads are fixed."""
    g = _governor if _decided else governor()
    if g is not None:
        g.tick()


def summary() -> dict:
    """What the threads did in this process, for stats and `doctor`."""
    g = governor()
    if g is not None:
        return g.summary()
    state = blas.state()
    return {"mode": "fixed", "threads": state.threads}
