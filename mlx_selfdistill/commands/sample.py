"""`mlx-selfdistill sample`: N candidate solutions per problem, appended to a JSONL file."""

from __future__ import annotations

import os
import time

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ._common import console, out, print_json, table


class _Rows(click.ParamType):
    name = "N|auto"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, int):
            return value
        try:
            rows = int(value)
        except ValueError:
            rows = 0
        if rows < 1:
            self.fail(f"{value!r}: give a number of rows >= 1 or 'auto'", param, ctx)
        return rows


ROWS = _Rows()


@click.command()
@click.option("--model", "model_spec", default="tiny", show_default=True,
              help="Local folder, Hugging Face id, GGUF file, ollama:NAME[:TAG], or 'tiny' (the embedded model).")
@click.option("--adapter", type=click.Path(file_okay=False), default=None, help="LoRA adapter folder.")
@click.option("--problems", "problems_spec", required=True, help="Problem source (toy, humaneval+, a .jsonl, ...).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N problems.")
@click.option("-n", "--num-samples", "n", type=click.IntRange(min=1), default=1, show_default=True,
              help="Samples per problem.")
@click.option("--temperature", "-t", type=float, default=1.0, show_default=True, help="0 = greedy.")
@click.option("--top-k", type=int, default=0, show_default=True, help="0 disables.")
@click.option("--top-p", type=float, default=1.0, show_default=True, help="1 disables.")
@click.option("--min-p", type=float, default=0.0, show_default=True, help="0 disables.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--stop", multiple=True, help="Stop string (repeatable); EOS always stops.")
@click.option("--raw-prompt", is_flag=True, help="Plain problem text instead of the chat template.")
@click.option("--max-batch", type=ROWS, default="32", show_default=True,
              help="Sequences decoded together; 'auto': the count this machine decodes fastest with "
                   "(measured once per model; `doctor --model` shows it).")
@click.option("--max-kv-tokens", type=click.IntRange(min=1), default=None,
              help="Cap on the batch's padded KV cache, in tokens (memory budget).")
@click.option("--exact", is_flag=True,
              help="Samples whose every bit depends only on seed, problem and sample index, not on the rows "
                   "decoded beside them (resume, --max-batch); somewhat slower.")
@click.option("--round", "round_", type=int, default=0, show_default=True, help="Round number recorded in samples.")
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Samples JSONL; a rerun skips the samples already there.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def sample(model_spec, adapter, problems_spec, limit, n, temperature, top_k, top_p, min_p, max_tokens, seed,
           stop, raw_prompt, max_batch, max_kv_tokens, exact, round_, out_path, as_json):
    """Sample N candidate solutions per problem from a model."""
    from ..fingerprint import model_identity
    from ..models import load_model, model_name
    from ..problems import load_problems
    from ..sampling import DrawSettings, SamplingParams, sample_problems, summarize_samples

    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed)  # fail fast
    draw = DrawSettings(n=n, params=params, max_tokens=max_tokens, raw_prompt=raw_prompt, stop=stop,
                        max_batch=max_batch, max_kv_tokens=max_kv_tokens, exact=exact)
    problems = load_problems(problems_spec, limit=limit)
    with console.status(f"loading {model_name(model_spec)}"):
        model, tokenizer = load_model(model_spec, adapter)
    quiet = os.environ.get("MLX_RANK", "0") != "0"  # under mlx.launch only rank 0 draws

    stats: dict = {}
    tokens = {"n": 0, "t0": time.perf_counter()}
    progress = Progress(TextColumn("sampling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[tps]}"), console=console, transient=True, disable=quiet)

    def on_tokens(k):
        tokens["n"] += k
        rate = tokens["n"] / max(time.perf_counter() - tokens["t0"], 1e-9)
        progress.update(task, tps=f"{rate:,.0f} tok/s")

    with progress:
        task = progress.add_task("sampling", total=len(problems) * n, tps="")
        samples = sample_problems(model, tokenizer, problems, draw, round=round_,
                                  model_name=model_identity(model_spec, adapter), out_path=out_path,
                                  on_sample=lambda s: progress.advance(task), on_tokens=on_tokens, stats=stats)
        progress.update(task, completed=len(problems) * n)
    if quiet:
        return

    summary = summarize_samples(samples)
    seconds = stats.get("seconds", 0.0)
    info = {"output": str(out_path), **summary, "new_samples": stats.get("new", 0),
            "skipped_samples": stats.get("skipped", 0), "generated_tokens": stats.get("generated_tokens", 0),
            "seconds": round(seconds, 2),
            "tokens_per_sec": round(stats.get("generated_tokens", 0) / seconds, 1) if seconds else None,
            "world_size": stats.get("world_size", 1), "max_batch": stats.get("max_batch"), "exact": exact,
            "row_floor": stats.get("row_floor") if exact else None}
    if as_json:
        print_json(info)
        return
    rows = [["output", info["output"]], ["problems", info["problems"]], ["samples", info["samples"]],
            ["new / already there", f"{info['new_samples']} / {info['skipped_samples']}"],
            ["finish reasons", ", ".join(f"{k}: {v}" for k, v in sorted(summary["finish_reasons"].items()))],
            ["with code", info["with_code"]], ["mean tokens", info["mean_tokens"]],
            ["mean log-prob", info["mean_logprob"]],
            ["generated tokens", info["generated_tokens"]], ["tokens / sec (this rank)", info["tokens_per_sec"]],
            ["max batch", info["max_batch"]]]
    if exact:  # the rows a decode step never goes below
        rows.append(["exact: row floor", info["row_floor"]])
    out.print(table("sample", ["", "value"], rows))
