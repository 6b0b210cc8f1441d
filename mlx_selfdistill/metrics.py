"""Metric arithmetic for evaluation and bench: pass@k with intervals, energy
efficiency ratios, and decode speed against the memory-bandwidth limit.

Every ratio returns None when an input is unavailable (no energy meter, nothing
solved, unknown bandwidth): a report prints "unavailable", never a made-up number.
"""

from __future__ import annotations

import math
import random
import re
from typing import Iterable, Sequence

from .errors import UserError

# One-line definitions printed beside the numbers (report "definitions" section).
DEFINITIONS = {
    "pass@k": "unbiased estimator (Chen et al. 2021): mean over problems of "
              "1 - C(n-c, k) / C(n, k), n samples and c correct per problem",
    "pass@1_ci": "95% interval over problems: Wilson score when each problem has one "
                 "binary sample, else percentile bootstrap resampling problems (seeded)",
    "joules_per_solve": "energy of the phase(s) / number of passing samples: expected "
                        "joules to obtain one correct solution by sampling",
    "tokens_per_joule": "generated tokens / joules of the generation phase",
    "pass@1_per_watt": "pass@1 / mean watts, mean watts = joules / seconds of the "
                       "generation phase",
    "bandwidth_fraction": "decode tokens/s x bytes of weights read per token / memory "
                          "bandwidth; 1.0 = the memory-bandwidth limit at batch 1",
    "net_energy": "gross joules - idle watts x duration (idle measured first, same meter)",
    "peak_memory": "the model's weights + the most MLX allocated above what was resident during "
                   "its speed and sampling phases (max over trials): what running it alone needs",
}
PASS1_PER_WATT_DEFINITION = DEFINITIONS["pass@1_per_watt"]


# -- pass@k -------------------------------------------------------------------------

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1..n} (1 - k/i), which never forms the huge binomials.
    """
    if not (0 <= c <= n):
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if k < 1 or k > n:
        raise UserError(f"pass@{k} needs at least {k} samples per problem, got {n}: "
                        f"sample with -n >= {k} or ask for a smaller k")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems; counts = [(n, c), ...] per problem."""
    if not counts:
        raise UserError("pass@k of zero problems: the problem source is empty")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def wilson_interval(successes: float, total: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    if total <= 0:
        raise ValueError("wilson_interval: total must be positive")
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact_p(flips_up: int, flips_down: int) -> float:
    """Two-sided exact McNemar p-value for paired pass/fail outcomes: under "no change", each
    of the b + c problems that flipped is equally likely to have flipped either way, so the
    smaller count is a Binomial(b + c, 1/2) tail (doubled, capped at 1)."""
    if flips_up < 0 or flips_down < 0:
        raise ValueError("mcnemar_exact_p: flip counts must be >= 0")
    n, k = flips_up + flips_down, min(flips_up, flips_down)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def sign_test_p(ups: int, downs: int) -> float:
    """One-sided exact sign test: the chance of at least `ups` improvements among the ups + downs
    problems that changed, if each change were equally likely to go either way (1.0 when none
    changed). The one-sided half of McNemar's test, for "is the new model better"."""
    if ups < 0 or downs < 0:
        raise ValueError("sign_test_p: counts must be >= 0")
    n = ups + downs
    return sum(math.comb(n, i) for i in range(ups, n + 1)) / 2 ** n


def paired_outcomes(base_passed: Iterable[str], distilled_passed: Iterable[str], total: int) -> dict:
    """Base vs distilled on the same problems: counts, flips each way, McNemar's exact p."""
    base, after = set(base_passed), set(distilled_passed)
    up, down = sorted(after - base), sorted(base - after)
    return {"base_passed": len(base), "distilled_passed": len(after), "total": total,
            "flips_up": len(up), "flips_down": len(down), "mcnemar_p": mcnemar_exact_p(len(up), len(down)),
            "flipped_to_pass": up, "flipped_to_fail": down}


def bootstrap_interval(values: Sequence[float], iters: int = 2000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling the values (problems)."""
    if not values:
        raise ValueError("bootstrap_interval: no values")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(iters))
    lo_q, hi_q = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    return means[int(lo_q * (iters - 1))], means[int(math.ceil(hi_q * (iters - 1)))]


def pass_at_k_interval(counts: Sequence[tuple[int, int]], k: int = 1, method: str = "auto",
                       iters: int = 2000, seed: int = 0) -> tuple[float, float, str]:
    """(low, high, method) 95% interval of mean pass@k over problems.

    auto: Wilson when every problem has exactly one sample and k == 1 (each problem is
    then a Bernoulli trial), otherwise the bootstrap over problems, which accounts for
    the problems being the unit of variation (samples of one problem are correlated).
    """
    if method == "auto":
        method = "wilson" if k == 1 and all(n == 1 for n, _ in counts) else "bootstrap"
    if method == "wilson":
        if k != 1:
            raise ValueError("the Wilson interval applies to pass@1 only")
        per_problem = [pass_at_k(n, c, 1) for n, c in counts]
        lo, hi = wilson_interval(sum(per_problem), len(per_problem))
        return lo, hi, "wilson"
    if method == "bootstrap":
        per_problem = [pass_at_k(n, c, k) for n, c in counts]
        lo, hi = bootstrap_interval(per_problem, iters=iters, seed=seed)
        return lo, hi, "bootstrap"
    raise UserError(f"unknown interval method {method!r}: use auto, wilson or bootstrap")


# -- energy efficiency ----------------------------------------------------------------

def _positive(x: float | None) -> bool:
    return x is not None and x > 0 and math.isfinite(x)


def joules_per_solve(joules: float | None, passing_samples: int) -> float | None:
    """Energy per correct sample; None when energy is unavailable or nothing passed."""
    if joules is None or passing_samples <= 0:
        return None
    return joules / passing_samples


def tokens_per_joule(tokens: int, joules: float | None) -> float | None:
    if not _positive(joules):
        return None
    return tokens / joules


def mean_watts(joules: float | None, seconds: float) -> float | None:
    if joules is None or seconds <= 0:
        return None
    return joules / seconds


def pass1_per_watt(pass1: float | None, watts: float | None) -> float | None:
    """pass@1 / mean watts (see PASS1_PER_WATT_DEFINITION)."""
    if pass1 is None or not _positive(watts):
        return None
    return pass1 / watts


# -- memory bandwidth -------------------------------------------------------------

# Apple's published unified-memory bandwidth, GB/s. Where one name covers two bins,
# the value depends on the bin, told apart by the CPU core count.
APPLE_BANDWIDTH_GBS: dict[str, float | dict[int, float]] = {
    "M1": 68.25, "M1 Pro": 200.0, "M1 Max": 400.0, "M1 Ultra": 800.0,
    "M2": 100.0, "M2 Pro": 200.0, "M2 Max": 400.0, "M2 Ultra": 800.0,
    "M3": 100.0, "M3 Pro": 150.0,
    "M3 Max": {14: 300.0, 16: 400.0},   # 14-core CPU/30-core GPU vs 16-core/40-core
    "M3 Ultra": 819.0,
    "M4": 120.0, "M4 Pro": 273.0,
    "M4 Max": {14: 410.0, 16: 546.0},   # 14-core CPU/32-core GPU vs 16-core/40-core
    "M5": 153.0,
}

_CHIP_RE = re.compile(r"\b(M\d+)(?:\s+(Pro|Max|Ultra))?\b")


def chip_key(chip_name: str | None) -> str | None:
    """'Apple M3 Max' -> 'M3 Max'; None for anything that is not an Apple M chip."""
    if not chip_name or "Apple" not in chip_name:
        return None
    m = _CHIP_RE.search(chip_name)
    if not m:
        return None
    return m.group(1) + (f" {m.group(2)}" if m.group(2) else "")


def memory_bandwidth_gbs(chip_name: str | None, cpu_cores: int | None = None) -> tuple[float | None, str]:
    """(GB/s or None, note). None for unknown chips and for ambiguous bins."""
    key = chip_key(chip_name)
    if key is None or key not in APPLE_BANDWIDTH_GBS:
        return None, f"memory bandwidth unknown for chip {chip_name!r}"
    entry = APPLE_BANDWIDTH_GBS[key]
    if isinstance(entry, dict):
        if cpu_cores in entry:
            return entry[cpu_cores], f"{key} with {cpu_cores}-core CPU (Apple spec)"
        options = " or ".join(f"{v:g} GB/s ({c}-core CPU)" for c, v in entry.items())
        return None, f"{key} comes in two bins: {options}; CPU core count {cpu_cores} matches neither"
    return float(entry), f"{key} (Apple spec)"


def weight_bytes(model) -> int:
    """Bytes of parameters an MLX model reads per decoded token (quantization scales
    included): the numerator of the bandwidth limit."""
    from mlx.utils import tree_flatten

    return int(sum(v.nbytes for _, v in tree_flatten(model.parameters())))


def bytes_read_per_token(model) -> int:
    """Bytes of parameters one decoded token reads: every parameter, except that an input
    embedding table the output layer does not share is read one row per token, not whole
    (Qwen2.5-Coder-0.5B's GGUF has an untied 136M-parameter output layer beside its 136M
    embedding table, so counting the table whole overstates a token's reads by a quarter).
    The numerator of the bandwidth limit; `weight_bytes` stays the memory the weights hold."""
    import mlx.nn as nn

    modules = [m for _, m in model.named_modules()]
    embeddings = [m for m in modules if isinstance(m, (nn.Embedding, nn.QuantizedEmbedding))]
    linears = [m for m in modules if isinstance(m, (nn.Linear, nn.QuantizedLinear))]
    total = weight_bytes(model)
    for table in embeddings:
        rows, dims = table.weight.shape[0], getattr(table, "dims", None) or table.weight.shape[1]
        # An output layer of the same (vocab, dims) shape means the table is not the output too.
        if any(_out_in(lin) == (rows, dims) for lin in linears):
            size = weight_bytes(table)
            total -= size - size // rows
    return total


def _out_in(linear) -> tuple[int, int]:
    """(output, input) features of a Linear or QuantizedLinear."""
    out = linear.weight.shape[0]
    if hasattr(linear, "bits"):  # packed: 32 // bits values per uint32
        return out, linear.weight.shape[1] * 32 // linear.bits
    return out, linear.weight.shape[1]


def bandwidth_limit_tok_s(weight_bytes_per_token: int, bandwidth_gbs: float | None) -> float | None:
    if not _positive(bandwidth_gbs) or weight_bytes_per_token <= 0:
        return None
    return bandwidth_gbs * 1e9 / weight_bytes_per_token


def bandwidth_fraction(decode_tok_s: float | None, weight_bytes_per_token: int,
                       bandwidth_gbs: float | None) -> float | None:
    """Decode speed as a fraction of the memory-bandwidth limit (batch 1)."""
    limit = bandwidth_limit_tok_s(weight_bytes_per_token, bandwidth_gbs)
    if limit is None or decode_tok_s is None:
        return None
    return decode_tok_s / limit


def summarize_quality(counts: Sequence[tuple[int, int]], ks: Iterable[int] = (1,),
                      seed: int = 0) -> dict:
    """The report's quality block from per-problem (n, c) counts."""
    lo, hi, method = pass_at_k_interval(counts, 1, seed=seed)
    min_n = min(n for n, _ in counts)
    return {
        "num_problems": len(counts),
        "samples_per_problem": min_n,
        "passing_samples": sum(c for _, c in counts),
        "pass_at_1": mean_pass_at_k(counts, 1),
        "pass_at_1_ci": [lo, hi],
        "ci_method": method,
        "pass_at_k": {str(k): mean_pass_at_k(counts, k) for k in ks if k <= min_n},
    }
