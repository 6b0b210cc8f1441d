"""`sample.prompt_style`: a run samples, trains and (unless eval.prompt_style says otherwise)
evaluates in the style it names, as the MBPP study's teacher recipe did with EvalPlus's prompt;
and the teacher and self presets carry the recipes the study chose on validation."""

import json
from pathlib import Path

import pytest

from mlx_selfdistill.config import resolve_config
from mlx_selfdistill.errors import UserError
from mlx_selfdistill.loop import run
from mlx_selfdistill.models import load_model
from mlx_selfdistill.problems import load_problems
from mlx_selfdistill.prompts import get_style
from mlx_selfdistill.run_state import stale_stages

ROOT = Path(__file__).resolve().parents[1]
STUDY_RESULTS = ROOT / "benchmarks" / "results" / "mbpp_study" / "results"
SELECTED = STUDY_RESULTS / "select.teacher.json"


@pytest.mark.slow
def test_a_run_samples_trains_and_evaluates_in_the_sample_prompt_style(tmp_path):
    config = resolve_config(overrides={
        "name": "styled", "method": "ssd", "model": "tiny", "problems": "toy:train:6",
        "sample": {"n": 1, "temperature": 1.0, "max_tokens": 24, "seed": 3, "prompt_style": "evalplus"},
        "filter": {"drop_shortest": 0.0, "health": False}, "train": {"iters": 2},
        "eval": {"problems": "toy:heldout:3", "n": 1, "max_tokens": 16},
        "gate": {"holdout": 0.0}, "evaluate_base": False})
    run(config, tmp_path / "runs")
    rd = tmp_path / "runs" / "styled" / "round_1"
    style = get_style("evalplus")
    _, tokenizer = load_model("tiny")
    problems = {p.id: p for p in load_problems("toy:train:6")}
    samples = [json.loads(line) for line in open(rd / "samples.jsonl")]
    assert samples and all(s["prompt_style"] == "evalplus" for s in samples)
    assert all(s["prompt_text"] == style.render(tokenizer, problems[s["problem_id"]]) for s in samples)
    examples = [json.loads(line) for line in open(rd / "train.jsonl")]
    first = samples[0]
    expected_user = style.train_messages(problems[first["problem_id"]], "x")[0]
    assert expected_user in [e["messages"][0] for e in examples]
    evaluated = [json.loads(line) for line in open(next((rd / "eval").rglob("samples.jsonl")))]
    assert evaluated and all(s["prompt_style"] == "evalplus" for s in evaluated)


def test_the_sample_prompt_style_is_checked_when_the_config_is_read():
    with pytest.raises(UserError, match="unknown prompt style 'fancy'"):
        resolve_config(overrides={"sample": {"prompt_style": "fancy"}})
    with pytest.raises(UserError, match="contradict"):
        resolve_config(overrides={"sample": {"prompt_style": "evalplus", "raw_prompt": True}})


def test_changing_the_sample_prompt_style_makes_samples_and_evaluations_stale():
    assert stale_stages(["sample.prompt_style"], {}, {}) == {"sample", "eval"}


def test_the_teacher_preset_is_the_recipe_the_study_chose_on_validation():
    cfg = resolve_config(preset_name="teacher-qwen2.5-coder-0.5b")
    chosen = json.loads(SELECTED.read_text())
    assert (cfg.train["lr"], cfg.train["epochs"]) == (chosen["lr"], chosen["epochs"])
    assert cfg.teacher and "1.5B" in cfg.teacher and "0.5B" in cfg.model
    assert cfg.sample.prompt_style == "evalplus" and cfg.eval.prompt_style == "evalplus"
    assert (cfg.sample.n, cfg.sample.temperature, cfg.sample.top_p) == (1, 0.8, 0.95)
    assert cfg.gate.problems == "mbpp:validation" and cfg.problems == "mbpp:train"


def test_the_self_preset_is_the_recipe_the_study_chose_on_validation():
    cfg = resolve_config(preset_name="self-qwen2.5-coder-0.5b")
    chosen = json.loads((STUDY_RESULTS / "select.self.json").read_text())
    assert (cfg.train["lr"], cfg.train["epochs"]) == (chosen["lr"], chosen["epochs"])
    assert cfg.teacher is None and "0.5B" in cfg.model and cfg.method == "rft"
    assert (cfg.sample.n, cfg.sample.temperature, cfg.sample.top_p) == (8, 0.8, 0.95)
    assert cfg.filter["max_per_problem"] == 2
    assert cfg.sample.prompt_style == "evalplus" and cfg.eval.prompt_style == "evalplus"
    assert cfg.gate.problems == "mbpp:validation" and cfg.problems == "mbpp:train"
