"""Do the sandbox's MBPP verdicts equal a reference harness's? (issue 24)

The reference harness is what MBPP's and EvalPlus's base harnesses do: the candidate's code,
the record's setup code and its assert lines (test_list, and challenge_test_list where the
record has one, as the project's loader grades them) exec'd together in a fresh Python
process; it passes iff the process exits 0 within the time limit. Candidates are run there
as `nobody` when this runs as root, with an empty environment, in a throwaway folder, with
memory and CPU limits: model output is untrusted.

The project's side is the real sandbox (`verify_samples`) on the loader's Problem records.
Checked: every MBPP reference solution (974), and the model samples of any samples.jsonl
given (e.g. the study's evaluations of MBPP-test). Disagreements are listed in the JSON.

    python benchmarks/mbpp_harness.py                          # the 974 reference solutions
    python benchmarks/mbpp_harness.py --samples results/mbpp_study/eval.q05.base.test/samples.jsonl ...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlx_selfdistill.jsonl import write_json_atomic  # first package import: binds the BLAS before mlx

HERE = Path(__file__).resolve().parent
MBPP = HERE.parent.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"
OUT = HERE / "results" / "mbpp_harness.json"
TIMEOUT_S = 10.0
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else shutil.which("python3")


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    resource.setrlimit(resource.RLIMIT_CPU, (int(TIMEOUT_S) + 1, int(TIMEOUT_S) + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))


def reference_verdict(code: str, row: dict) -> bool:
    """MBPP's harness: code + setup + asserts in one fresh process; pass iff it exits 0."""
    program = "\n".join([code, row.get("test_setup_code", ""), *row["test_list"], *row.get("challenge_test_list", [])])
    with tempfile.TemporaryDirectory() as box:
        os.chmod(box, 0o777)
        path = Path(box) / "program.py"
        path.write_text(program)
        os.chmod(path, 0o644)
        cmd = [PYTHON, "-I", str(path)]
        if os.geteuid() == 0 and shutil.which("runuser"):
            cmd = [shutil.which("runuser"), "-u", "nobody", "--"] + cmd
        try:
            proc = subprocess.run(cmd, cwd=box, env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT_S,
                                  preexec_fn=_limits)
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0


def compare(problems: dict, rows: dict, samples: list, label: str) -> dict:
    from mlx_selfdistill.execution import verify_samples

    t0 = time.time()
    verdicts = verify_samples(list(problems.values()), samples, timeout_s=TIMEOUT_S)  # the same budget as the reference
    ours_s = time.time() - t0
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=2) as pool:
        reference = list(pool.map(lambda s: reference_verdict(s.code, rows[s.problem_id]), samples))
    ref_s = time.time() - t0
    disagree = [{"problem_id": s.problem_id, "sample_index": s.sample_index, "sandbox": v.status,
                 "sandbox_detail": v.detail[:300], "reference_passed": r}
                for s, v, r in zip(samples, verdicts, reference) if v.passed != r]
    return {"label": label, "candidates": len(samples), "agree": len(samples) - len(disagree),
            "disagree": len(disagree), "sandbox_passed": sum(v.passed for v in verdicts),
            "reference_passed": sum(reference), "sandbox_seconds": round(ours_s, 1),
            "reference_seconds": round(ref_s, 1), "disagreements": disagree}


def main(argv=None) -> None:
    from mlx_selfdistill.problems.mbpp import load_mbpp
    from mlx_selfdistill.records import Sample, read_records

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", nargs="*", default=[], help="samples.jsonl files of model answers to MBPP problems")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    rows = {f"Mbpp/{r['task_id']}": r for r in map(json.loads, MBPP.read_text().splitlines())}
    problems = {pr.id: pr for pr in load_mbpp(MBPP)}
    references = [Sample(problem_id=pid, sample_index=0, completion="", code=rows[pid]["code"]) for pid in problems]
    runs = [compare(problems, rows, references, "reference solutions")]
    for path in args.samples:
        samples = [s for s in read_records(path, Sample) if s.problem_id in problems]
        runs.append(compare(problems, rows, samples, str(Path(path).relative_to(HERE) if Path(path).is_relative_to(HERE)
                                                         else path)))
    out = {"harness": "code + test_setup_code + test_list + challenge_test_list exec'd in a fresh python3 -I "
                      f"process, pass iff exit 0 within {TIMEOUT_S:g}s", "records": len(rows),
           "loadable": len(problems), "runs": runs,
           "total": {"candidates": sum(r["candidates"] for r in runs), "agree": sum(r["agree"] for r in runs)}}
    write_json_atomic(Path(args.out), out)
    for r in runs:
        print(f"{r['label']}: {r['agree']}/{r['candidates']} agree (sandbox passed {r['sandbox_passed']}, "
              f"reference {r['reference_passed']})")
        for d in r["disagreements"][:10]:
            print(f"  {d}")


if __name__ == "__main__":
    main()
