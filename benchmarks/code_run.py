"""Distilling on a package's own code (issue 26): a real model, `code:` problems, held-out files.

The largest package of benchmarks/harvest.py (algorithms 1.0.1: 232 / 41 / 76 problems, split by
file) goes through the project's own run loop (`loop.run`, what `mlx-selfdistill run` calls):
the model samples its train files' problems (n=2, T=0.8, top_p 0.95), the answers that pass the
package's own tests train a LoRA, the validation gate keeps the learning rate (and the adapter)
that does best on the validation files, or the base model when none beats it, and both models
are evaluated greedily on the test files, which training never saw.

Popular packages may be memorised by the base model, so the base model's greedy pass rate is
also measured on the first problems of each package of the harvest benchmark.

    python benchmarks/code_run.py                          # Qwen2.5-Coder-0.5B, about 1-2 h on 2 cores
    python benchmarks/code_run.py --model tiny --method ssd --package-dir tests/fixtures/code_harvest/tidbits \\
        --base-packages none --work /tmp/code_run --out /tmp/code_run.json   # a smoke run of the plumbing

Resumable: the run and every evaluation resume from their folders under --work (run it again to
go on). Writes benchmarks/results/code_run.json: the trained adapter's and the kept model's paired
outcomes against the base on the test files, and the base rates.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from mlx_selfdistill.jsonl import write_json_atomic  # first package import: binds the BLAS before mlx

from eval_records import eval_dir_stats
from harvest import PACKAGES, download, matching_sdists

HERE = Path(__file__).resolve().parent
WORK = HERE / "results" / "code_run"
MODELS = Path(os.environ.get("MLX_SELFDISTILL_TEST_MODELS") or Path.home() / ".cache" / "mlx-selfdistill" / "models")
MODEL = MODELS / "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"
MAX_TOKENS = 768  # a function with its helpers' context can take a few hundred tokens
TIMEOUT_S = 10.0
GREEDY = {"n": 1, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "max_tokens": MAX_TOKENS, "seed": 0}
SAMPLING = {"n": 2, "temperature": 0.8, "top_k": 0, "top_p": 0.95, "max_tokens": MAX_TOKENS, "seed": 0}
TRAIN = {"rank": 8, "scale": 20.0, "epochs": 1, "lr_schedule": "constant", "batch_tokens": 2048, "seed": 0}
LRS = ["1e-5", "3e-5"]  # chosen between on the validation files by the gate


def sdist_of(spec: str, folder: Path) -> Path:
    """The package's sdist in `folder`, downloaded from the registry the first time."""
    folder.mkdir(parents=True, exist_ok=True)
    found = matching_sdists(spec, folder)
    return found[0] if found else download(spec, folder)


def run_config(source: str, args):
    from mlx_selfdistill.config import RunConfig

    train_spec = f"code:{source}:train" + (f"@{args.train_limit}" if args.train_limit else "")
    # several rates: the gate trains one adapter each and keeps the best on validation; one: just that
    select = {"lr": list(args.lrs)} if len(args.lrs) > 1 else {}
    train = TRAIN | ({} if select else {"lr": float(args.lrs[0])})
    return RunConfig(name=args.method, method=args.method, model=args.model, problems=train_spec,
                     sample=dict(SAMPLING), train=train, eval={"problems": f"code:{source}:test", **GREEDY},
                     gate={"problems": f"code:{source}:validation", "select": select},
                     timeout_s=TIMEOUT_S, description=f"benchmarks/code_run.py on {source}")


def run_distillation(source: str, args) -> dict:
    """The run, then the paired outcomes on the test files of the trained adapter (the round's, as
    the gate's lr choice left it) and of the model the run hands back (that adapter or the base)."""
    from mlx_selfdistill.loop import run

    summary = run(run_config(source, args), Path(args.work) / "runs")
    run_dir = Path(summary["run_dir"])
    kept = summary.get("kept") or {"round": len(summary["rounds"])}
    base = eval_dir_stats(run_dir / "base" / "eval")
    trained = eval_dir_stats(run_dir / "round_1" / "eval")
    handed_back = trained if kept["round"] else base
    r1 = summary["rounds"][0]
    return {"source": source, "kept": kept, "base_validation": summary.get("base_validation"),
            "rounds": [{k: r.get(k) for k in ("round", "samples", "kept", "filter_stats", "validation", "seconds")}
                       for r in summary["rounds"]],
            "train": {k: (r1.get("train") or {}).get(k) for k in ("steps", "examples", "tokens", "final_loss",
                                                                  "peak_memory_gb", "seconds")},
            "test_trained_adapter": paired(base, trained), "test_kept_model": paired(base, handed_back),
            "gate_today": gate_today(run_dir, summary, run_config(source, args)),
            "seconds": summary.get("seconds")}


def gate_today(run_dir: Path, summary: dict, config) -> dict:
    """What this version's gate decides on the run's stored validation verdicts. A finished run keeps
    the decision it made when it finished (`kept` above, from an older gate if it ran before the
    sign test), so this says whether that decision still stands."""
    from mlx_selfdistill.gate import Candidate, adapters_compared, keep, per_problem

    def candidate(label: str, r: int, folder: Path) -> Candidate:
        scores = per_problem({"work_dir": str(folder / "validation" / "eval")})
        return Candidate(label, sum(scores.values()) / len(scores), r, None, scores)

    rounds = [candidate(f"round {r['round']}", r["round"], run_dir / f"round_{r['round']}")
              for r in summary["rounds"]]
    decision = keep(candidate("base", 0, run_dir / "base"), rounds, config.gate.alpha,
                    adapters_compared(config, len(rounds)))
    return {"round": decision.kept.round if decision.kept else 0, "message": decision.message,
            "evidence": decision.evidence}


def paired(before: dict, after: dict) -> dict:
    from mlx_selfdistill.metrics import paired_outcomes, wilson_interval

    return paired_outcomes(before["passed_ids"], after["passed_ids"], before["total"]) | {
        "base_ci95": _rounded(wilson_interval(before["passed"], before["total"])),
        "distilled_ci95": _rounded(wilson_interval(after["passed"], after["total"])),
        "eos_stop_rate": [before["eos_stop_rate"], after["eos_stop_rate"]],
        "mean_tokens": [before["mean_tokens"], after["mean_tokens"]]}


def base_rate(package: str, source: str, args) -> dict:
    """The base model's greedy pass rate on the first --per-package problems of one package."""
    from mlx_selfdistill.evaluation import evaluate_model
    from mlx_selfdistill.metrics import wilson_interval
    from mlx_selfdistill.problems import load_problems

    problems = load_problems(f"code:{source}@{args.per_package}")
    out = Path(args.work) / "base_rates" / package.replace("==", "-")
    evaluate_model(args.model, problems, work_dir=out, timeout_s=TIMEOUT_S, **GREEDY)
    stats = eval_dir_stats(out)
    return {"package": package, "passed": stats["passed"], "total": stats["total"],
            "pass_rate": round(stats["passed"] / max(1, stats["total"]), 4),
            "ci95": _rounded(wilson_interval(stats["passed"], stats["total"])),
            "eos_stop_rate": stats["eos_stop_rate"], "mean_tokens": stats["mean_tokens"]}


def _rounded(interval) -> list[float]:
    return [round(x, 3) for x in interval]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(MODEL), help="a GGUF, an MLX folder, a hub id or 'tiny'")
    p.add_argument("--method", default="rft", choices=["rft", "ssd"],
                   help="rft: train on the answers that pass; ssd: on every answer (the smoke uses it)")
    p.add_argument("--package", default=PACKAGES[0], help="the package distilled on (NAME==VERSION, an sdist)")
    p.add_argument("--package-dir", help="a source folder instead of --package (no download)")
    p.add_argument("--base-packages", default="all",
                   help="packages whose base pass rate is measured: 'all' (harvest.py's), 'none' or a comma list")
    p.add_argument("--per-package", type=int, default=20, help="problems per package for the base rates")
    p.add_argument("--lrs", type=lambda s: s.split(","), default=LRS,
                   help="learning rates the gate chooses from (one: train at that rate)")
    p.add_argument("--train-limit", type=int, help="the first N problems of the train files (the CPU budget)")
    p.add_argument("--sdists", default=str(Path(tempfile.gettempdir()) / "mlx-selfdistill-sdists"))
    p.add_argument("--work", default=str(WORK))
    p.add_argument("--out", default=str(HERE / "results" / "code_run.json"))
    args = p.parse_args(argv)
    if args.model == str(MODEL) and not MODEL.exists():
        p.error(f"{MODEL}: no such model file (python benchmarks/fetch_models.py --only qwen2.5-coder-0.5b)")

    sdists = Path(args.sdists)
    source = args.package_dir or str(sdist_of(args.package, sdists))
    result = {"what": __doc__.strip().splitlines()[0], "model": args.model, "package": args.package_dir or args.package,
              "method": args.method, "sampling": SAMPLING, "decoding": GREEDY, "train": TRAIN, "lrs": args.lrs,
              "train_limit": args.train_limit,
              "distillation": run_distillation(source, args)}
    chosen = [] if args.base_packages == "none" else (PACKAGES if args.base_packages == "all"
                                                      else args.base_packages.split(","))
    result["base_rates"] = [base_rate(pkg, str(sdist_of(pkg, sdists)), args) for pkg in chosen]
    write_json_atomic(Path(args.out), result)
    for label in ("test_trained_adapter", "test_kept_model"):
        t = result["distillation"][label]
        print(f"{label}: base {t['base_passed']}/{t['total']} -> {t['distilled_passed']}/{t['total']} "
              f"(+{t['flips_up']}/-{t['flips_down']}, McNemar p={t['mcnemar_p']:.3g})")
    print(f"kept: {result['distillation']['kept']}")
    print(f"the gate today: {result['distillation']['gate_today']['message']}")
    for r in result["base_rates"]:
        print(f"base on {r['package']}: {r['passed']}/{r['total']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
