"""Where a decode step of the sampling engine spends its time, on a real model.

One real HumanEval prompt is prefilled, its cache replicated to --batch rows (what the
engine does for N samples), and --steps decode steps are timed in parts: the model's
forward pass (logits evaluated), then the sampler on those logits at T=0.8, top_p=0.95,
with the top-p candidate head (the default) and with the full-vocabulary sort (what the
sampler did before). Medians over the steps.

    python benchmarks/decode_profile.py --model /work/models/mlx/Qwen2.5-Coder-0.5B-Instruct

Writes benchmarks/results/decode_profile.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import mlx_selfdistill  # noqa: F401  first: binds MLX to the fast BLAS (Linux) before mlx loads
import mlx.core as mx
import numpy as np

from mlx_selfdistill.jsonl import write_json_atomic
from mlx_selfdistill.models import load_model
from mlx_selfdistill.sampling import SamplingParams, sample_tokens
from mlx_selfdistill.sampling import samplers

RESULTS = Path(__file__).resolve().parent / "results" / "decode_profile.json"


def _replicate(layer_cache, k: int):
    """A k-row BatchKVCache of copies of a one-row KVCache (a prompt's N samples)."""
    from mlx_lm.models.cache import BatchKVCache

    n = layer_cache.offset
    out = BatchKVCache([0] * k)
    out.keys = mx.repeat(layer_cache.keys[:, :, :n, :], k, axis=0)
    out.values = mx.repeat(layer_cache.values[:, :, :n, :], k, axis=0)
    out.offset = out.offset + n
    out._idx = n
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    from mlx_lm.models.cache import make_prompt_cache

    sys.path.insert(0, str(Path(__file__).parent))
    from sampling import humaneval_prompts  # the sampling benchmark's prompts: the same real ones

    model, tok = load_model(args.model)
    mx.eval(model.parameters())
    _, prompts = humaneval_prompts(tok, 1)
    cache = make_prompt_cache(model)
    logits = model(mx.array(prompts[0])[None], cache=cache)[:, -1, :]
    mx.eval(logits)
    cache = [_replicate(c, args.batch) for c in cache]
    last = mx.zeros((args.batch,), mx.int32) + mx.argmax(logits, axis=-1)
    params = SamplingParams(temperature=0.8, top_p=0.95)
    rng = np.random.default_rng(0)
    parts = {"forward": [], "sample_candidates": [], "sample_full_sort": []}
    head = samplers.NUCLEUS_CANDIDATES
    for _ in range(args.steps):
        t0 = time.perf_counter()
        logits = model(last[:, None], cache=cache)[:, -1, :]
        mx.eval(logits)
        parts["forward"].append(time.perf_counter() - t0)
        u = mx.array(rng.uniform(size=args.batch).astype(np.float32))
        for name, k in (("sample_candidates", head), ("sample_full_sort", 1 << 30)):
            samplers.NUCLEUS_CANDIDATES = k
            t0 = time.perf_counter()
            tokens, lp, slp = sample_tokens(logits, params, u)
            mx.eval(tokens, lp, slp)
            parts[name].append(time.perf_counter() - t0)
        samplers.NUCLEUS_CANDIDATES = head
        last = tokens
    med = {k: round(statistics.median(v), 4) for k, v in parts.items()}
    result = {"model": args.model, "batch": args.batch, "prompt_tokens": len(prompts[0]), "steps": args.steps,
              "median_seconds": med,
              "sampler_share_full_sort": round(med["sample_full_sort"] / (med["forward"] + med["sample_full_sort"]), 3),
              "sampler_share_candidates": round(med["sample_candidates"] / (med["forward"] + med["sample_candidates"]), 3),
              "step_speedup": round((med["forward"] + med["sample_full_sort"]) / (med["forward"] + med["sample_candidates"]), 3)}
    write_json_atomic(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
