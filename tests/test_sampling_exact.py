"""Exact sampling (sampling/exact.py): a sample's bits depend on (seed, problem, index) alone,
on the embedded tiny model and, where the folder has it, the real SmolLM2 GGUF."""

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import SMOLLM2, main_exit, needs_real_model, real_model_file
from mlx_lm.models.cache import make_prompt_cache

from mlx_selfdistill.errors import UserError
from mlx_selfdistill.jsonl import read_jsonl
from mlx_selfdistill.models import load_model
from mlx_selfdistill.problems import load_problems
from mlx_selfdistill.sampling import (DrawSettings, Request, SamplingEngine, SamplingParams, sample_problems,
                                     sequence_seed)
from mlx_selfdistill.sampling.exact import SMALL_PRODUCT_LIMIT, row_floor
from mlx_selfdistill.sampling.row_attention import per_row_attention
from mlx_selfdistill.sampling.slots import SlotBatch
from mlx_selfdistill.toy.world import toy_problems

MBPP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mbpp" / "mbpp.jsonl"
SMOL = real_model_file(SMOLLM2)
HOT = SamplingParams(temperature=1.2, top_k=20, top_p=0.95, seed=5)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


class TwoProjections(nn.Module):
    def __init__(self, quantized: bool):
        super().__init__()
        make = (lambda i, o: nn.QuantizedLinear(i, o, bits=4)) if quantized else nn.Linear
        self.q_proj, self.k_proj = make(896, 896), make(896, 128)  # Qwen2.5-Coder-0.5B's shapes


@pytest.mark.parametrize("quantized", [False, True])
def test_the_row_floor_puts_the_smallest_projection_above_the_small_product_limit(quantized):
    floor = row_floor(TwoProjections(quantized))
    assert floor == 9  # measured: the 0.5B's k_proj keeps its bits from 9 rows (row_invariance.json)
    assert floor * 896 * 128 > SMALL_PRODUCT_LIMIT >= (floor - 1) * 896 * 128


def test_the_tiny_models_floor_comes_from_its_128_by_128_projections(tiny):
    assert row_floor(tiny[0]) == SMALL_PRODUCT_LIMIT // (128 * 128) + 1


def prompt_cache(model, tokens):
    cache = make_prompt_cache(model)
    mx.eval(model(mx.array(tokens)[None], cache=cache))
    return cache


def step_row0(model, per_row, other_prompt, rows=2):
    """Row 0's logits after one decode step, with row 1 holding `other_prompt` (or free)."""
    mine = prompt_cache(model, [5, 9, 14, 3, 7])
    batch = SlotBatch(mine, rows, per_row=per_row)
    batch.admit([0], mine)
    if other_prompt:
        batch.admit([1], prompt_cache(model, other_prompt))
    with per_row_attention(model):
        logits = batch.forward(model, [11] * rows)
    return np.array(logits[0]), batch.hi - batch.lo


# A row whose prompt reaches 35 columns further left than row 0's: 35 masked columns before row
# 0's keys in the batch's window, a count MLX's CPU attention sums differently.
LONGER = list(range(20, 60))


def test_per_row_attention_makes_a_rows_logits_independent_of_the_other_rows(tiny):
    model = tiny[0]
    alone, alone_cols = step_row0(model, True, None)
    beside, beside_cols = step_row0(model, True, LONGER)
    assert alone_cols < beside_cols  # the batch's window grew ...
    assert np.array_equal(alone, beside)  # ... and row 0's logits kept every bit
    # Without it the same row's bits move with the window (what exact mode exists to stop).
    masked_alone, _ = step_row0(model, False, None)
    masked_beside, _ = step_row0(model, False, LONGER)
    assert not np.array_equal(masked_alone, masked_beside)
    np.testing.assert_allclose(masked_beside, beside, rtol=1e-4, atol=1e-4)  # the same attention, in other bits


def test_per_row_attention_leaves_other_caches_to_mlx_lm(tiny):
    """While routed, a prompt's prefill (an mlx_lm KVCache) computes what it computes unrouted,
    and the module's own function is back afterwards."""
    import mlx_lm.models.llama as llama

    model = tiny[0]
    original = llama.scaled_dot_product_attention
    plain = np.array(model(mx.array([[5, 9, 14, 3, 7]]), cache=make_prompt_cache(model)))
    with per_row_attention(model):
        assert llama.scaled_dot_product_attention is not original
        routed = np.array(model(mx.array([[5, 9, 14, 3, 7]]), cache=make_prompt_cache(model)))
    assert llama.scaled_dot_product_attention is original
    assert np.array_equal(plain, routed)


def test_a_model_whose_attention_cannot_be_reached_is_refused(tiny, monkeypatch):
    import mlx_lm.models.llama as llama

    monkeypatch.setattr(llama, "scaled_dot_product_attention", lambda q, k, v, cache, scale, mask, sinks=None:
                        mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask))
    monkeypatch.setattr(llama.scaled_dot_product_attention, "routes", None, raising=False)  # looks routed already
    with pytest.raises(UserError, match="cannot reach this model's attention"):
        step_row0(tiny[0], True, None)


def draw(model, tokenizer, max_batch, exact=True, n=3, problems=None):
    problems = problems or toy_problems("heldout", 4, seed=2)
    reqs = [Request(prompt=tokenizer.encode(p.prompt), sample_indices=list(range(n)),
                    seeds=[sequence_seed(HOT.seed, p.id, i) for i in range(n)], tag=p.id) for p in problems]
    engine = SamplingEngine(model, tokenizer, HOT, max_tokens=24, max_batch=max_batch, exact=exact)
    got = {(f.tag, f.sample_index): (f.tokens, f.logprob_sum, f.sampling_logprob_sum) for f in engine.run(reqs)}
    return got, engine


def test_exact_samples_have_the_same_bits_at_any_max_batch(tiny):
    reference, _ = draw(*tiny, max_batch=16)
    for max_batch in (1, 5):
        got, _ = draw(*tiny, max_batch=max_batch)
        assert got == reference  # tokens and log-probability sums, bit for bit


def test_an_exact_batch_never_decodes_fewer_rows_than_the_floor(tiny):
    _, engine = draw(*tiny, max_batch=4)
    assert engine.row_floor == row_floor(tiny[0]) > 4
    assert engine.batch.rows == engine.row_floor  # padded up, and the end-of-run compaction kept the floor
    _, plain = draw(*tiny, max_batch=4, exact=False)
    assert plain.batch.rows <= 4


def test_a_file_is_never_resumed_with_the_other_setting(tiny, tmp_path):
    model, tokenizer = tiny
    problems = toy_problems("heldout", 2)
    out = tmp_path / "s.jsonl"
    sample_problems(model, tokenizer, problems, DrawSettings(n=1, max_tokens=16, exact=True), out_path=out)
    assert all(r["sampling"]["exact"] is True for r in read_jsonl(out))
    with pytest.raises(UserError, match="drawn with --exact"):
        sample_problems(model, tokenizer, problems, DrawSettings(n=2, max_tokens=16), out_path=out)
    plain = tmp_path / "plain.jsonl"
    sample_problems(model, tokenizer, problems, DrawSettings(n=1, max_tokens=16), out_path=plain)
    assert all("exact" not in r["sampling"] for r in read_jsonl(plain))  # files of earlier versions still match
    with pytest.raises(UserError, match="drawn without --exact"):
        sample_problems(model, tokenizer, problems, DrawSettings(n=2, max_tokens=16, exact=True), out_path=plain)


def test_the_sample_command_takes_exact(tmp_path, capsys):
    out = tmp_path / "cli.jsonl"
    args = ["sample", "--problems", "toy", "--limit", "2", "-n", "2", "--max-tokens", "16", "-o", str(out)]
    assert main_exit(args + ["--exact", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 4
    assert all(r["sampling"]["exact"] for r in read_jsonl(out))
    assert main_exit(args + ["-n", "3"]) == 2
    assert "drawn with --exact" in capsys.readouterr().err


@needs_real_model(SMOL)
def test_real_model_exact_samples_have_the_same_bits_at_any_max_batch(tmp_path, monkeypatch):
    # Without --exact these differ in their log-probability bits (benchmarks/batch_invariance.json).
    monkeypatch.setenv("MLX_SELFDISTILL_GGUF_CACHE", str(tmp_path))
    model, tokenizer = load_model(str(SMOL))
    problems = (load_problems(f"mbpp:{MBPP}:train", limit=3) if MBPP.exists()
                else toy_problems("heldout", 3, seed=3))
    params = SamplingParams(temperature=0.8, top_p=0.95, seed=0)
    draws = [DrawSettings(n=2, params=params, max_tokens=32, prompt_style="evalplus", max_batch=max_batch, exact=True)
             for max_batch in (6, 2)]
    runs = [sample_problems(model, tokenizer, problems, draw) for draw in draws]
    first, second = ({s.key: (s.completion, s.mean_logprob, s.mean_sampling_logprob) for s in run} for run in runs)
    assert first == second


def test_an_exact_evaluation_is_its_own_evaluation(tmp_path, capsys):
    args = ["eval", "--problems", "toy:heldout:2", "--max-tokens", "16", "--temperature", "0",
            "--out", str(tmp_path / "e"), "--json"]
    assert main_exit(args) == 0
    plain = json.loads(capsys.readouterr().out)["base"]
    assert main_exit(args + ["--exact"]) == 0
    exact = json.loads(capsys.readouterr().out)["base"]
    assert "exact" not in plain["sampling"] and exact["sampling"]["exact"] is True
    assert exact["work_dir"] != plain["work_dir"]  # never resumed from the other setting's samples
    assert exact["timing"]["sampling_tokens_per_sec"] > 0  # sampled anew


def test_a_run_set_to_exact_samples_exactly(tmp_path):
    from mlx_selfdistill.config import resolve_config
    from mlx_selfdistill.loop import Run

    config = resolve_config(overrides={"name": "x", "model": "tiny", "problems": "toy:train:3"},
                            assignments=["sample.n=1", "sample.max_tokens=16", "sample.exact=true"])
    assert config.sample.exact is True
    samples = Run(config, tmp_path).sample(1)
    assert samples and all(s.sampling["exact"] is True for s in samples)


def test_the_sample_table_shows_the_row_floor(tmp_path, capsys):
    out = tmp_path / "t.jsonl"
    assert main_exit(["sample", "--problems", "toy", "--limit", "1", "--max-tokens", "8", "-o", str(out), "--exact"]) == 0
    printed = capsys.readouterr().out
    assert "row floor" in printed and str(row_floor(load_model("tiny")[0])) in printed
