"""The MBPP study's summary (benchmarks/results/mbpp_study.json) follows from its committed run
records: every count, flip and p-value is recomputed here from the stored verdicts, and a seeded
sample of the flipped problems is graded again in the sandbox from the stored answers."""

import json
import random
from fractions import Fraction
from math import comb
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "benchmarks" / "results" / "mbpp_study"
SUMMARY = ROOT / "benchmarks" / "results" / "mbpp_study.json"
MBPP = ROOT.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"
SPLITS = {"mbpp_test": "test", "humaneval": "humaneval"}


def methods():
    return json.loads(SUMMARY.read_text())["methods"]


def base_of(method: dict) -> str:
    return "smol" if method["method"] == "control" else "q05"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def passed(folder: Path) -> set[str]:
    verdicts = read_jsonl(folder / "verdicts.jsonl")
    assert len({v["problem_id"] for v in verdicts}) == len(verdicts), "one greedy verdict per problem"
    return {v["problem_id"] for v in verdicts if v["status"] == "pass"}


def two_sided_exact_p(up: int, down: int) -> float:
    n = up + down
    tail = sum(Fraction(comb(n, i), 2 ** n) for i in range(min(up, down) + 1)) if n else Fraction(1, 2)
    return float(min(Fraction(1), 2 * tail))


@pytest.mark.parametrize("method", [m["method"] for m in methods()])
def test_the_summary_follows_from_the_committed_verdicts(method):
    entry = next(m for m in methods() if m["method"] == method)
    for key, split in SPLITS.items():
        base_dir = STUDY / f"eval.{base_of(entry)}.base.{split}"
        chosen_dir = STUDY / f"eval.{method}.chosen.{split}"
        base, after = passed(base_dir), passed(chosen_dir)
        got = entry[key]
        total = len(read_jsonl(chosen_dir / "verdicts.jsonl"))
        assert (got["base_passed"], got["distilled_passed"], got["total"]) == (len(base), len(after), total)
        assert sorted(after - base) == got["flipped_to_pass"] and sorted(base - after) == got["flipped_to_fail"]
        assert (got["flips_up"], got["flips_down"]) == (len(after - base), len(base - after))
        assert got["mcnemar_p"] == pytest.approx(two_sided_exact_p(len(after - base), len(base - after)), rel=1e-9)
        # The distilled side is the base model plus an adapter, both decoded greedily on the same problems.
        base_fp, chosen_fp = (json.loads((d / "fingerprint.json").read_text()) for d in (base_dir, chosen_dir))
        assert "+adapter@sha256:" in chosen_fp["model"] and "+adapter" not in base_fp["model"]
        assert chosen_fp["model"].startswith(base_fp["model"])
        assert base_fp["problems"] == chosen_fp["problems"] and base_fp["sampling"] == chosen_fp["sampling"]
        assert chosen_fp["sampling"]["temperature"] == 0.0


@pytest.mark.skipif(not MBPP.exists(), reason=f"the real MBPP file is absent ({MBPP})")
@pytest.mark.parametrize("method", ["teacher", "self"])
def test_flipped_mbpp_test_answers_grade_the_same_again(method):
    from mlx_selfdistill.execution import verify_samples
    from mlx_selfdistill.fingerprint import problems_identity
    from mlx_selfdistill.problems import load_problems
    from mlx_selfdistill.records import Sample

    problems = load_problems(f"mbpp:{MBPP}:test")
    chosen_dir = STUDY / f"eval.{method}.chosen.test"
    assert problems_identity(problems) == json.loads((chosen_dir / "fingerprint.json").read_text())["problems"]
    entry = next(m for m in methods() if m["method"] == method)["mbpp_test"]
    rng = random.Random(0)
    flipped = rng.sample(entry["flipped_to_pass"], 6) + rng.sample(entry["flipped_to_fail"], 6)
    for folder in (STUDY / "eval.q05.base.test", chosen_dir):
        samples = [Sample.from_dict(r) for r in read_jsonl(folder / "samples.jsonl") if r["problem_id"] in flipped]
        stored = {v["problem_id"]: v["status"] for v in read_jsonl(folder / "verdicts.jsonl")}
        again = verify_samples(problems, samples, timeout_s=10.0)
        assert len(again) == len(flipped)
        assert {v.problem_id: v.status == "pass" for v in again} == \
            {pid: stored[pid] == "pass" for pid in flipped}
