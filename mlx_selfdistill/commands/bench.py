"""`mlx-selfdistill bench`: speed, energy, memory and pass@1 per watt, base vs distilled (vs teacher)."""

from __future__ import annotations

import click

from ..decoding import EVAL
from ..prompts import STYLES
from ._common import out, print_json, unsafe_option
from ._progress import StageProgress


@click.command("bench")
@click.option("--model", default="tiny", show_default=True, help="Model folder, Hugging Face id, GGUF file, ollama:NAME[:TAG], or 'tiny'.")
@click.option("--adapter", type=click.Path(file_okay=False),
              help="Adapter folder: also bench base+adapter ('distilled'), interleaved with the base.")
@click.option("--teacher", help="Teacher model (any --model spec): also bench it ('teacher'), in the same "
                                "interleaved trials, to compare its cost per solve with the student's.")
@click.option("--problems", "problems_spec", default="toy:heldout:50", show_default=True,
              help="Problem source (toy:heldout:N, humaneval+, mbpp+, a .jsonl path, ...).")
@click.option("-n", "n", type=int, default=EVAL.n, show_default=True, help="Samples per problem.")
@click.option("--trials", type=int, default=2, show_default=True,
              help="Interleaved A/B trials; each covers 1/trials of the problems.")
@click.option("--temperature", type=float, default=EVAL.temperature, show_default=True)
@click.option("--top-k", type=int, default=EVAL.top_k, show_default=True, help="0: no top-k.")
@click.option("--top-p", type=float, default=EVAL.top_p, show_default=True, help="1: no top-p.")
@click.option("--min-p", type=float, default=EVAL.min_p, show_default=True, help="0: no min-p.")
@click.option("--max-tokens", type=int, default=EVAL.max_tokens, show_default=True)
@click.option("--decode-tokens", type=int, default=64, show_default=True,
              help="Greedy decode steps of the batch-1 speed measurement.")
@click.option("--idle-seconds", type=float, default=5.0, show_default=True,
              help="Length of the idle-power baseline (skipped when no energy meter exists).")
@click.option("--seed", type=int, default=EVAL.seed, show_default=True)
@click.option("--workers", type=int, help="Sandbox worker processes (default: CPU count).")
@click.option("--timeout", "timeout_s", type=float, default=5.0, show_default=True,
              help="Seconds per candidate's tests.")
@click.option("--no-fuse", is_flag=True, help="Measure the adapter as unfused LoRA layers, not fused in memory.")
@click.option("--raw-prompt", is_flag=True, help="No chat template: the problem text as a plain prompt.")
@click.option("--prompt-style", type=click.Choice(list(STYLES)),
              help="chat (default), raw (same as --raw-prompt) or evalplus (EvalPlus's instruct prompt).")
@click.option("--out", "out_dir", default="bench_out", show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@unsafe_option
def bench(model, adapter, teacher, problems_spec, n, trials, temperature, top_k, top_p, min_p, max_tokens, decode_tokens,
          idle_seconds, seed, workers, timeout_s, no_fuse, raw_prompt, prompt_style, out_dir, as_json,
          unsafe_no_isolation):
    """Tokens/sec, energy, memory, J per solve and pass@1 per watt of a model, its distilled
    version and its teacher, measured in the same run (idle baseline, warm-up, interleaved trials).

    Writes bench.json, bench.md and bench.png into --out.
    """
    from ..bench import check_models, run_bench
    from ..metrics import PASS1_PER_WATT_DEFINITION
    from ..report import render_table, setup_summary

    check_models(model, adapter, teacher)  # fail before any progress bar is drawn
    with StageProgress(json_stdout=as_json) as progress:
        result = run_bench(model, adapter, teacher=teacher, problems=problems_spec, n=n, trials=trials, out_dir=out_dir,
                           temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, max_tokens=max_tokens,
                           seed=seed, idle_seconds=idle_seconds, decode_tokens=decode_tokens, workers=workers,
                           timeout_s=timeout_s, fuse=not no_fuse, raw_prompt=raw_prompt, prompt_style=prompt_style,
                           progress=progress,
                           unsafe_no_isolation=unsafe_no_isolation)
    if as_json:
        print_json(result)
        return
    out.print(render_table(result))
    out.print(setup_summary(result), markup=False)
    out.print(f"pass@1 per W = {PASS1_PER_WATT_DEFINITION}", style="dim", markup=False)
    out.print("Wrote " + ", ".join(result.get("outputs", {}).values()), markup=False)
