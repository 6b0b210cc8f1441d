"""A style's header prefilled once per run (sampling/prefix.py): on the embedded tiny model
and, where the folder has it, the real SmolLM2 GGUF."""

from pathlib import Path

import mlx.core as mx
import pytest
from conftest import SMOLLM2, needs_real_model, real_model_file
from mlx_lm import stream_generate
from mlx_lm.models.cache import make_prompt_cache

from mlx_selfdistill.models import load_model, prompt_tokens
from mlx_selfdistill.problems import load_problems
from mlx_selfdistill.sampling import (DrawSettings, Request, SamplingEngine, SamplingParams, sample_problems,
                                     sequence_seed)
from mlx_selfdistill.sampling.prefix import HeaderCache, shared_length, style_header
from mlx_selfdistill.toy.world import toy_problems

MBPP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mbpp" / "mbpp.jsonl"
SMOL = real_model_file(SMOLLM2)
HOT = SamplingParams(temperature=1.2, top_k=20, top_p=0.95, seed=7)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def mbpp_problems():
    if MBPP.exists():  # real MBPP prompts when the shared data is beside the checkout
        return load_problems(f"mbpp:{MBPP}:validation", limit=6)
    return toy_problems("heldout", 6, seed=3)


def toy():
    """The tiny model's own world and wording (chat style): its outputs depend on the prompt
    (on MBPP prompts it repeats one pattern whatever it is given)."""
    return toy_problems("heldout", 6, seed=3)


def requests(tokenizer, style, header, n=2, problems=toy):
    out = []
    for j, p in enumerate(problems()):
        tokens = prompt_tokens(tokenizer, p, style=style)
        out.append(Request(tokens, list(range(n)), [sequence_seed(7, p.id, i) for i in range(n)], tag=j,
                           shared=shared_length(tokens, header)))
    return out


def outputs(model, tokenizer, params, reqs, **kw):
    engine = SamplingEngine(model, tokenizer, params, max_tokens=40, **kw)
    got = {(f.tag, f.sample_index): (f.tokens, f.logprob_sum) for f in engine.run(reqs)}
    return got, engine


def unshared(reqs):
    return [Request(r.prompt, r.sample_indices, r.seeds, r.tag) for r in reqs]


def assert_same_tokens_shared_or_not(model, tokenizer, params, reqs, **kw) -> SamplingEngine:
    """Same tokens, log-probabilities within float noise; the unshared run's engine."""
    shared, _ = outputs(model, tokenizer, params, reqs, **kw)
    plain, plain_engine = outputs(model, tokenizer, params, unshared(reqs), **kw)
    assert shared.keys() == plain.keys()
    for key in shared:
        assert shared[key][0] == plain[key][0], key
        assert shared[key][1] == pytest.approx(plain[key][1], abs=1e-3), key
    return plain_engine


def test_every_prompt_of_a_style_starts_with_its_header(tiny):
    _, tokenizer = tiny
    for style in ("chat", "evalplus"):
        header = style_header(tokenizer, style)
        assert len(header) >= 8, style
        reqs = requests(tokenizer, style, header, problems=mbpp_problems)
        assert all(r.shared == len(header) for r in reqs), style
    assert style_header(tokenizer, "raw") == []  # a raw prompt has no fixed start


def test_shared_length_needs_the_whole_header_and_a_token_after_it():
    assert shared_length([1, 2, 3, 4], [1, 2, 3]) == 3
    assert shared_length([1, 2, 9, 4], [1, 2, 3]) == 0
    assert shared_length([1, 2, 3], [1, 2, 3]) == 0  # the last prompt token is prefilled for its logits
    assert shared_length([1, 2, 3], []) == 0


def test_greedy_with_the_header_shared_is_mlx_lm_generate_after_the_header(tiny):
    """Token for token what mlx_lm generates from a cache that holds the header's prefill:
    the engine reuses the stored header exactly, for the first prompt (a miss) and the rest."""
    model, tokenizer = tiny
    header = style_header(tokenizer, "chat")
    reqs = requests(tokenizer, "chat", header, n=1)
    got, engine = outputs(model, tokenizer, SamplingParams(temperature=0), reqs, max_batch=5)
    assert engine.headers.stats() == {"hits": len(reqs) - 1, "misses": 1,
                                      "tokens_reused": (len(reqs) - 1) * len(header)}
    for r in reqs:
        cache = make_prompt_cache(model)
        model(mx.array(header)[None], cache=cache)
        ref = [out.token for out in stream_generate(model, tokenizer, r.prompt[len(header):], max_tokens=40,
                                                    prompt_cache=cache)]
        assert got[(r.tag, 0)][0] == ref, r.tag


@pytest.mark.parametrize("params", [SamplingParams(temperature=0), HOT], ids=["greedy", "sampled"])
def test_sharing_the_header_changes_no_token(tiny, params):
    """A split prefill may differ from a whole one in the floats' last bits (the BLAS may
    sum another way for another row count), never in what is sampled."""
    model, tokenizer = tiny
    header = style_header(tokenizer, "chat")
    reqs = requests(tokenizer, "chat", header)
    plain_engine = assert_same_tokens_shared_or_not(model, tokenizer, params, reqs, max_batch=5)
    assert plain_engine.headers.stats() == {"hits": 0, "misses": 0, "tokens_reused": 0}


def test_a_prompts_samples_do_not_depend_on_the_prompts_before_it(tiny):
    """The stored header came from another prompt's run; resuming with one prompt alone
    (a fresh engine, a miss) draws the same samples. (Their log-probabilities may differ in
    the last bits: the rows beside a sequence change the attention's column span.)"""
    model, tokenizer = tiny
    header = style_header(tokenizer, "chat")
    reqs = requests(tokenizer, "chat", header, n=3)
    together, _ = outputs(model, tokenizer, HOT, reqs, max_batch=4)
    last = reqs[-1]
    alone, engine = outputs(model, tokenizer, HOT, [last], max_batch=4)
    assert engine.headers.stats() == {"hits": 0, "misses": 1, "tokens_reused": 0}
    mine = {k: v for k, v in together.items() if k[0] == last.tag}
    assert alone.keys() == mine.keys()
    for key in alone:
        assert alone[key][0] == mine[key][0], key
        assert alone[key][1] == pytest.approx(mine[key][1], abs=1e-3), key


def test_the_stored_header_is_never_written_by_the_prompts_that_reuse_it(tiny):
    model, tokenizer = tiny
    header = style_header(tokenizer, "chat")
    reqs = requests(tokenizer, "chat", header)
    _, engine = outputs(model, tokenizer, HOT, reqs, max_batch=3)
    fresh = make_prompt_cache(model)
    model(mx.array(header)[None], cache=fresh)
    assert HeaderCache.supports(fresh)
    stored = engine.headers._store[tuple(header)]
    for layer, (keys, values) in zip(fresh, stored):
        assert mx.array_equal(layer.keys[..., :len(header), :], keys).item()
        assert mx.array_equal(layer.values[..., :len(header), :], values).item()


def test_sample_problems_reports_the_header_cache(tiny):
    model, tokenizer = tiny
    stats = {}
    sample_problems(model, tokenizer, toy()[:3], DrawSettings(params=SamplingParams(temperature=0), max_tokens=8,
                                                                prompt_style="chat"), stats=stats)
    header = style_header(tokenizer, "chat")
    assert stats["header_cache"] == {"hits": 2, "misses": 1, "tokens_reused": 2 * len(header)}


@needs_real_model(SMOL)
def test_real_model_greedy_outputs_are_the_same_with_the_header_shared(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_SELFDISTILL_GGUF_CACHE", str(tmp_path))
    model, tokenizer = load_model(str(SMOL))
    header = style_header(tokenizer, "evalplus")
    assert len(header) >= 20  # SmolLM2's template has a system turn before the instruction
    reqs = requests(tokenizer, "evalplus", header, n=1, problems=mbpp_problems)
    assert all(r.shared for r in reqs)
    params = SamplingParams(temperature=0)
    assert_same_tokens_shared_or_not(model, tokenizer, params, reqs, max_batch=8)
