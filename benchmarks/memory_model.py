"""A memory model of LoRA training, fitted to measurements of real models, and what it predicts.

For each model (a subprocess each, one at a time), the trainer's own memory probe
(training/memory_budget.py) measures MLX's peak memory over one forward and backward
pass at two batch sizes, plain and with gradient checkpointing, with the chunked loss:
peak = base + slope * tokens. The model then splits

    base  = weight bytes + a constant (the loss chunk, LoRA state, buffers)
    slope = c * layers * hidden          (activation bytes per token)

and fits c per mode to the measured models (float32 activations here). A prediction for
a model not measured (e.g. Qwen2.5-Coder-7B at 4 bits for QLoRA) adds its weight bytes at
that precision, the constant, and c * layers * hidden * tokens, plus AdamW's moments of
the LoRA parameters; with float16/bfloat16 activations (as on a Mac's GPU) the activation
term halves: both are stated.

    python benchmarks/memory_model.py --models /work/models/mlx/Qwen2.5-Coder-0.5B-Instruct,/work/models/mlx/Qwen2.5-Coder-1.5B-Instruct

Writes benchmarks/results/memory_model.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "memory_model.json"
GB = 1e9
# Qwen2.5-Coder-7B-Instruct's config.json (the numbers that matter here).
QWEN25_CODER_7B = {"name": "Qwen2.5-Coder-7B-Instruct", "parameters": 7.62e9, "layers": 28, "hidden": 3584,
                   "intermediate": 18944, "kv_dim": 512, "vocab": 152064}
SEQ = 256  # tokens per probe row: a typical prompt + reply


def measure(spec: dict) -> dict:
    """In a subprocess: load, add LoRA, probe plain and checkpointed."""
    import mlx_selfdistill  # noqa: F401  first: binds MLX to the fast BLAS before mlx loads (else ~20x slower)
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten

    from mlx_selfdistill.models import load_model
    from mlx_selfdistill.training import TrainConfig
    from mlx_selfdistill.training.adapters import setup_trainable
    from mlx_selfdistill.training.data import TokenizedExample
    from mlx_selfdistill.training.memory_budget import optimizer_bytes, probe

    model, _ = load_model(spec["model"])
    mx.eval(model.parameters())
    weights = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
    params = sum(v.size for _, v in tree_flatten(model.parameters()))
    config = TrainConfig(rank=8)
    setup_trainable(model, config)
    model.train()
    rng = np.random.default_rng(0)
    vocab = model.args.vocab_size
    tokens = tuple(int(t) for t in rng.integers(0, vocab, SEQ + 1))
    examples = [TokenizedExample(tokens, SEQ // 2)]  # half prompt, half completion
    out = {"model": spec["model"], "parameters": int(params), "weight_gb": round(weights / GB, 4),
           "layers": len(model.layers), "hidden": model.args.hidden_size,
           "intermediate": model.args.intermediate_size, "vocab": vocab,
           "lora_optimizer_gb": round(optimizer_bytes(model) / GB, 5)}
    for mode, checkpointed in (("plain", False), ("checkpointed", True)):
        t0 = time.perf_counter()
        out[mode] = probe(model, examples, config, checkpointed=checkpointed).to_dict()
        out[mode]["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def fit(measured: list[dict], mode: str) -> dict:
    """c (bytes per token per layer per hidden unit) and the constant, averaged over models."""
    cs, consts = [], []
    for m in measured:
        slope = m[mode]["gb_per_1k_tokens"] * GB / 1000
        cs.append(slope / (m["layers"] * m["hidden"]))
        consts.append(m[mode]["base_gb"] * GB - m["weight_gb"] * GB)
    return {"c_bytes_per_token_layer_hidden": [round(c, 3) for c in cs], "c_mean": sum(cs) / len(cs),
            "constant_gb": [round(x / GB, 4) for x in consts], "constant_mean_gb": sum(consts) / len(consts) / GB}


def predict(target: dict, model_fit: dict, tokens: int, bits: float, activation_bytes: int) -> float:
    weights = target["parameters"] * bits / 8
    h, i, kv = target["hidden"], target["intermediate"], target["kv_dim"]
    # rank 8 on q, k, v, o, gate, up, down: rank * (in + out) parameters each
    lora = 8 * target["layers"] * ((h + h) + 2 * (h + kv) + (h + h) + 2 * (h + i) + (i + h))
    adam = 4 * lora * 4  # weights, gradient and two moments, float32
    act = model_fit["c_mean"] * target["layers"] * target["hidden"] * tokens * activation_bytes / 4
    return (weights + max(model_fit["constant_mean_gb"], 0) * GB + adam + act) / GB


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="comma-separated MLX model folders to measure")
    ap.add_argument("--from-probe", action="append", help="a training_real.json whose budget run's probe "
                    "fits to use as a measurement (no new run)")
    ap.add_argument("--tokens", default="1024,2048,4096", help="batch tokens to predict for")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()

    from mlx_selfdistill.jsonl import write_json_atomic

    measured = []
    for path in args.from_probe or []:  # the trainer's own probe, stored by benchmarks/training_real.py
        earlier = json.loads(Path(path).read_text())
        plan = earlier["runs"]["ours_budget"]["memory_plan"]
        cfg = json.loads((Path(earlier["setup"]["model"]) / "config.json").read_text())
        measured.append({"model": earlier["setup"]["model"], "from": f"{path} (ours_budget memory_plan)",
                         "parameters": earlier["setup"]["parameters"], "weight_gb": earlier["setup"]["model_gb"],
                         "layers": cfg["num_hidden_layers"], "hidden": cfg["hidden_size"],
                         "intermediate": cfg["intermediate_size"], "vocab": cfg["vocab_size"], **plan["fits"]})
    for path in filter(None, (args.models or "").split(",")):
        spec = json.dumps({"model": path})
        proc = subprocess.run([sys.executable, __file__, "--worker", spec], capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{path}: measurement failed: {proc.stderr.strip()[-500:]}")
        measured.append(json.loads(lines[-1]))
        print(lines[-1], flush=True)
    if not measured:
        raise SystemExit("nothing measured: pass --models and/or --from-probe")
    fits = {mode: fit([m for m in measured if mode in m], mode) for mode in ("plain", "checkpointed")
            if any(mode in m for m in measured)}
    # 4-bit affine quantization with group 64 stores a float16 scale and bias per 64 weights: 4.5 bits.
    predictions = []
    for t in [int(x) for x in args.tokens.split(",")]:
        for mode in fits:
            for act_bytes, label in ((4, "float32"), (2, "bfloat16")):
                predictions.append({"tokens": t, "mode": mode, "activations": label,
                                    "peak_gb": round(predict(QWEN25_CODER_7B, fits[mode], t, 4.5, act_bytes), 2)})
    report = {"benchmark": "memory_model", "platform": {"machine": platform.machine(), "system": platform.system()},
              "models_measured": len(measured),
              "probe": f"the trainer's probe: one and two rows of one example (--models: a {SEQ}-token example, half "
                       "prompt; --from-probe: the run's longest example), LoRA rank 8 on every block, chunked loss, "
                       "MLX peak memory",
              "measured": measured, "fits": fits, "target": QWEN25_CODER_7B, "target_bits": 4.5,
              "predictions_7b_4bit_qlora": predictions}
    fits_16 = [p for p in predictions if p["peak_gb"] <= 16 * 0.75]  # macOS lets the GPU wire ~75% of RAM
    report["on_a_16gb_mac"] = (
        "fits (under ~12 GB the GPU may use of 16 GB): " + ", ".join(
            f"{p['tokens']} tokens {p['mode']} {p['activations']} ~{p['peak_gb']} GB" for p in fits_16)
        if fits_16 else "no configuration predicted under 12 GB")
    write_json_atomic(args.out, report)
    print(json.dumps({"fits": fits, "on_a_16gb_mac": report["on_a_16gb_mac"]}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(measure(json.loads(sys.argv[2]))), flush=True)
    else:
        main()
