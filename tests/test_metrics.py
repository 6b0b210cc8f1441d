"""Metric arithmetic on inputs whose answers are computed by hand."""

import math
from fractions import Fraction

import pytest

from mlx_selfdistill import metrics as M
from mlx_selfdistill.errors import UserError


def test_pass_at_k_hand_values():
    # n=5, c=2: pass@1 = 1 - C(3,1)/C(5,1) = 1 - 3/5; pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert M.pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert M.pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert M.pass_at_k(5, 0, 3) == 0.0
    assert M.pass_at_k(5, 5, 1) == 1.0
    assert M.pass_at_k(5, 4, 2) == 1.0  # fewer than k failures: any k draws contain a pass


@pytest.mark.parametrize("n,c,k", [(10, 3, 1), (10, 3, 5), (200, 3, 100), (200, 150, 10), (1000, 1, 1)])
def test_pass_at_k_matches_exact_binomials(n, c, k):
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert M.pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12, abs=1e-15)


def test_pass_at_k_bad_inputs():
    with pytest.raises(UserError, match="pass@5 needs at least 5 samples"):
        M.pass_at_k(3, 1, 5)
    with pytest.raises(ValueError):
        M.pass_at_k(3, 4, 1)
    with pytest.raises(UserError):
        M.mean_pass_at_k([], 1)


def test_mean_pass_at_k_over_problems():
    counts = [(5, 2), (5, 0), (5, 5)]
    assert M.mean_pass_at_k(counts, 1) == pytest.approx((0.4 + 0 + 1) / 3)
    assert M.mean_pass_at_k(counts, 2) == pytest.approx((0.7 + 0 + 1) / 3)


def test_wilson_interval_known_values():
    lo, hi = M.wilson_interval(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    lo, hi = M.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = M.wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)


def test_bootstrap_interval_is_seeded_and_sane():
    values = [0.0, 0.2, 0.4, 1.0, 1.0, 0.6, 0.0, 0.8, 0.4, 0.2]
    a = M.bootstrap_interval(values, iters=1000, seed=3)
    b = M.bootstrap_interval(values, iters=1000, seed=3)
    assert a == b
    mean = sum(values) / len(values)
    assert a[0] < mean < a[1]
    assert 0.0 <= a[0] and a[1] <= 1.0
    assert M.bootstrap_interval([0.5] * 7, iters=200) == (0.5, 0.5)


def test_interval_method_choice():
    one_sample = [(1, 1), (1, 0), (1, 1), (1, 0)]
    lo, hi, method = M.pass_at_k_interval(one_sample, 1)
    assert method == "wilson" and (lo, hi) == pytest.approx(M.wilson_interval(2, 4))
    many = [(5, 2), (5, 0), (5, 5), (5, 1)]
    lo, hi, method = M.pass_at_k_interval(many, 1, iters=500)
    assert method == "bootstrap" and lo <= M.mean_pass_at_k(many, 1) <= hi
    with pytest.raises(UserError, match="unknown interval method"):
        M.pass_at_k_interval(many, 1, method="magic")


def test_energy_ratios():
    assert M.joules_per_solve(120.0, 4) == pytest.approx(30.0)
    assert M.joules_per_solve(120.0, 0) is None      # nothing solved: no finite number
    assert M.joules_per_solve(None, 4) is None       # no meter
    assert M.tokens_per_joule(5000, 250.0) == pytest.approx(20.0)
    assert M.tokens_per_joule(5000, None) is None
    assert M.mean_watts(300.0, 20.0) == pytest.approx(15.0)
    assert M.pass1_per_watt(0.45, 15.0) == pytest.approx(0.03)
    assert M.pass1_per_watt(0.45, None) is None
    assert "pass@1 / mean watts" in M.PASS1_PER_WATT_DEFINITION


@pytest.mark.parametrize("chip,cores,expected", [
    ("Apple M1", 8, 68.25), ("Apple M1 Max", 10, 400.0), ("Apple M2", 8, 100.0),
    ("Apple M2 Ultra", 24, 800.0), ("Apple M3 Pro", 12, 150.0), ("Apple M3 Max", 14, 300.0),
    ("Apple M3 Max", 16, 400.0), ("Apple M4", 10, 120.0), ("Apple M4 Pro", 14, 273.0),
    ("Apple M4 Max", 14, 410.0), ("Apple M4 Max", 16, 546.0),
])
def test_apple_bandwidth_table(chip, cores, expected):
    gbs, _ = M.memory_bandwidth_gbs(chip, cores)
    assert gbs == expected


def test_bandwidth_unknown_or_ambiguous_is_none():
    gbs, note = M.memory_bandwidth_gbs("Apple M4 Max", None)
    assert gbs is None and "410" in note and "546" in note
    assert M.memory_bandwidth_gbs("AMD EPYC", 2)[0] is None
    assert M.memory_bandwidth_gbs(None)[0] is None
    assert M.memory_bandwidth_gbs("Apple M9 Hyper")[0] is None


def test_bandwidth_fraction():
    # 4 GB of weights at 100 GB/s: at most 25 tok/s; 20 tok/s is 80 % of the limit
    assert M.bandwidth_limit_tok_s(4_000_000_000, 100.0) == pytest.approx(25.0)
    assert M.bandwidth_fraction(20.0, 4_000_000_000, 100.0) == pytest.approx(0.8)
    assert M.bandwidth_fraction(20.0, 4_000_000_000, None) is None


def test_weight_bytes_of_a_real_mlx_model():
    import mlx.core as mx
    import mlx.nn as nn

    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2, bias=False))
    mx.eval(model.parameters())
    assert M.weight_bytes(model) == (4 * 3 + 3 + 3 * 2) * 4  # float32
    q = nn.QuantizedLinear(64, 32, bias=False, group_size=32, bits=4)
    # 4-bit packed weights + a float scale and bias per group of 32
    assert M.weight_bytes(q) == 64 * 32 // 2 + 2 * (64 * 32 // 32) * q.scales.itemsize


@pytest.mark.parametrize("quantized", [False, True])
def test_bytes_read_per_token_counts_one_row_of_an_untied_embedding_table(quantized):
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.models.llama import Model, ModelArgs

    def model(tied: bool):
        args = ModelArgs(model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                         num_attention_heads=4, rms_norm_eps=1e-5, vocab_size=256, num_key_value_heads=4,
                         tie_word_embeddings=tied)
        m = Model(args)
        if quantized:
            nn.quantize(m, group_size=32, bits=4)
        mx.eval(m.parameters())
        return m

    tied, untied = model(True), model(False)
    # Tied: the table is the output layer too, read whole every token.
    assert M.bytes_read_per_token(tied) == M.weight_bytes(tied)
    table = untied.model.embed_tokens
    size = M.weight_bytes(table)
    assert M.bytes_read_per_token(untied) == M.weight_bytes(untied) - size + size // 256
    assert M.bytes_read_per_token(untied) == M.bytes_read_per_token(tied) + size // 256


def test_summarize_quality():
    q = M.summarize_quality([(5, 2), (5, 0), (5, 5), (5, 1)], ks=(1, 5, 10))
    assert q["num_problems"] == 4 and q["samples_per_problem"] == 5 and q["passing_samples"] == 8
    assert q["pass_at_1"] == pytest.approx(0.4)
    assert set(q["pass_at_k"]) == {"1", "5"}  # k=10 > n=5 is left out
    assert q["pass_at_k"]["5"] == pytest.approx(0.75)
    assert q["ci_method"] == "bootstrap" and q["pass_at_1_ci"][0] <= 0.4 <= q["pass_at_1_ci"][1]


def test_mcnemar_exact_p_matches_the_binomial_tail():
    from mlx_selfdistill.metrics import mcnemar_exact_p, paired_outcomes

    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(6, 6) == 1.0
    assert mcnemar_exact_p(5, 0) == pytest.approx(2 / 32)  # all five flips one way: 2 * (1/2)^5
    assert mcnemar_exact_p(0, 10) == pytest.approx(2 / 1024)
    # b=2, c=9: 2 * (C(11,0) + C(11,1) + C(11,2)) / 2^11 = 2 * 67 / 2048
    assert mcnemar_exact_p(2, 9) == pytest.approx(134 / 2048)
    assert mcnemar_exact_p(9, 2) == mcnemar_exact_p(2, 9)
    out = paired_outcomes(["a", "b", "c"], ["b", "c", "d", "e"], 10)
    assert (out["base_passed"], out["distilled_passed"], out["flips_up"], out["flips_down"]) == (3, 4, 2, 1)
    assert out["flipped_to_pass"] == ["d", "e"] and out["flipped_to_fail"] == ["a"]
    assert out["mcnemar_p"] == pytest.approx(1.0)
