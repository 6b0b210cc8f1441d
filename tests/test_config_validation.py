"""The whole run config is checked, and converted to its fields' types, before any work
(issue 23, reproductions 3 and 4)."""

import json

import pytest

from mlx_selfdistill.config import RunConfig, resolve_config
from mlx_selfdistill.errors import UserError

from conftest import main_exit

# What `run` passes when no flag is given: every value None ("not given").
ALL_FLAGS_LEFT_OUT = {
    "name": None, "method": None, "model": None, "teacher": None, "problems": None, "rounds": None,
    "sample": {"n": None, "temperature": None, "top_k": None, "top_p": None, "seed": None},
    "eval": {"problems": None, "temperature": None, "prompt_style": None},
    "train": {"iters": None, "memory_gb": None}, "unsafe_no_isolation": None,
}


def test_a_flag_only_config_resolves_every_default():
    assert resolve_config(overrides=ALL_FLAGS_LEFT_OUT).identity() == RunConfig().identity()
    partial = {**ALL_FLAGS_LEFT_OUT, "sample": {**ALL_FLAGS_LEFT_OUT["sample"], "n": 2}}
    cfg = resolve_config(overrides=partial)
    assert cfg.sample.n == 2 and cfg.sample.temperature == RunConfig().sample.temperature
    assert cfg.train == {} and cfg.eval.problems == RunConfig().eval.problems


@pytest.mark.slow
def test_the_readmes_flag_only_run_runs(tmp_path, capsys):
    """The README's flag-only command, as written (it crashed with a TypeError in config.py)."""
    runs = tmp_path / "runs"
    code = main_exit(["run", "--method", "rft", "--model", "tiny", "--problems", "toy:train:20", "--eval-problems",
                      "toy:heldout:10", "--name", "np", "--runs-dir", str(runs), "--json"])
    assert code == 0, capsys.readouterr().err
    saved = json.loads((runs / "np" / "config.json").read_text())
    assert saved["sample"]["temperature"] == 1.0 and saved["eval"]["n"] == 4
    # 20 problems, 2 held back for the validation gate, n=4 by default
    assert json.loads(capsys.readouterr().out)["rounds"][0]["samples"] == 72


def test_set_values_take_their_fields_types():
    cfg = resolve_config(preset_name="tiny-rft", assignments=[
        "train.lr=2e-4", "sample.temperature=1", "rounds=2.0", "eval.sweep=0.6,1.0", "train.num_layers=2",
        "filter.max_per_problem=3", "name=123"])
    assert cfg.train["lr"] == 2e-4 and isinstance(cfg.train["lr"], float)  # YAML 1.1 reads 2e-4 as a string
    assert isinstance(cfg.sample.temperature, float) and cfg.rounds == 2 and isinstance(cfg.rounds, int)
    assert cfg.eval.sweep == [0.6, 1.0] and cfg.train["num_layers"] == 2 and cfg.filter["max_per_problem"] == 3
    assert cfg.name == "123"
    assert resolve_config(assignments=["train.num_layers=all"]).train["num_layers"] == "all"


@pytest.mark.parametrize("assignment, message", [
    ("train.lr=abc", "config key train.lr: expected a number (float), got 'abc'"),
    ("sample.temperature=hot", "config key sample.temperature: expected a number (float)"),
    ("rounds=two", "config key rounds: expected an integer (int)"),
    ("sample.n=none", "config key sample.n: expected an integer (int), got none"),
    ("evaluate_base=maybe", "config key evaluate_base: expected true or false (bool)"),
    ("filter.dedup=3", "config key filter.dedup: expected true or false (bool)"),
    ("train.lrr=0.1", "unknown key 'train.lrr'"),
    ("filter.bogus=1", "unknown key 'filter.bogus'"),
    ("train.fine_tune_type=qlora", "fine_tune_type 'qlora'"),
    ("train.epochs=0", "epochs must be a positive number"),
    ("eval.max_tokens=0", "eval.n and eval.max_tokens must be at least 1"),
])
def test_a_bad_value_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, assignment, message):
    runs = tmp_path / "runs"
    code = main_exit(["run", "--preset", "tiny-rft", "--name", "bad", "--set", assignment, "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not runs.exists()  # nothing written: the corrected command is not blocked by a half config


def test_a_bad_problem_source_writes_no_run_directory(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main_exit(["run", "--name", "x", "--problems", "nosuch", "--runs-dir", str(runs)]) == 2
    assert "unknown problem source 'nosuch'" in capsys.readouterr().err
    assert not runs.exists()


def test_run_config_checks_train_and_filter_directly():
    with pytest.raises(UserError, match="train.lr"):
        RunConfig(train={"lr": "fast"})
    with pytest.raises(UserError, match="unknown filter"):
        RunConfig(filter={"filters": ["bogus"]})
