"""How many verified problems the `code:` source harvests from real packages' sdists.

Fetches each package's sdist from the registry with pip (`pip download --no-deps
--no-binary :all:`, pinned versions), harvests it (mlx_selfdistill.problems.code_harvest:
read from the archive, never installed or extracted), and re-runs every kept problem's
reference through a fresh sandbox pool as a candidate, so each count below is of problems
whose reference passes its own tests in the sandbox. Goal (issue 26): >= 400 kept problems
from <= 5 packages.

    python benchmarks/harvest.py                            # the default five packages
    python benchmarks/harvest.py --packages toolz==1.2.0 boltons==26.2.0
    python benchmarks/harvest.py --sdists DIR               # sdists already downloaded

Writes benchmarks/results/harvest.json: per package, the counts of the harvest report
(functions, found, kept, dropped by reason, visible/hidden tests, splits) and the
re-check's pass count; totals; the largest package.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlx_selfdistill  # noqa: F401  (first, as every entry point)
from mlx_selfdistill.execution.verify import verify_samples
from mlx_selfdistill.jsonl import write_json_atomic
from mlx_selfdistill.problems.code_harvest import harvest
from mlx_selfdistill.records import Sample

RESULTS = Path(__file__).resolve().parent / "results" / "harvest.json"
PACKAGES = ["algorithms==1.0.1", "more-itertools==11.2.1", "boltons==26.2.0", "toolz==1.2.0", "pydash==8.1.0"]
GOAL = 400


def download(spec: str, dest: Path) -> Path:
    before = set(dest.iterdir())
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", str(dest), spec]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"pip download {spec} failed: {proc.stderr.strip().splitlines()[-1:]}")
    new = sorted(set(dest.iterdir()) - before) or matching_sdists(spec, dest)
    if not new:
        raise SystemExit(f"pip download {spec}: no sdist appeared in {dest}")
    return new[0]


def matching_sdists(spec: str, folder: Path) -> list[Path]:
    name, _, version = spec.partition("==")
    stem = name.lower().replace("-", "_")
    return sorted(p for p in folder.iterdir() if p.name.lower().replace("-", "_").startswith(f"{stem}_{version}"))


def measure(sdist: Path, workers) -> dict:
    t0 = time.perf_counter()
    h = harvest(sdist, use_cache=False, workers=workers)
    seconds = time.perf_counter() - t0
    samples = [Sample(p.id, 0, p.canonical_solution, p.canonical_solution) for p in h.problems]
    verdicts = verify_samples(h.problems, samples, workers=workers) if samples else []
    r = h.report
    return {
        "sdist": sdist.name, "sha256": hashlib.sha256(sdist.read_bytes()).hexdigest(),
        "version": r.version, "files": r.files, "test_files": r.test_files, "functions": r.functions,
        "found": r.found, "kept": r.kept, "dropped": r.dropped, "tests": r.tests, "splits": r.splits,
        "skipped_files": len(r.skipped_files), "reference_failures": r.reference_failures,
        "recheck_pass": sum(v.passed for v in verdicts), "harvest_seconds": round(seconds, 2),
        "problems_with_hidden_tests": sum(1 for p in h.problems if p.metadata["hidden_tests"]),
        "problems_with_context": sum(1 for p in h.problems if p.metadata["helpers"]),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packages", nargs="+", default=PACKAGES, help="pip specs (pin the version)")
    ap.add_argument("--sdists", type=Path, help="a folder of sdists to use instead of downloading")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        dest = args.sdists or Path(tmp)
        per = {}
        for spec in args.packages:
            found = matching_sdists(spec, dest) if args.sdists else []
            sdist = found[0] if found else download(spec, dest)
            per[spec] = measure(sdist, args.workers)
            row = per[spec]
            print(f"{spec:24} functions {row['functions']:4}  found {row['found']:4}  kept {row['kept']:4}  "
                  f"recheck pass {row['recheck_pass']:4}  ({row['harvest_seconds']}s)", flush=True)
    total = sum(r["kept"] for r in per.values())
    largest = max(per, key=lambda k: per[k]["kept"])
    result = {
        "what": "problems harvested by code:PATH from registry sdists; kept = reference passes its tests in the sandbox",
        "packages": per,
        "totals": {"packages": len(per), "functions": sum(r["functions"] for r in per.values()),
                   "found": sum(r["found"] for r in per.values()), "kept": total,
                   "recheck_pass": sum(r["recheck_pass"] for r in per.values()),
                   "visible_tests": sum(r["tests"].get("visible", 0) for r in per.values()),
                   "hidden_tests": sum(r["tests"].get("hidden", 0) for r in per.values())},
        "goal": {"kept_at_least": GOAL, "packages_at_most": 5, "met": total >= GOAL and len(per) <= 5},
        "largest": {"package": largest, "kept": per[largest]["kept"], "splits": per[largest]["splits"]},
        "python": platform.python_version(), "machine": platform.machine(),
    }
    write_json_atomic(args.out, result)
    print(json.dumps(result["totals"]), f"goal met: {result['goal']['met']}", f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
