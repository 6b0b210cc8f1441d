"""Does sharing the prompt header (sampling/prefix.py) change a stored evaluation? Rerun one
of the MBPP study's finished eval stages with today's engine, in a scratch folder, and compare
every sample with the stored one: completion text and mean log-probability, bit for bit.
The same check answers whether another BLAS thread count changes them (`--label`, with
OPENBLAS_NUM_THREADS set for the rerun).

The study's base evaluations were decoded before the header was shared; its later ones are
decoded with it. They compare only if the engine's change leaves the base's samples as they
were, which this checks on the real model rather than assumes.

    python benchmarks/prefix_equivalence.py --stage eval.q05.base.validation
    python benchmarks/prefix_equivalence.py --stage eval.q05.base.validation --rerun /work/recheck
    OPENBLAS_NUM_THREADS=2 python benchmarks/prefix_equivalence.py --stage eval.q05.base.validation \
        --label "2 BLAS threads"

Writes benchmarks/results/prefix_equivalence.json (one entry per stage and label).
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

from mlx_selfdistill.jsonl import write_json_atomic
from mlx_selfdistill.records import Sample, read_records

HERE = Path(__file__).resolve().parent
STUDY = HERE / "results" / "mbpp_study"
RESULTS = HERE / "results" / "prefix_equivalence.json"


def samples_by_problem(path: Path) -> dict:
    return {s.problem_id: s for s in read_records(path, Sample)}  # a killed writer's partial tail is skipped


def compare(stored: Path, rerun: Path) -> dict:
    a, b = samples_by_problem(stored / "samples.jsonl"), samples_by_problem(rerun / "samples.jsonl")
    if a.keys() != b.keys():
        raise SystemExit(f"{rerun}: has {len(b)} problems where the stored stage has {len(a)}; "
                         "let the rerun finish first")
    same_text = {k for k in a if a[k].completion == b[k].completion}
    same_logprob = {k for k in a if a[k].mean_logprob == b[k].mean_logprob}
    return {"problems": len(a), "completions_equal": len(same_text), "mean_logprobs_bitwise_equal": len(same_logprob),
            "differ": [k for k in a if k not in same_text & same_logprob]}


def rerun_stage(stage: str, work: Path) -> float:
    t0 = time.time()
    subprocess.run([sys.executable, str(HERE / "mbpp_study.py"), "--child", stage, "--out",
                    str(work / "result.json"), "--work", str(work)], check=True)
    return time.time() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", required=True, help="a finished eval stage of the MBPP study (a base model's)")
    ap.add_argument("--rerun", help="a folder that already holds the rerun (its <stage>/samples.jsonl)")
    ap.add_argument("--label", help="what differs from the stored run besides the shared header (the entry's key)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    stored = STUDY / args.stage
    if not (stored / "samples.jsonl").exists():
        ap.error(f"{stored}: no stored samples for that stage")
    if args.rerun:
        work, seconds = Path(args.rerun), None
    else:
        work = Path(tempfile.mkdtemp(prefix="prefix-equivalence-"))
        seconds = round(rerun_stage(args.stage, work), 1)
    entry = {"stage": args.stage, "date": time.strftime("%Y-%m-%d"), "label": args.label,
             "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"), **compare(stored, work / args.stage),
             "rerun_seconds": seconds}
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    result[f"{args.stage} ({args.label})" if args.label else args.stage] = entry
    write_json_atomic(out, result)
    print(json.dumps(entry))


if __name__ == "__main__":
    main()
