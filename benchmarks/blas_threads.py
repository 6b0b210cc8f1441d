"""How many BLAS threads beside MLX: the reference BLAS (the anchor) vs OpenBLAS on 1 thread vs
OpenBLAS on every core, for a float32 matmul, a training step and sampling on the tiny model.

Each setting runs in its own interpreter (the BLAS is chosen when mlx.core loads), in turn, on
the same work; the best of `--repeats` is kept. Writes benchmarks/results/blas_threads.json,
from which blas.DEFAULT_THREADS is chosen.

    python benchmarks/blas_threads.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "blas_threads.json"

# Runs inside each child: prints one JSON line.
CHILD = r"""
import json, sys, time, tempfile
import mlx_selfdistill
from mlx_selfdistill import blas
from mlx_selfdistill.platform_info import matmul_gflops
from mlx_selfdistill.models import load_model
from mlx_selfdistill.toy.world import toy_problems
from mlx_selfdistill.sampling import DrawSettings, SamplingParams, sample_problems
from mlx_selfdistill.training import TrainConfig, train
from mlx_selfdistill.prompts import chat_messages

repeats = int(sys.argv[1])
out = {"blas": blas.state().to_dict(), "bound": blas.bound_library()}
out["matmul_gflops"] = max(matmul_gflops(1024, repeats=3) for _ in range(repeats))
model, tok = load_model("tiny")
problems = toy_problems("train", 16)
best = None
for _ in range(repeats):
    stats = {}
    sample_problems(model, tok, problems, DrawSettings(n=4, params=SamplingParams(temperature=0.7, seed=0), max_tokens=96),
                    group=None, stats=stats)
    rate = stats["generated_tokens"] / stats["seconds"]
    best = rate if best is None else max(best, rate)
out["sampling_tokens_per_s"] = round(best, 1)
examples = [{"messages": chat_messages(p, "```python\n" + p.canonical_solution + "\n```")} for p in problems]
best = None
for _ in range(repeats):
    with tempfile.TemporaryDirectory() as d:
        res = train((model, tok), examples, d, TrainConfig(fine_tune_type="full", iters=6, batch_tokens=2048))
    best = res["tokens_per_sec"] if best is None else max(best, res["tokens_per_sec"])
out["train_tokens_per_s"] = best
print(json.dumps(out))
"""


def measure(env: dict, repeats: int) -> dict:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    full.pop("LD_PRELOAD", None)  # the loader, not a preload, decides
    proc = subprocess.run([sys.executable, "-c", CHILD, str(repeats)], env=full, capture_output=True, text=True,
                          cwd=ROOT)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    settings = {
        "reference (MLX_SELFDISTILL_BLAS=off)": {"MLX_SELFDISTILL_BLAS": "off"},
        "openblas 1 thread": {"OPENBLAS_NUM_THREADS": "1"},
        f"openblas {cores} threads": {"OPENBLAS_NUM_THREADS": str(cores)},
    }
    load_before = os.getloadavg()
    results = {}
    for name, env in settings.items():
        results[name] = {"env": env, **measure(env, args.repeats)}
        r = results[name]
        print(f"{name:40s} matmul {r['matmul_gflops']:7.1f} GFLOP/s   sampling {r['sampling_tokens_per_s']:7.1f} tok/s"
              f"   training {r['train_tokens_per_s']:7.1f} tok/s", flush=True)
    anchor = results["reference (MLX_SELFDISTILL_BLAS=off)"]
    for r in results.values():
        r["vs_reference"] = {k: round(r[k] / anchor[k], 2) for k in
                             ("matmul_gflops", "sampling_tokens_per_s", "train_tokens_per_s")}
    from mlx_selfdistill.platform_info import environment

    out = {"cores": cores, "repeats": args.repeats, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
           "settings": results, "environment": environment()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
