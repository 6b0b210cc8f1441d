"""BLAS threads chosen by the governor (blas_governor.py) against 1 and 2 fixed threads, on a
quiet machine and beside a busy neighbour, on a real model and real MBPP prompts.

Each setting runs in its own interpreter (OpenBLAS reads a fixed thread count when it
loads): "1" and "2" set OPENBLAS_NUM_THREADS, "auto" sets nothing, so the governor starts at
1 thread and follows the free cores. Each measures, after a warm-up:

  engine   SamplingEngine on `--prompts` MBPP-validation prompts x n=2 at T=0.8 (rows filled
           across problems), EOS on: generated tokens / wall seconds, prefill included;
  batch1   one prompt, greedy, one row, prefill left out: what `bench` and a chat user see.

The neighbour is a plain Python loop spinning on one core for the whole child run: any other
job on the machine. Settings alternate within each condition, `--repeats` times; the JSON
keeps every run and the governor's summary (seconds at each thread count).

    python benchmarks/blas_governor.py --model ~/.cache/mlx-selfdistill/models/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf

Writes benchmarks/results/blas_governor.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "blas_governor.json"
THREAD_ENVS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")  # = blas.THREAD_ENVS: this
# parent loads neither MLX nor OpenBLAS while its children measure, so it does not import the package yet
SETTINGS = {"1": {"OPENBLAS_NUM_THREADS": "1"}, "2": {"OPENBLAS_NUM_THREADS": "2"}, "auto": {}}

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import mlx_selfdistill
from engine_speed import real_prompts, run_engine
from mlx_selfdistill import blas_governor
from mlx_selfdistill.models import load_model
from mlx_selfdistill.sampling import SamplingParams
from pathlib import Path

spec, prompts_n, max_tokens, mbpp = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
model, tok = load_model(spec)
_, prompts = real_prompts(tok, prompts_n, mbpp)
hot, greedy = SamplingParams(temperature=0.8, top_p=0.95, seed=0), SamplingParams(temperature=0.0, seed=0)
run_engine(model, tok, prompts[:1], 2, 4, hot, 2)  # warm-up
blas_governor.tick()  # the governor's first mark
engine = run_engine(model, tok, prompts, 2, max_tokens, hot, 2 * prompts_n)
batch1 = run_engine(model, tok, prompts[:1], 1, max_tokens, greedy, 1)
print(json.dumps({"engine_tok_s": engine["tokens_per_sec"], "engine_tokens": engine["generated_tokens"],
                  "batch1_tok_s": batch1["decode_tokens_per_sec"], "batch1_tokens": batch1["generated_tokens"],
                  "threads": blas_governor.summary()}))
"""


def measure(setting: str, neighbour: bool, args) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENVS}
    env.update(SETTINGS[setting], PYTHONPATH=str(ROOT))
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if neighbour else None
    try:
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(HERE), args.model, str(args.prompts),
                               str(args.max_tokens), args.mbpp], env=env, capture_output=True, text=True,
                              timeout=args.child_timeout)
    except subprocess.TimeoutExpired:  # 2 fixed threads beside a neighbour can be that slow
        return {"setting": setting, "neighbour": neighbour, "timed_out_after_s": args.child_timeout,
                "engine_tok_s": None, "batch1_tok_s": None}
    finally:
        if spinner:
            spinner.kill()
            spinner.wait()
    if proc.returncode != 0:
        raise SystemExit(f"setting {setting} failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**out, "setting": setting, "neighbour": neighbour, "child_seconds": round(time.perf_counter() - t0, 1),
            "loadavg_before": [round(x, 2) for x in load_before]}


def summarize(runs: list[dict]) -> dict:
    table = {}
    for cond in ("quiet", "neighbour"):
        rows = [r for r in runs if r["neighbour"] == (cond == "neighbour")]
        for setting in SETTINGS:
            mine = [r for r in rows if r["setting"] == setting and r["engine_tok_s"] is not None]
            timed_out = sum(1 for r in rows if r["setting"] == setting and r["engine_tok_s"] is None)
            row = {"timed_out": timed_out}
            if mine:
                row.update(engine_tok_s=round(statistics.median(r["engine_tok_s"] for r in mine), 2),
                           batch1_tok_s=round(statistics.median(r["batch1_tok_s"] for r in mine), 2))
            table.setdefault(cond, {})[setting] = row
        base = table.get(cond, {}).get("1", {})
        for row in table.get(cond, {}).values():
            for key in ("engine_tok_s", "batch1_tok_s"):
                if key in row and key in base:
                    row[f"{key}_vs_1_thread"] = round(row[key] / base[key], 3)
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a model spec load_model accepts (e.g. a GGUF path)")
    ap.add_argument("--prompts", type=int, default=16, help="MBPP-validation prompts for the engine run (x n=2)")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--child-timeout", type=int, default=300, help="seconds before a setting's run is cut off")
    ap.add_argument("--mbpp", default=str(ROOT.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"))
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if not Path(args.model).expanduser().exists() and "/" in args.model:
        raise SystemExit(f"--model: no such file: {args.model}")
    runs = []
    for neighbour in (False, True):
        for _ in range(args.repeats):
            for setting in SETTINGS:
                print(f"{'neighbour' if neighbour else 'quiet'}, threads {setting} ...", flush=True)
                runs.append(measure(setting, neighbour, args))
                print("  " + json.dumps(runs[-1]), flush=True)
    sys.path.insert(0, str(ROOT))
    from mlx_selfdistill.jsonl import write_json_atomic
    from mlx_selfdistill.platform_info import environment

    result = {"model": Path(args.model).name, "prompts": args.prompts, "samples_per_prompt": 2,
              "max_tokens": args.max_tokens, "cores": len(os.sched_getaffinity(0)),
              "summary": summarize(runs), "runs": runs, "environment": environment()}
    write_json_atomic(args.out, result)
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
