"""Does a sample's bits depend on the batch it was decoded in? The engine on a real model.

The engine promises that a sample depends only on (seed, problem, sample index), so a resumed
run or another `--max-batch` draws the same samples. `row_invariance.py` found one way the
bits can still move on OpenBLAS: small projections (<= 10^6 multiply-adds) run on another
kernel, so a row's bits depend on how many rows share the product. This measures the whole
engine, end to end, and a second cause the products alone do not show:

* **engine**: the same MBPP-train problems sampled at several `max_batch` values on a real
  model (SmolLM2-135M-Instruct from `fetch_models.py`); for each, how many samples have the
  same text and the same mean log-probability, bit for bit, as at the largest batch; and the
  same with `exact=True` (sampling/exact.py), whose seconds beside the default's are its cost.
* **attention window**: the slot batch (sampling/slots.py) attends over the columns the
  batch's rows span, masking a row's columns before its prompt; how many leading masked
  columns a row has depends on the other rows. For 1..MAX_PAD masked columns before (or
  after) a row's keys, at several key counts, does `mx.fast.scaled_dot_product_attention`
  give the unpadded output, bit for bit?

    python benchmarks/batch_invariance.py    # -> benchmarks/results/batch_invariance.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mlx_selfdistill  # noqa: F401  first: binds MLX to the fast BLAS (Linux) before mlx loads
import mlx.core as mx
import numpy as np

from mlx_selfdistill import blas
from mlx_selfdistill.jsonl import write_json_atomic
from mlx_selfdistill.models import load_model
from mlx_selfdistill.problems.mbpp import load_mbpp
from mlx_selfdistill.sampling import DrawSettings, SamplingParams
from mlx_selfdistill.sampling.api import sample_problems
from mlx_selfdistill.sampling.exact import row_floor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_models import default_dest  # noqa: E402  the benchmarks' one models folder

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "batch_invariance.json"
MBPP = HERE.parent.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"
MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
SAMPLING = SamplingParams(temperature=0.8, top_p=0.95, seed=0)
SAMPLES_PER_PROBLEM = 2
MAX_TOKENS = 96
MAX_PAD = 16
KEY_LENGTHS = (37, 150, 600, 3000)
# (query heads, key/value heads, head dim) of the real models' attention
ATTENTION = {"SmolLM2-135M": (9, 3, 64), "Qwen2.5-Coder-0.5B": (14, 2, 64)}


def pads_that_differ(heads: int, kv_heads: int, dim: int, length: int, where: str, seed: int = 0) -> list[int]:
    """Masked-column counts in 1..MAX_PAD, put before (`leading`) or after (`trailing`) a row's
    `length` keys, whose attention output differs from the unpadded one."""
    rng = np.random.default_rng(seed)
    q = mx.array(rng.standard_normal((1, heads, 1, dim)).astype(np.float32))
    k, v = (mx.array(rng.standard_normal((1, kv_heads, length, dim)).astype(np.float32)) for _ in range(2))

    def attend(pad: int) -> np.ndarray:
        zeros = mx.zeros((1, kv_heads, pad, dim))
        keep = np.ones(length, bool)
        if where == "leading":
            keys, values, mask = [zeros, k], [zeros, v], np.r_[np.zeros(pad, bool), keep]
        else:
            keys, values, mask = [k, zeros], [v, zeros], np.r_[keep, np.zeros(pad, bool)]
        out = mx.fast.scaled_dot_product_attention(q, mx.concatenate(keys, axis=2), mx.concatenate(values, axis=2),
                                                   scale=dim ** -0.5, mask=mx.array(mask)[None, None, None, :])
        return np.array(out)

    ref = attend(0)
    return [p for p in range(1, MAX_PAD + 1) if not np.array_equal(attend(p), ref)]


def engine_runs(model, tokenizer, problems: int, batches: list[int], exact: bool) -> list[dict]:
    """Sample the same problems at each max_batch; compare every sample with the first run's."""
    chosen = load_mbpp(MBPP, split="train")[:problems]
    runs, ref = [], None
    for max_batch in batches:
        start = time.perf_counter()
        draw = DrawSettings(n=SAMPLES_PER_PROBLEM, params=SAMPLING, max_tokens=MAX_TOKENS, prompt_style="evalplus",
                            max_batch=max_batch, exact=exact)
        samples = sample_problems(model, tokenizer, chosen, draw)
        got = {s.key: (s.completion, s.mean_logprob) for s in samples}
        ref = ref or got
        run = {"max_batch": max_batch, "samples": len(got), "seconds": round(time.perf_counter() - start, 1),
               "same_text": sum(got[k][0] == ref[k][0] for k in ref),
               "same_logprob_bits": sum(got[k] == ref[k] for k in ref)}
        runs.append(run)
        print(f"{'exact' if exact else 'default'}, max_batch {max_batch}: {run['same_text']}/{len(ref)} same text, "
              f"{run['same_logprob_bits']}/{len(ref)} same log-probability bits ({run['seconds']} s)", flush=True)
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--batches", default="16,8,4,1", help="max_batch values; the first is the reference")
    args = parser.parse_args(argv)
    model_path = default_dest() / MODEL
    if not model_path.exists():
        print(f"{model_path} is missing: run python benchmarks/fetch_models.py --only smollm2", file=sys.stderr)
        return 2
    result = {"blas": blas.state().to_dict(), "mlx": mx.__version__, "attention_window": {}}
    for name, shape in ATTENTION.items():
        cases = []
        for length in KEY_LENGTHS:
            for where in ("leading", "trailing"):
                differ = pads_that_differ(*shape, length, where)
                cases.append({"keys": length, "masked_columns": where, "counts_that_differ": differ})
                print(f"{name} attention, {length} keys: {where} masked columns that change the bits: "
                      f"{differ or 'none'}", flush=True)
        result["attention_window"][name] = {"heads_kv_dim": list(shape), "cases": cases}
    model, tokenizer = load_model(str(model_path))
    batches = [int(b) for b in args.batches.split(",")]
    result["engine"] = {"model": MODEL, "problems": args.problems, "max_tokens": MAX_TOKENS,
                        "sampling": SAMPLING.to_dict(), "samples_per_problem": SAMPLES_PER_PROBLEM,
                        "row_floor": row_floor(model),
                        "runs": engine_runs(model, tokenizer, args.problems, batches, exact=False),
                        "exact_runs": engine_runs(model, tokenizer, args.problems, batches, exact=True)}
    write_json_atomic(RESULTS, result)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
