"""Greedy decoding in llama.cpp, for benchmarks/gguf_llamacpp.py.

Runs under a Python that has `llama-cpp-python` (built from its source package; MLX is not
needed here, so it can live in its own virtualenv). Reads one job as JSON on stdin -
{"gguf", "n_ctx", "max_tokens", "stop_ids", "prompts": [{"ids", "text"}]} - and writes the
results as JSON on stdout. Greedy is an explicit argmax over llama.cpp's logits, so no
sampler setting (repeat penalty, top-k...) can creep in.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from llama_cpp import Llama, __version__


def main() -> None:
    job = json.load(sys.stdin)
    t0 = time.perf_counter()
    # One thread by default: on a shared, loaded machine ggml's spinning worker threads wait on
    # each other far more than they compute (measured here: ~1.5 s/token for 135M with 2).
    threads = job.get("threads", 1)
    llm = Llama(job["gguf"], n_ctx=job["n_ctx"], n_threads=threads, n_threads_batch=threads, logits_all=True,
                verbose=False, seed=0)
    load_s = time.perf_counter() - t0
    stop = set(job["stop_ids"])
    results = []
    t0 = time.perf_counter()
    for prompt in job["prompts"]:
        llm.reset()
        llm.eval(prompt["ids"])
        first = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        top = np.argsort(-first)[:10]
        tokens: list[int] = []
        while len(tokens) < job["max_tokens"]:
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            tokens.append(token)
            if token in stop:
                break
            llm.eval([token])
        results.append({
            "tokens": tokens,
            # llama.cpp's own tokenization of the templated prompt: checks the vocab metadata
            "tokenized": llm.tokenize(prompt["text"].encode("utf-8"), add_bos=False, special=True),
            "top10_ids": [int(i) for i in top],
            "top10_logits": [float(first[i]) for i in top],
            "text": llm.detokenize(tokens).decode("utf-8", errors="replace"),
        })
    meta = {k: llm.metadata.get(k) for k in ("general.architecture", "general.name", "tokenizer.ggml.pre")}
    json.dump({"llama_cpp_python": __version__, "threads": threads, "metadata": meta, "load_seconds": round(load_s, 2),
               "generate_seconds": round(time.perf_counter() - t0, 2), "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
