"""A run directory across invocations: --overwrite removes what a change invalidates (issue 23,
reproduction 2: the adapter stayed byte-identical after `--set train.lr=0.005 --overwrite`),
a finished run says so and keeps its timings, a resumed one says so."""

import json
import shutil
from pathlib import Path

import pytest

from mlx_selfdistill.run_state import stale_stages

from conftest import main_exit
from test_stale_results import perturbed_tiny

SMALL = ["--preset", "tiny-rft", "--set", "problems=toy:train:8", "--set", "eval.problems=toy:heldout:3",
         "--set", "sample.n=2", "--set", "sample.max_tokens=48", "--set", "eval.n=1", "--set", "eval.max_tokens=48",
         "--set", "train.epochs=1"]


def _run(runs: Path, *extra, name="ow") -> int:
    return main_exit(["run", *SMALL, "--name", name, "--runs-dir", str(runs), "--json", *extra])


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_overwrite_with_another_learning_rate_retrains_and_keeps_the_samples(tmp_path, capsys):
    runs = tmp_path / "runs"
    rd = runs / "ow" / "round_1"
    assert _run(runs) == 0
    adapter, samples = _bytes(rd / "adapters" / "adapters.safetensors"), _bytes(rd / "samples.jsonl")
    base_eval = _bytes(runs / "ow" / "base" / "eval.json")
    capsys.readouterr()

    assert _run(runs, "--set", "train.lr=0.005") == 2  # refused without --overwrite, naming the field
    assert "differs in: train.lr" in capsys.readouterr().err

    assert _run(runs, "--set", "train.lr=0.005", "--overwrite") == 0
    err = capsys.readouterr().err
    assert "train.lr changed" in err and "round_1/adapters" in err
    assert _bytes(rd / "adapters" / "adapters.safetensors") != adapter  # retrained at the new rate
    assert json.loads((rd / "adapters" / "adapter_config.json").read_text())["train_config"]["lr"] == 0.005
    assert _bytes(rd / "samples.jsonl") == samples  # sampling did not depend on lr: kept
    assert _bytes(runs / "ow" / "base" / "eval.json") == base_eval


def test_overwrite_with_other_sampling_redoes_the_rounds_but_not_the_base_evaluation(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert _run(runs) == 0
    samples = _bytes(runs / "ow" / "round_1" / "samples.jsonl")
    base_eval = _bytes(runs / "ow" / "base" / "eval.json")
    assert _run(runs, "--set", "sample.temperature=1.3", "--overwrite") == 0
    assert _bytes(runs / "ow" / "round_1" / "samples.jsonl") != samples
    assert _bytes(runs / "ow" / "base" / "eval.json") == base_eval
    rec = json.loads((runs / "ow" / "round_1" / "samples.jsonl").read_text().splitlines()[0])
    assert rec["sampling"]["temperature"] == 1.3


def test_other_weights_under_the_same_model_path_are_a_change(tmp_path, capsys):
    runs, model = tmp_path / "runs", perturbed_tiny(tmp_path / "m", seed=1)
    # random weights pass no tests and rarely stop: keep every sample
    ssd = ("--model", str(model), "--method", "ssd", "--set", "filter.health=false")
    assert _run(runs, *ssd) == 0
    perturbed_tiny(model, seed=2)
    capsys.readouterr()
    assert _run(runs, *ssd) == 2
    assert "differs in: inputs.model" in capsys.readouterr().err
    assert _run(runs, *ssd, "--overwrite") == 0
    assert "removed the whole run directory" in capsys.readouterr().err


def test_a_finished_run_says_so_and_keeps_its_first_timings(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert _run(runs) == 0
    first = json.loads(capsys.readouterr().out)
    summary = _bytes(runs / "ow" / "summary.json")
    assert first["seconds"] >= first["rounds"][0]["seconds"]["train"] > 0
    assert _run(runs) == 0
    captured = capsys.readouterr()
    assert "already finished" in captured.err
    assert _bytes(runs / "ow" / "summary.json") == summary
    assert json.loads(captured.out)["seconds"] == first["seconds"]


def test_a_resumed_run_says_so_and_counts_the_earlier_work(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert _run(runs) == 0
    first = json.loads(capsys.readouterr().out)
    rd = runs / "ow" / "round_1"
    for p in (runs / "ow" / "summary.json", rd / "eval.json"):
        p.unlink()
    shutil.rmtree(rd / "eval")  # as if killed during the last evaluation
    assert _run(runs) == 0
    captured = capsys.readouterr()
    assert "resuming" in captured.err
    again = json.loads(captured.out)
    assert again["rounds"][0]["seconds"]["sample"] == first["rounds"][0]["seconds"]["sample"]
    assert again["seconds"] >= first["seconds"] - first["rounds"][0]["seconds"]["eval"]


@pytest.mark.parametrize("changed, stages", [
    (["name", "description", "workers", "evaluate_base"], set()),
    (["train.lr"], {"train"}),
    (["filter.dedup", "method"], {"train"}),
    (["sample.temperature"], {"sample"}),
    (["sample.raw_prompt"], {"sample", "eval"}),
    (["eval.n", "inputs.eval_problems"], {"eval"}),
    (["timeout_s"], {"verify", "eval"}),
    (["teacher"], {"sample"}),
    (["model"], {"all"}),
    (["inputs.model"], {"all"}),
    (["a_field_added_later"], {"all"}),  # unknown: nothing stale is kept by omission
])
def test_which_stages_a_change_invalidates(changed, stages):
    same = {"restart_from_base": True}
    assert stale_stages(changed, same, same) == stages


def test_rounds_only_remove_rounds_unless_each_round_builds_on_the_last():
    assert stale_stages(["rounds"], {"restart_from_base": True}, {"restart_from_base": True}) == set()
    assert stale_stages(["rounds"], {"restart_from_base": False}, {"restart_from_base": False}) == {"train"}
