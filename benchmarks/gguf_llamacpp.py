"""Cross-check of `mlx-selfdistill export --gguf` against llama.cpp itself.

For SmolLM2-135M-Instruct (llama; plain, and with a small LoRA adapter trained here for a
few steps and fused by the export) and Qwen2.5-Coder-0.5B-Instruct (qwen2, biases), in F16
and Q8_0: export to GGUF, then decode a few chat-templated prompts greedily

  - in llama.cpp (llama-cpp-python, run by --llama-python: see benchmarks/llamacpp_greedy.py),
  - in MLX from the source folder (with the adapter unfused, as mlx_lm runs it),
  - in MLX from the exported GGUF through the project's own GGUF loader (when it has one),

all from the same prompt token ids, and compare the token sequences (identical? first
divergence index), llama.cpp's own tokenization of the prompt text, and the first step's
top-10 logits. Writes benchmarks/results/gguf_llamacpp.json.

llama.cpp is not a dependency of the project. Build it once from its source package:

    python -m venv /work/llamacpp-venv
    CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF" \\
        /work/llamacpp-venv/bin/pip install --no-binary llama-cpp-python llama-cpp-python
    python benchmarks/gguf_llamacpp.py --llama-python /work/llamacpp-venv/bin/python
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "gguf_llamacpp.json"
WORKER = Path(__file__).resolve().parent / "llamacpp_greedy.py"
MODELS = Path("/work/models/mlx")

PROMPTS = [
    "Write a Python function `is_palindrome(s)` that returns True when the string reads the same backwards.",
    "Write a Python function `fib(n)` that returns the n-th Fibonacci number iteratively.",
    "Explain in one sentence what a hash map is.",
    "Write a Python function `count_vowels(text)` that counts the vowels in a string.",
]

# A few steps of LoRA on these, at a high learning rate, so the adapter visibly moves the model.
ADAPTER_EXAMPLES = [
    {"messages": [{"role": "user", "content": f"Write a Python function `add_{n}(x)` that adds {n} to x."},
                  {"role": "assistant", "content": f"```python\ndef add_{n}(x):\n    return x + {n}\n```"}]}
    for n in range(1, 17)
]


def mlx_greedy(model, ids: list[int], max_tokens: int, stop: set[int]) -> tuple[list[int], list[float]]:
    """Greedy tokens, and the first step's logits (float32) for the logit comparison."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    first = model(mx.array([ids]))[0, -1].astype(mx.float32)
    tokens = []
    for token, _ in generate_step(mx.array(ids), model, max_tokens=max_tokens,
                                  sampler=lambda logprobs: mx.argmax(logprobs, axis=-1)):
        tokens.append(int(token))
        if tokens[-1] in stop:
            break
    return tokens, first.tolist()


def compare(a: list[int], b: list[int]) -> dict:
    n = min(len(a), len(b))
    diverge = next((i for i in range(n) if a[i] != b[i]), None)
    if diverge is None and len(a) != len(b):
        diverge = n
    return {"identical": a == b, "first_divergence": diverge, "tokens": [len(a), len(b)]}


def llama_cpp_run(python: str, gguf: Path, prompts: list[dict], max_tokens: int, stop: set[int]) -> dict:
    job = {"gguf": str(gguf), "n_ctx": 512, "max_tokens": max_tokens, "stop_ids": sorted(stop), "prompts": prompts}
    res = subprocess.run([python, str(WORKER)], input=json.dumps(job), capture_output=True, text=True, timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(f"llama.cpp worker failed: {res.stderr.strip()[-2000:]}")
    return json.loads(res.stdout)


def train_adapter(folder: Path, out: Path) -> dict:
    from mlx_selfdistill.training import TrainConfig, train

    done = out / "benchmark_training.json"  # written last: a killed run trains again
    if done.exists():
        return {**json.loads(done.read_text()), "reused": True}
    config = TrainConfig(iters=12, lr=1e-3, rank=8, num_layers=8, batch_tokens=512, seed=0, save_every=1000)
    t0 = time.perf_counter()
    result = train(str(folder), ADAPTER_EXAMPLES, str(out), config)
    info = {"adapter": str(out), "iters": 12, "lr": 1e-3, "rank": 8, "layers": 8,
            "result": {k: v for k, v in result.items() if isinstance(v, (int, float, str))},
            "seconds": round(time.perf_counter() - t0, 1)}
    done.write_text(json.dumps(info))
    return info


def reference_runs(folder: Path, adapter: Path | None, max_tokens: int) -> tuple[list[dict], set[int], list]:
    """Prompt ids (chat-templated by the source tokenizer), stop ids and MLX outputs from the source folder."""
    from mlx_lm import load

    model, tok = load(str(folder), adapter_path=str(adapter) if adapter else None)
    stop = set(tok.eos_token_ids)
    prompts, outputs = [], []
    for text in PROMPTS:
        templated = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                            tokenize=False)
        ids = tok.encode(templated, add_special_tokens=False)
        prompts.append({"ids": ids, "text": templated})
        outputs.append(mlx_greedy(model, ids, max_tokens, stop))
    del model
    gc.collect()
    return prompts, stop, outputs


def gguf_import_runs(gguf: Path, prompts: list[dict], max_tokens: int, stop: set[int]):
    """The exported file through the project's own GGUF loader, or why it could not run."""
    from mlx_selfdistill.errors import UserError
    from mlx_selfdistill.models import load_model

    try:
        model, _ = load_model(str(gguf))
    except UserError as exc:
        return None, f"the project's loader does not take a GGUF here: {exc}"
    outputs = [mlx_greedy(model, p["ids"], max_tokens, stop) for p in prompts]
    del model
    gc.collect()
    return outputs, None


def logit_check(mlx_first: list[float], lc: dict) -> dict:
    ids = lc["top10_ids"]
    diffs = [abs(mlx_first[i] - v) for i, v in zip(ids, lc["top10_logits"])]
    mlx_top = max(range(len(mlx_first)), key=mlx_first.__getitem__)
    return {"top1_agree": mlx_top == ids[0], "max_abs_diff_top10": round(max(diffs), 4)}


def one_model(label: str, folder: Path, adapter: Path | None, types: list[str], args, work: Path) -> dict:
    from mlx_selfdistill.export import export_gguf

    print(f"[{label}] MLX reference from {folder}" + (f" + {adapter}" if adapter else ""), flush=True)
    prompts, stop, source = reference_runs(folder, adapter, args.max_tokens)
    entry = {"model": label, "source": str(folder), "adapter": str(adapter) if adapter else None,
             "prompt_tokens": [len(p["ids"]) for p in prompts], "exports": []}
    for out_type in types:
        gguf = work / f"{label}.{out_type}.gguf"
        exported = export_gguf(folder, gguf, adapter=adapter, out_type=out_type)
        print(f"[{label}] {out_type}: exported {exported['bytes'] / 2**20:.0f} MiB in {exported['seconds']}s; "
              "llama.cpp...", flush=True)
        lc = llama_cpp_run(args.llama_python, gguf, prompts, args.max_tokens, stop)
        imported, skipped = gguf_import_runs(gguf, prompts, args.max_tokens, stop) if not args.no_import \
            else (None, "--no-import")
        rows = []
        for i, (p, r) in enumerate(zip(prompts, lc["results"])):
            row = {"prompt": PROMPTS[i], "llama_cpp_tokenization_identical": r["tokenized"] == p["ids"],
                   "llama_cpp_vs_mlx_source": compare(r["tokens"], source[i][0]),
                   "first_step_logits_vs_mlx_source": logit_check(source[i][1], r),
                   "llama_cpp_text": r["text"]}
            if imported is not None:
                row["llama_cpp_vs_mlx_gguf_import"] = compare(r["tokens"], imported[i][0])
                row["mlx_gguf_import_vs_mlx_source"] = compare(imported[i][0], source[i][0])
            rows.append(row)
        n_same = sum(r["llama_cpp_vs_mlx_source"]["identical"] for r in rows)
        print(f"[{label}] {out_type}: llama.cpp == MLX source on {n_same}/{len(rows)} prompts", flush=True)
        entry["exports"].append({
            "type": out_type, "gguf_bytes": exported["bytes"], "export_seconds": exported["seconds"],
            "pre_tokenizer": exported["pre_tokenizer"], "llama_cpp_metadata": lc["metadata"],
            "llama_cpp_seconds": {"load": lc["load_seconds"], "generate": lc["generate_seconds"]},
            "llama_cpp_threads": lc.get("threads", 2),
            "identical_vs_mlx_source": f"{n_same}/{len(rows)}",
            "identical_vs_mlx_gguf_import": (f"{sum(r['llama_cpp_vs_mlx_gguf_import']['identical'] for r in rows)}"
                                             f"/{len(rows)}") if imported is not None else None,
            "gguf_import_skipped": skipped, "prompts": rows, "llama_cpp_python": lc["llama_cpp_python"]})
        if not args.keep:
            gguf.unlink()
    return entry


def main() -> None:
    from mlx_selfdistill.jsonl import write_json_atomic
    from mlx_selfdistill.platform_info import environment

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-python", default="/work/llamacpp-venv/bin/python",
                    help="a Python with llama-cpp-python installed")
    ap.add_argument("--smollm", type=Path, default=MODELS / "SmolLM2-135M-Instruct")
    ap.add_argument("--qwen", type=Path, default=MODELS / "Qwen2.5-Coder-0.5B-Instruct")
    ap.add_argument("--types", default="f16,q8_0")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--work", type=Path, default=Path("/tmp/gguf_llamacpp"), help="GGUFs and the adapter go here")
    ap.add_argument("--only", default=None, help="comma list of smollm,smollm+lora,qwen")
    ap.add_argument("--no-import", action="store_true", help="skip the project's GGUF loader")
    ap.add_argument("--keep", action="store_true", help="keep the exported GGUF files")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--append", action="store_true",
                    help="keep the other models already in --out (re-run one model without the rest)")
    args = ap.parse_args()
    if subprocess.run([args.llama_python, "-c", "import llama_cpp"], capture_output=True).returncode != 0:
        sys.exit(f"{args.llama_python}: cannot import llama_cpp; build it as this script's docstring says")
    args.work.mkdir(parents=True, exist_ok=True)
    types = args.types.split(",")
    only = set(args.only.split(",")) if args.only else {"smollm", "smollm+lora", "qwen"}
    result = {"max_tokens": args.max_tokens, "greedy": "argmax on both sides, same prompt token ids",
              "adapter_training": None, "models": [], "environment": environment()}

    if args.append and args.out.exists():
        before = json.loads(args.out.read_text())
        result["models"] = before.get("models", [])
        result["adapter_training"] = before.get("adapter_training")

    def run(label, folder, adapter):
        entry = one_model(label, folder, adapter, types, args, args.work)
        result["models"] = [m for m in result["models"] if m["model"] != label] + [entry]
        write_json_atomic(args.out, result)  # after each model: a long run keeps what it measured
        print(f"wrote {args.out}", flush=True)

    if "smollm" in only:
        run("smollm2-135m", args.smollm, None)
    if "smollm+lora" in only:
        result["adapter_training"] = train_adapter(args.smollm, args.work / "smollm-adapter")
        run("smollm2-135m+lora", args.smollm, args.work / "smollm-adapter")
    if "qwen" in only:
        run("qwen2.5-coder-0.5b", args.qwen, None)


if __name__ == "__main__":
    main()
