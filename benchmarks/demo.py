"""The offline demo's two targets, measured: wall time under 5 minutes on a 2-core CPU, and
held-out pass@1 after test-filtered distillation at least 10 points above the base model.

Runs `mlx-selfdistill demo` (the library call behind it) from scratch in a temporary
directory, `--seeds` times with different sampling seeds (one run is a single draw: the
gain moves by a few points from seed to seed), and writes benchmarks/results/demo.json
with every run's figures and the environment.

    python benchmarks/demo.py              # one run, the demo's own seeds
    python benchmarks/demo.py --seeds 3
    python benchmarks/demo.py --fresh-venv # as a new user: clone, fresh venv, pip install ., demo

--fresh-venv measures what the README promises a newcomer: a clean clone of this repository's
committed HEAD, a new virtual environment, `pip install .` (no system packages, no LD_PRELOAD,
no PYTHONPATH), then `mlx-selfdistill demo` timed end to end as a subprocess. It writes
benchmarks/results/demo_fresh_venv.json with the install and demo times, the demo's result,
the fresh environment's `doctor` report (which BLAS MLX is bound to, GFLOP/s) and the load
average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlx_selfdistill.demo import run_demo
from mlx_selfdistill.jsonl import write_json_atomic
from mlx_selfdistill.platform_info import environment

RESULTS = Path(__file__).resolve().parent / "results" / "demo.json"
FRESH_RESULTS = RESULTS.with_name("demo_fresh_venv.json")
REPO = Path(__file__).resolve().parents[1]
# What a newcomer's shell would not have: our test hooks, a preloaded BLAS, a source checkout on the path.
NOT_A_NEWCOMERS = ("PYTHONPATH", "LD_PRELOAD", "OPENBLAS_NUM_THREADS", "MLX_SELFDISTILL_BLAS",
                   "MLX_SELFDISTILL_TEST_KILL", "VIRTUAL_ENV")


def one_run(seed_offset: int) -> dict:
    overrides = {"sample": {"seed": seed_offset}} if seed_offset else None
    with tempfile.TemporaryDirectory() as runs:
        t0 = time.time()
        result = run_demo(runs, overrides=overrides)
        result["wall_seconds"] = round(time.time() - t0, 1)
    return {
        "sample_seed": seed_offset,
        "wall_seconds": result["wall_seconds"],
        "base_pass_at_1": result["base_pass_at_1"],
        "methods": {m: {k: v for k, v in r.items() if k != "run_dir"} for m, r in result["methods"].items()},
        "rft_gain_points": result["gain_points"],
    }


def _timed(cmd: list, **kw) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return round(time.time() - t0, 1), proc


def fresh_venv() -> dict:
    """Clone HEAD, make a venv, pip install ., time `mlx-selfdistill demo` there."""
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in NOT_A_NEWCOMERS}
    out: dict = {"commit": commit, "uncommitted_changes_left_out": bool(dirty), "cpu_count": os.cpu_count(),
                 "loadavg_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="demo-fresh-") as tmp:
        src, venv, work = Path(tmp) / "src", Path(tmp) / "venv", Path(tmp) / "work"
        work.mkdir()
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(src)], check=True)
        out["venv_seconds"], _ = _timed([sys.executable, "-m", "venv", str(venv)])
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        out["pip_install_seconds"], _ = _timed(pip + [str(src)], env=env, cwd=work)
        print(f"pip install . took {out['pip_install_seconds']:.0f}s", flush=True)
        cli = str(venv / "bin" / "mlx-selfdistill")
        out["loadavg_before_demo"] = os.getloadavg()
        out["demo_wall_seconds"], proc = _timed([cli, "demo", "--json"], env=env, cwd=work)
        out["loadavg_after_demo"] = os.getloadavg()
        out["demo"] = json.loads(proc.stdout)
        print(f"mlx-selfdistill demo took {out['demo_wall_seconds']:.0f}s", flush=True)
        _, proc = _timed([cli, "doctor", "--json"], env=env, cwd=work)
        doctor = json.loads(proc.stdout)
        out["blas"] = doctor["blas"]
        out["environment"] = doctor["environment"]
    out["loadavg_after"] = os.getloadavg()
    out["target_demo_seconds_max"] = 150
    out["met"] = out["demo_wall_seconds"] <= 150
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=1, help="runs, each with its own sampling seed")
    ap.add_argument("--fresh-venv", action="store_true",
                    help="clone HEAD, new venv, pip install ., then time `mlx-selfdistill demo` (as a newcomer)")
    args = ap.parse_args()
    if args.fresh_venv:
        result = fresh_venv()
        write_json_atomic(FRESH_RESULTS, result)
        print(f"wrote {FRESH_RESULTS}")
        return
    runs = []
    for i in range(args.seeds):
        runs.append(one_run(i))
        r = runs[-1]
        print(f"seed {i}: {r['wall_seconds']:.0f}s, base {r['base_pass_at_1']:.3f}, "
              f"rft {r['methods']['rft']['distilled_pass_at_1']:.3f} ({r['rft_gain_points']:+.1f} pts), "
              f"ssd {r['methods']['ssd']['distilled_pass_at_1']:.3f}", flush=True)
    out = {
        "targets": {"wall_seconds_max": 300, "rft_gain_points_min": 10},
        "runs": runs,
        "met": {
            "wall_time": all(r["wall_seconds"] < 300 for r in runs),
            "rft_gain": all(r["rft_gain_points"] >= 10 for r in runs),
        },
        "environment": environment(),
    }
    write_json_atomic(RESULTS, out)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
