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
from mlx_selfdistill.sampling.exact import SMALL_PRODUCT_LIMIT, attention_span, row_floor
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


def test_the_attention_span_depends_on_the_request_alone():
    assert attention_span(100, 412) == 512
    assert attention_span(101, 412) == 1024
    assert attention_span(1, 1) == 64


def prompt_cache(model, tokens):
    cache = make_prompt_cache(model)
    mx.eval(model(mx.array(tokens)[None], cache=cache))
    return cache


def step_row0(model, span, other_prompt):
    """Row 0's logits and mask after one decode step, with row 1 holding `other_prompt` (or free)."""
    mine = prompt_cache(model, [5, 9, 14, 3, 7])
    batch = SlotBatch(mine, 2, span)
    batch.admit([0], mine)
    if other_prompt:
        batch.admit([1], prompt_cache(model, other_prompt))
    logits = batch.forward(model, [11, 11])
    return np.array(logits[0]), np.array(batch.mask(None)[0]), batch.hi - batch.lo


def test_with_a_span_a_rows_window_and_logits_do_not_depend_on_the_other_row(tiny):
    model = tiny[0]
    longer = list(range(20, 60))  # a row whose prompt reaches further left than row 0's
    alone_logits, alone_mask, alone_cols = step_row0(model, 64, None)
    beside_logits, beside_mask, beside_cols = step_row0(model, 64, longer)
    assert alone_cols == beside_cols == 63  # the span's 64 columns, whatever rows are live
    assert np.array_equal(alone_mask, beside_mask)  # the same masked columns before row 0's keys
    assert np.array_equal(alone_logits, beside_logits)  # bit for bit


def test_without_a_span_the_window_follows_the_longest_row(tiny):
    model = tiny[0]
    _, alone_mask, alone_cols = step_row0(model, None, None)
    _, beside_mask, beside_cols = step_row0(model, None, list(range(20, 60)))
    assert alone_cols < beside_cols and alone_mask.shape != beside_mask.shape


def test_a_row_that_outgrows_its_span_is_refused(tiny):
    model = tiny[0]
    with pytest.raises(ValueError, match="does not fit a span"):
        step_row0(model, 64, list(range(100)))


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
