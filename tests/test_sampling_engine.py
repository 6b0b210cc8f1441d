"""The batched engine on the embedded tiny model: equality with mlx_lm, seeds, stops."""

import mlx.core as mx
import pytest
from mlx_lm import stream_generate
from mlx_lm.models.cache import make_prompt_cache

from mlx_selfdistill.models import load_model, prompt_tokens
from mlx_selfdistill.sampling import (RunawayConfig, SamplingEngine, SamplingParams, Request, repetition_period,
                                      sequence_seed)
from mlx_selfdistill.toy.world import toy_problems

HOT = SamplingParams(temperature=1.2, top_k=20, top_p=0.95, seed=7)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


@pytest.fixture(scope="module")
def prompts(tiny):
    _, tokenizer = tiny
    problems = toy_problems("heldout", 6, seed=3)
    out = [prompt_tokens(tokenizer, p) for p in problems]
    assert len({len(p) for p in out}) > 1, "want prompts of different lengths (left padding)"
    return out


def requests(prompts, n, seed=7):
    return [Request(p, list(range(n)), [sequence_seed(seed, f"p{j}", i) for i in range(n)], tag=j)
            for j, p in enumerate(prompts)]


def run(tiny, params, reqs, **kw):
    model, tokenizer = tiny
    engine = SamplingEngine(model, tokenizer, params, **kw)
    return {(f.tag, f.sample_index): f for f in engine.run(reqs)}


class Biased:
    """The tiny model with a large bonus on some tokens: forces a known output."""

    def __init__(self, model, bonus: dict):
        self.model, self.layers = model, model.layers
        vocab = model.args.vocab_size
        self.bias = mx.zeros((vocab,))
        for token, value in bonus.items():
            self.bias[token] = value

    def __call__(self, x, cache=None):
        return self.model(x, cache=cache) + self.bias


def test_greedy_equals_mlx_lm_generate_token_for_token(tiny, prompts):
    model, tokenizer = tiny
    # 2 samples per prompt and a batch of 5: rows of different prompts, lengths and ages share the batch.
    got = run(tiny, SamplingParams(temperature=0), requests(prompts, 2), max_tokens=48, max_batch=5)
    for j, prompt in enumerate(prompts):
        ref = [r.token for r in stream_generate(model, tokenizer, prompt, max_tokens=48)]
        for i in range(2):
            f = got[(j, i)]
            assert f.tokens == ref, (j, i)
            ended_by_eos = ref[-1] in tokenizer.eos_token_ids
            assert f.finish_reason == ("stop" if ended_by_eos else "length")
            assert f.text == tokenizer.decode(ref[:-1] if ended_by_eos else ref)


def test_shared_prefix_sampling_is_reproducible_and_independent_of_batching(tiny, prompts):
    a = run(tiny, HOT, requests(prompts, 4), max_tokens=40, max_batch=32)
    b = run(tiny, HOT, requests(prompts, 4), max_tokens=40, max_batch=3)
    # Drawing only some of the samples (a resumed run) gives those same samples.
    partial = [Request(r.prompt, r.sample_indices[2:], r.seeds[2:], r.tag) for r in requests(prompts, 4)]
    c = run(tiny, HOT, partial, max_tokens=40, max_batch=7)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].tokens == b[key].tokens
        assert a[key].mean_logprob == pytest.approx(b[key].mean_logprob, abs=1e-4)
    for key, f in c.items():
        assert f.tokens == a[key].tokens
    # Samples of one prompt differ from each other, and another seed changes them.
    assert len({tuple(a[(0, i)].tokens) for i in range(4)}) > 1
    other = run(tiny, HOT, requests(prompts, 4, seed=8), max_tokens=40)
    assert any(other[k].tokens != a[k].tokens for k in a)


def test_logprobs_are_recorded_per_sample(tiny, prompts):
    got = run(tiny, HOT, requests(prompts[:2], 3), max_tokens=30)
    for f in got.values():
        assert f.num_tokens == len(f.tokens) >= 1
        assert f.mean_logprob < 0 and f.mean_sampling_logprob <= 0
    greedy = run(tiny, SamplingParams(temperature=0), requests(prompts[:1], 1), max_tokens=30)[(0, 0)]
    assert greedy.mean_sampling_logprob == 0.0 and greedy.mean_logprob < 0


def test_stop_string_truncates_and_finishes_with_stop(tiny, prompts):
    model, tokenizer = tiny
    full = run(tiny, SamplingParams(temperature=0), requests(prompts[:1], 1), max_tokens=48)[(0, 0)]
    assert len(full.text) > 12
    stop = full.text[8:11]  # some text the greedy reply is known to contain
    cut = run(tiny, SamplingParams(temperature=0), requests(prompts[:1], 1), max_tokens=48, stop=[stop])[(0, 0)]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.num_tokens < full.num_tokens


def test_max_tokens_finishes_with_length(tiny, prompts):
    model, tokenizer = tiny
    eos = next(iter(tokenizer.eos_token_ids))
    biased = Biased(model, {eos: -1e9})  # EOS impossible: only max_tokens can end it
    engine = SamplingEngine(biased, tokenizer, HOT, max_tokens=7, runaway=RunawayConfig(enabled=False))
    out = list(engine.run(requests(prompts[:2], 3)))
    assert len(out) == 6
    assert all(f.finish_reason == "length" and f.num_tokens == 7 for f in out)


def test_runaway_repetition_is_detected_and_marked(tiny, prompts):
    model, tokenizer = tiny
    cfg = RunawayConfig(max_period=8, min_repeats=4, min_span=32, check_every=4)
    looping = Biased(model, {65: 50.0})  # one token, forever
    engine = SamplingEngine(looping, tokenizer, HOT, max_tokens=200, runaway=cfg)
    out = list(engine.run(requests(prompts[:1], 2)))
    assert [f.finish_reason for f in out] == ["runaway", "runaway"]
    assert all(32 <= f.num_tokens < 40 for f in out)
    # The same engine does not flag the tiny model's normal replies.
    normal = run(tiny, SamplingParams(temperature=0), requests(prompts, 1), max_tokens=48, runaway=cfg)
    assert all(f.finish_reason != "runaway" for f in normal.values())


def test_repetition_period():
    cfg = RunawayConfig(max_period=8, min_repeats=4, min_span=24)
    assert repetition_period([1, 2, 3] * 10, cfg) == 3
    assert repetition_period(list(range(30)) + [7] * 24, cfg) == 1
    assert repetition_period([1, 2, 3] * 7, cfg) is None  # 21 tokens: shorter than min_span
    assert repetition_period(list(range(100)), cfg) is None
    assert repetition_period([1, 2, 3, 4, 5, 6, 7, 8, 9] * 10, cfg) is None  # period 9 > max_period


def test_kv_budget_bounds_the_batch_without_changing_samples(tiny, prompts):
    model, tokenizer = tiny
    free = run(tiny, HOT, requests(prompts, 3), max_tokens=24)
    longest = max(len(p) for p in prompts) + 24
    engine = SamplingEngine(model, tokenizer, HOT, max_tokens=24, max_kv_tokens=3 * longest)
    sizes = []
    tight = {(f.tag, f.sample_index): f for f in engine.run(requests(prompts, 3), on_tokens=sizes.append)}
    assert max(sizes) <= 3
    assert {k: f.tokens for k, f in tight.items()} == {k: f.tokens for k, f in free.items()}


def test_greedy_across_problems_in_one_batch_equals_each_alone(tiny, prompts):
    """n=1 (greedy evaluation): every problem shares the batch and each output is token for
    token what a one-row run gives."""
    sizes = []
    model, tokenizer = tiny
    engine = SamplingEngine(model, tokenizer, SamplingParams(temperature=0), max_tokens=40, max_batch=32)
    together = {f.tag: f.tokens for f in engine.run(requests(prompts, 1), on_tokens=sizes.append)}
    assert max(sizes) == len(prompts)  # all problems decoded at once
    for j, p in enumerate(prompts):
        alone = run(tiny, SamplingParams(temperature=0), [requests([p], 1)[0]], max_tokens=40, max_batch=1)
        assert alone[(0, 0)].tokens == together[j], j


def test_long_sequences_past_the_cache_block_and_refill_stay_exact(tiny, prompts):
    """Past STEP columns the slot cache is relaid out; with 2 rows for 6 sequences rows are
    refilled many times: outputs still match mlx_lm's one-row generation."""
    from mlx_selfdistill.sampling.slots import STEP

    model, tokenizer = tiny
    eos = next(iter(tokenizer.eos_token_ids))
    biased = Biased(model, {eos: -1e9})
    engine = SamplingEngine(biased, tokenizer, SamplingParams(temperature=0), max_tokens=STEP + 40, max_batch=2,
                            runaway=RunawayConfig(enabled=False))
    got = {(f.tag, f.sample_index): f.tokens for f in engine.run(requests(prompts[:3], 2))}
    assert engine.batch.copies >= 2
    for j, prompt in enumerate(prompts[:3]):
        cache = make_prompt_cache(biased)
        logits = biased(mx.array(prompt)[None], cache=cache)[:, -1, :]
        ref = []
        for _ in range(STEP + 40):
            t = int(mx.argmax(logits, axis=-1).item())
            ref.append(t)
            logits = biased(mx.array([[t]]), cache=cache)[:, -1, :]
        assert got[(j, 0)] == ref and got[(j, 1)] == ref, j
