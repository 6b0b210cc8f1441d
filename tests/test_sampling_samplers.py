"""The sampler against the analytic tempered-then-truncated distribution (chi-square)."""

import math

import mlx.core as mx
import numpy as np
import pytest

from mlx_selfdistill.errors import UserError
from mlx_selfdistill.sampling import SamplingParams, analytic_distribution, sample_tokens, step_uniforms

LOGITS = np.array([2.0, 1.5, 1.2, 0.9, 0.3, 0.0, -0.4, -1.0, -1.5, -2.5, 0.8, 1.1])
DRAWS = 60_000


def chi2_critical(dof: int, z: float = 3.29) -> float:
    """Upper quantile of chi-square (z=3.29: p=0.9995), Wilson-Hilferty approximation."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def draw(params: SamplingParams, logits=LOGITS, draws=DRAWS, step=0):
    seeds = np.arange(draws, dtype=np.uint64) * np.uint64(0x9E3779B1) + np.uint64(12345)
    u = mx.array(step_uniforms(seeds, np.full(draws, step)))
    batch = mx.broadcast_to(mx.array(logits, dtype=mx.float32)[None], (draws, len(logits)))
    tokens, lp, slp = sample_tokens(batch, params, u)
    return np.array(tokens), np.array(lp), np.array(slp)


def chi2(counts: np.ndarray, expected_p: np.ndarray) -> tuple[float, int]:
    support = expected_p > 0
    assert counts[~support].sum() == 0, "sampled a token the distribution excludes"
    exp = expected_p[support] * counts.sum()
    return float(((counts[support] - exp) ** 2 / exp).sum()), int(support.sum() - 1)


CASES = [
    SamplingParams(temperature=1.6, top_k=6, top_p=0.8),  # the SSD paper's shape of setting
    SamplingParams(temperature=0.7, top_p=0.9),
    SamplingParams(temperature=1.0, min_p=0.1),
    SamplingParams(temperature=1.3, top_k=8, top_p=0.95, min_p=0.05),
    SamplingParams(temperature=1.0),
]


@pytest.mark.parametrize("params", CASES, ids=lambda p: f"T{p.temperature}-k{p.top_k}-p{p.top_p}-m{p.min_p}")
def test_empirical_distribution_matches_tempered_then_truncated(params):
    expected = analytic_distribution(LOGITS, params)
    tokens, lp, slp = draw(params)
    stat, dof = chi2(np.bincount(tokens, minlength=len(LOGITS)), expected)
    assert stat < chi2_critical(dof), (stat, dof)
    # Both recorded log-probs are the right ones for each drawn token.
    model_lp = LOGITS - np.log(np.exp(LOGITS).sum())
    np.testing.assert_allclose(lp, model_lp[tokens], atol=1e-5)
    np.testing.assert_allclose(slp, np.log(expected[tokens]), atol=1e-4)


def test_truncating_before_temperature_is_rejected_by_the_same_test():
    """mlx_lm's order (top-p on the untempered distribution, then temperature) gives a
    different distribution; the chi-square test must be able to tell them apart."""
    params = SamplingParams(temperature=1.6, top_p=0.8)
    untempered_kept = analytic_distribution(LOGITS, SamplingParams(temperature=1.0, top_p=0.8)) > 0
    wrong = np.where(untempered_kept, np.exp(LOGITS / 1.6), 0.0)
    wrong /= wrong.sum()
    tokens, _, _ = draw(params)
    counts = np.bincount(tokens, minlength=len(LOGITS))
    stat = float(((counts - wrong * DRAWS) ** 2 / np.maximum(wrong * DRAWS, 1e-9)).sum())
    assert stat > 10 * chi2_critical(int(untempered_kept.sum()) - 1)


def test_greedy_is_argmax_with_zero_sampling_logprob():
    tokens, lp, slp = draw(SamplingParams(temperature=0.0), draws=16)
    assert (tokens == int(np.argmax(LOGITS))).all()
    assert np.allclose(slp, 0.0)
    assert np.allclose(lp, LOGITS.max() - np.log(np.exp(LOGITS).sum()), atol=1e-5)


def test_top_k_one_is_greedy_at_any_temperature():
    tokens, _, slp = draw(SamplingParams(temperature=5.0, top_k=1), draws=500)
    assert (tokens == int(np.argmax(LOGITS))).all() and np.allclose(slp, 0.0, atol=1e-6)


def test_uniforms_are_a_pure_function_of_seed_and_step():
    a = step_uniforms([1, 2, 3], [0, 5, 9])
    b = np.concatenate([step_uniforms([3], [9]), step_uniforms([1, 2], [0, 5])])
    assert np.array_equal(a, b[[1, 2, 0]])
    assert not np.array_equal(step_uniforms([1], [0]), step_uniforms([1], [1]))
    u = step_uniforms(np.arange(100_000), np.zeros(100_000))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01


@pytest.mark.parametrize("kwargs", [{"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"min_p": 1.0},
                                    {"top_k": 2.5}])
def test_bad_settings_are_user_errors(kwargs):
    with pytest.raises(UserError):
        SamplingParams(**kwargs)


@pytest.mark.parametrize("peaked", [True, False], ids=["nucleus-in-head", "flat-full-sort"])
def test_top_p_on_a_large_vocabulary_is_exact_with_or_without_the_candidate_head(peaked):
    """The candidate shortcut (only the most likely tokens sorted) gives the same
    distribution as the full sort; a flat distribution takes the full sort."""
    from mlx_selfdistill.sampling.samplers import NUCLEUS_CANDIDATES, truncated_distribution

    rng = np.random.default_rng(0)
    vocab = 20 * NUCLEUS_CANDIDATES
    logits = rng.normal(size=(3, vocab)) * (4.0 if peaked else 0.05)
    params = SamplingParams(temperature=0.8, top_p=0.95)
    ids, probs = truncated_distribution(mx.array(logits, dtype=mx.float32), params)
    ids, probs = np.array(ids), np.array(probs, dtype=np.float64)
    assert (ids.shape[1] == NUCLEUS_CANDIDATES) == peaked
    for row in range(3):
        got = np.zeros(vocab)
        got[ids[row]] = probs[row] / probs[row].sum()
        np.testing.assert_allclose(got, analytic_distribution(logits[row], params), atol=2e-6)


@pytest.mark.parametrize("k", [20, 256])
def test_blocked_top_k_finds_the_values_of_a_full_partition(k):
    from mlx_selfdistill.sampling.samplers import BLOCK, _top_columns

    rng = np.random.default_rng(0)
    vocab = 4 * 256 * BLOCK + 37  # large enough for the blocked search, with a partial last block
    logits = rng.normal(size=(4, vocab)).astype(np.float32)
    logits[1] = np.round(logits[1], 1)  # many ties
    logits[2, -5:] = 50.0  # the largest values sit in the partial block
    logits[3, :BLOCK] = 40.0  # one block holds more than its share
    for cols in (np.array(_top_columns(mx.array(logits), k)), _top_columns(logits, k)):  # MLX, numpy (CPU)
        assert all(len(set(row)) == k for row in cols.tolist())
        got = np.sort(np.take_along_axis(logits, cols, -1), -1)
        np.testing.assert_array_equal(got, np.sort(logits, -1)[:, -k:])


@pytest.mark.parametrize("vocab", [5000, 70_000])
@pytest.mark.parametrize("params", [SamplingParams(temperature=0.8, top_p=0.95), SamplingParams(temperature=1.6, top_k=20, top_p=0.8),
                                    SamplingParams(temperature=1.0), SamplingParams(temperature=0.7, min_p=0.05)],
                         ids=["top_p", "top_k", "untruncated", "min_p"])
def test_rows_split_over_threads_give_the_same_bits(monkeypatch, vocab, params):
    """The numpy passes split a batch's rows over the free cores: every row's token and both
    log-probabilities must be the bits one thread gives."""
    from mlx_selfdistill import blas_governor
    from mlx_selfdistill.sampling import samplers

    rng = np.random.default_rng(3)
    logits = rng.standard_normal((32, vocab)).astype(np.float32)
    logits[np.arange(32), rng.integers(0, vocab, 32)] += 12  # peaked, as a model's are: top-p's fast path
    logits = mx.array(logits)
    u = mx.array(rng.random(32).astype(np.float32))
    outs, calls = [], []
    real = samplers._by_rows
    monkeypatch.setattr(samplers, "_by_rows", lambda fn, a: calls.append(len(a)) or real(fn, a))
    for threads in (1, 2, 3):
        monkeypatch.setattr(blas_governor, "threads_now", lambda t=threads: t)
        outs.append([np.array(x) for x in sample_tokens(logits, params, u)])
    assert calls, "no pass went through the row split"
    for other in outs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(outs[0], other))
