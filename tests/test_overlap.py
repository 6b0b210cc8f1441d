"""Training and evaluation problems that overlap are reported (issue 23: `mbpp@8` vs `mbpp@5`
trained and evaluated on the same five problems without a word)."""

from pathlib import Path

from mlx_selfdistill.overlap import find_overlap
from mlx_selfdistill.problems import load_problems
from mlx_selfdistill.records import Problem

from conftest import main_exit

FIXTURES = Path(__file__).parent / "fixtures" / "problems"


def test_overlap_by_id_and_by_identical_prompt():
    mbpp = load_problems(f"mbpp:{FIXTURES / 'mbpp_full.jsonl'}")
    assert find_overlap(mbpp[:3], mbpp[:2]).same_id == [p.id for p in mbpp[:2]]
    renamed = [Problem(id="other/" + p.id, prompt="  " + p.prompt.replace(" ", "  "), tests=p.tests) for p in mbpp[:2]]
    found = find_overlap(mbpp[:3], renamed)
    assert found.same_id == [] and found.same_prompt == [p.id for p in renamed]
    assert "2 of 2 evaluation problems" in found.warning("train", "eval")
    assert find_overlap(mbpp[:1], mbpp[1:3]).warning("train", "eval") is None


def test_run_warns_when_it_evaluates_on_its_training_problems(tmp_path, capsys):
    code = main_exit(["run", "--preset", "tiny-ssd", "--name", "ov", "--runs-dir", str(tmp_path / "runs"),
                      "--problems", "toy:train:4", "--eval-problems", "toy:train:2", "-n", "1",
                      "--set", "sample.max_tokens=32", "--set", "eval.n=1", "--set", "eval.max_tokens=32",
                      "--set", "train.epochs=1", "--set", "evaluate_base=false", "--json"])
    assert code == 0
    err = capsys.readouterr().err
    assert "warning: 2 of 2 evaluation problems (--eval-problems toy:train:2) were also training problems" in err


def test_eval_adapter_warns_when_its_run_trained_on_the_evaluation_problems(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main_exit(["run", "--preset", "tiny-ssd", "--name", "a", "--runs-dir", str(runs),
                      "--problems", "toy:train:4", "-n", "1", "--set", "sample.max_tokens=32",
                      "--set", "train.epochs=1", "--set", "eval.problems=none", "--json"]) == 0
    capsys.readouterr()
    adapter = runs / "a" / "round_1" / "adapters"
    args = ["eval", "--adapter", str(adapter), "-n", "1", "--max-tokens", "16", "--out", str(tmp_path / "e"), "--json"]
    assert main_exit([*args, "--problems", "toy:train:3"]) == 0
    assert "3 of 3 evaluation problems (toy:train:3) were also training problems" in capsys.readouterr().err
    assert main_exit([*args, "--problems", "toy:heldout:3"]) == 0
    assert "warning" not in capsys.readouterr().err
