"""--memory-gb: a measured probe picks batch tokens, accumulation and checkpointing to fit."""

import json

import pytest

from mlx_selfdistill import prompts
from mlx_selfdistill.errors import UserError
from mlx_selfdistill.models import load_model
from mlx_selfdistill.toy.world import toy_problems
from mlx_selfdistill.training import TrainConfig, train
from mlx_selfdistill.training.adapters import setup_trainable
from mlx_selfdistill.training.data import tokenize_examples
from mlx_selfdistill.training.memory_budget import GB, MARGIN, fit_line, optimizer_bytes, plan_memory, probe


def _examples(n=12):
    return [{"messages": prompts.chat_messages(p, prompts.assistant_message(p.canonical_solution))}
            for p in toy_problems("train", n)]


@pytest.fixture(scope="module")
def setup():
    model, tok = load_model("tiny")
    setup_trainable(model, TrainConfig())
    examples = tokenize_examples(tok, _examples())
    return model, examples


def test_fit_line_recovers_a_line_and_inverts_it():
    fit = fit_line([(100, 1000.0 + 5 * 100), (300, 1000.0 + 5 * 300)])
    assert fit.base == pytest.approx(1000.0) and fit.per_token == pytest.approx(5.0)
    assert fit.max_tokens(1000.0 + 5 * 250) == 250
    assert fit_line([(100, 7.0)]).per_token == 0.0


def test_the_probe_measures_more_memory_for_more_tokens_and_less_when_checkpointed(setup):
    model, examples = setup
    plain = probe(model, examples, TrainConfig(), checkpointed=False)
    checkpointed = probe(model, examples, TrainConfig(), checkpointed=True)
    assert plain.per_token > 0 and len(plain.points) == 2
    stopped = probe(model, examples, TrainConfig(), checkpointed=False, stop_above=0)
    assert len(stopped.points) == 1  # over the limit at once: no bigger measurement
    assert checkpointed.per_token < plain.per_token


def test_a_large_budget_keeps_the_step_a_smaller_one_checkpoints_and_accumulates(setup):
    model, examples = setup
    target = 2048
    roomy = plan_memory(model, examples, TrainConfig(batch_tokens=target, memory_gb=100.0))
    assert (roomy.batch_tokens, roomy.grad_accum, roomy.grad_checkpoint) == (target, 1, False)
    assert "checkpointed" not in roomy.fits  # plain fitted: no second probe
    # A budget where only about half the step fits with checkpointing: two micro-batches.
    checkpointed = probe(model, examples, TrainConfig(), checkpointed=True)
    need_half = checkpointed.predict(target // 2 + 64) + optimizer_bytes(model)
    budget = need_half / (1 - MARGIN) / GB
    tight = plan_memory(model, examples, TrainConfig(batch_tokens=target, memory_gb=budget))
    assert tight.grad_checkpoint and tight.grad_accum >= 2
    assert tight.batch_tokens * tight.grad_accum >= target  # the step keeps its size
    assert tight.predicted_peak_gb <= budget


def test_a_budget_below_one_example_is_a_one_line_error(setup):
    model, examples = setup
    with pytest.raises(UserError, match="memory_gb 0.0001: too small"):
        plan_memory(model, examples, TrainConfig(memory_gb=0.0001))


def test_train_with_a_budget_reports_the_plan_and_resumes_with_it(tmp_path):
    cfg = TrainConfig(iters=2, batch_tokens=1024, save_every=1, memory_gb=100.0)
    result = train("tiny", _examples(), tmp_path / "a", cfg)
    plan = result["memory_plan"]
    assert plan["budget_gb"] == 100.0 and plan["fits"]["plain"]["points"]
    assert result["peak_memory_gb"] > 0 and result["batch_tokens"] == 1024 and result["chunked_loss"]
    state = json.loads(next((tmp_path / "a").glob("checkpoints/*/state.json")).read_text())
    assert state["config"]["batch_tokens"] == 1024
    resumed = train("tiny", _examples(), tmp_path / "a", TrainConfig(**{**cfg.to_dict(), "iters": 3}), resume=True)
    assert resumed["start_step"] == 2 and resumed["memory_plan"] is None  # no new probe: the saved plan
