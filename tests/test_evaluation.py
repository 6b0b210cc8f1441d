"""Evaluation: verdicts -> pass@k numbers, and base vs adapter side by side on the tiny model."""

import json
from pathlib import Path
import random

import pytest

from mlx_selfdistill.cli import main
from mlx_selfdistill.evaluation import compare_models, evaluate_verdicts
from mlx_selfdistill.records import Problem, Verdict

from conftest import make_random_adapter


def _verdicts(pattern: dict) -> list:
    return [Verdict(problem_id=pid, sample_index=i, status="pass" if ok else "fail", passed_tests=int(ok),
                    total_tests=1) for pid, oks in pattern.items() for i, ok in enumerate(oks)]


def test_evaluate_verdicts_pass_at_k_and_difficulty_breakdown():
    problems = [Problem(id="a", prompt="", tests=[], difficulty="easy"),
                Problem(id="b", prompt="", tests=[], difficulty="hard")]
    result = evaluate_verdicts(problems, _verdicts({"a": [1, 1, 0, 1], "b": [0, 0, 1, 0]}), ks=(1, 2))
    assert result["pass_at_1"] == pytest.approx((3 / 4 + 1 / 4) / 2)
    # unbiased pass@2 for c of n=4: 1 - C(n-c, 2)/C(n, 2) -> a: 1, b: 1 - 3/6
    assert result["pass_at_k"]["2"] == pytest.approx((1.0 + 0.5) / 2)
    lo, hi = result["pass_at_1_ci"]
    assert lo < result["pass_at_1"] < hi
    assert result["by_difficulty"]["easy"]["pass_at_1"] == pytest.approx(0.75)
    assert result["by_difficulty"]["hard"]["pass_at_1"] == pytest.approx(0.25)



def test_interval_does_not_depend_on_verdict_arrival_order():
    rng = random.Random(0)
    problems = [Problem(id=f"p{i}", prompt="", tests=[]) for i in range(40)]
    verdicts = _verdicts({p.id: [rng.random() < 0.5 for _ in range(4)] for p in problems})
    shuffled = verdicts[:]
    rng.shuffle(shuffled)  # the sandbox returns verdicts in completion order
    assert evaluate_verdicts(problems, shuffled)["pass_at_1_ci"] == evaluate_verdicts(problems, verdicts)["pass_at_1_ci"]


def test_base_and_adapter_side_by_side_with_a_temperature_sweep(tmp_path):
    adapter = make_random_adapter(tmp_path / "adapter")
    results = compare_models("tiny", str(adapter), "toy:heldout:6", tmp_path / "out", n=2, temperature=1.0,
                             max_tokens=48, seed=5, sweep=[0.0, 1.0])
    assert set(results) == {"base", "adapter"}
    for res in results.values():
        assert res["num_problems"] == 6 and res["sampling"]["n"] == 2
        assert set(res["sweep"]["results"]) == {"0", "1"}
        best = res["sweep"]["best_temperature"]
        assert res["sweep"]["best_pass_at_1"] == max(r["pass_at_1"] for r in res["sweep"]["results"].values())
        assert res["sweep"]["results"][f"{best:g}"]["pass_at_1"] == res["sweep"]["best_pass_at_1"]
    # Same seeds, different weights: the adapter's completions differ from the base's.
    base = (Path(results["base"]["work_dir"]) / "samples.jsonl").read_text()
    adapted = (Path(results["adapter"]["work_dir"]) / "samples.jsonl").read_text()
    assert Path(results["base"]["work_dir"]).parent == tmp_path / "out" / "base"
    assert base != adapted
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["adapter"]["pass_at_1"] == \
        results["adapter"]["pass_at_1"]


def test_eval_cli_json_and_bad_k(tmp_path, capsys):
    code = main(["eval", "--problems", "toy:heldout:4", "--max-tokens", "48", "--temperature", "0",
                 "--out", str(tmp_path / "e"), "--json"])
    assert code in (0, None)
    printed = json.loads(capsys.readouterr().out)
    assert printed["base"]["sampling"]["n"] == 1  # greedy: one sample per problem is enough
    assert printed["base"]["timing"]["sampling_tokens_per_sec"] > 0
    main(["eval", "--problems", "toy:heldout:4", "--max-tokens", "48", "--temperature", "0",
          "--out", str(tmp_path / "e"), "--json"])  # resumed: nothing sampled, no rate to report
    assert json.loads(capsys.readouterr().out)["base"]["timing"]["sampling_tokens_per_sec"] is None
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--problems", "toy:heldout:4", "-n", "2", "-k", "1,5", "--out", str(tmp_path / "e2")])
    assert exc.value.code == 2
    assert "every k in 1..n" in capsys.readouterr().err
