"""`mlx-selfdistill eval`: pass@k of a model, base vs adapter side by side."""

from __future__ import annotations


import click

from ..decoding import EVAL, caption
from ..evaluation import compare_models
from ..prompts import DEFAULT_STYLE, STYLES
from ._common import out, print_json, table, unsafe_option
from ._progress import StageProgress


def _floats(text):
    try:
        return [float(t) for t in text.split(",") if t.strip()] if text else []
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


@click.command("eval")
@click.option("--model", default="tiny", show_default=True,
              help="Model folder, Hugging Face id, GGUF file, ollama:NAME[:TAG], or 'tiny'.")
@click.option("--adapter", type=click.Path(file_okay=False), help="Also evaluate the model with this adapter.")
@click.option("--problems", "problems_spec", required=True)
@click.option("-n", "n", type=int, help=f"Samples per problem [default: 1 when greedy, else {EVAL.n}].")
@click.option("-k", "ks", default="1", show_default=True, help="Comma-separated k for pass@k.")
@click.option("--temperature", type=float, default=EVAL.temperature, show_default=True, help="0: greedy.")
@click.option("--top-k", type=int, default=EVAL.top_k, show_default=True, help="0: no top-k.")
@click.option("--top-p", type=float, default=EVAL.top_p, show_default=True, help="1: no top-p.")
@click.option("--min-p", type=float, default=EVAL.min_p, show_default=True, help="0: no min-p.")
@click.option("--max-tokens", type=int, default=EVAL.max_tokens, show_default=True)
@click.option("--prompt-style", type=click.Choice(list(STYLES)), default=DEFAULT_STYLE, show_default=True,
              help="chat: the project's prompt; raw: no chat template; evalplus: EvalPlus's instruct prompt, "
                   "to compare with published leaderboard figures.")
@click.option("--exact", is_flag=True,
              help="Samples whose every bit depends only on seed and problem, not on the rows decoded beside "
                   "them; somewhat slower.")
@click.option("--sweep", help="Comma-separated temperatures to sweep (reports the best per model).")
@click.option("--seed", type=int, default=EVAL.seed, show_default=True)
@click.option("--workers", type=int)
@click.option("--out", "out_dir", default="eval_out", show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
@unsafe_option
def eval_cmd(model, adapter, problems_spec, n, ks, temperature, top_k, top_p, min_p, max_tokens, prompt_style, exact,
             sweep, seed, workers, out_dir, as_json, unsafe_no_isolation):
    """pass@k with the unbiased estimator, a 95% interval and a per-difficulty breakdown."""
    k_values = [int(k) for k in _floats(ks)]
    if n is None:
        n = 1 if temperature == 0 else EVAL.n
    if n < 1 or any(k < 1 or k > n for k in k_values):
        raise click.BadParameter(f"need n >= 1 and every k in 1..n (n={n}, k={ks})")
    with StageProgress(json_stdout=as_json) as progress:
        results = compare_models(model, adapter, problems_spec, out_dir, sweep=_floats(sweep), progress=progress,
                                  n=n, ks=k_values, temperature=temperature, top_k=top_k, top_p=top_p,
                                  min_p=min_p, max_tokens=max_tokens, seed=seed, workers=workers,
                                  prompt_style=prompt_style, unsafe_no_isolation=unsafe_no_isolation,
                                  sampling_kw={"exact": exact} if exact else None)
    if as_json:
        print_json(results)
        return
    labels = list(results)
    rows = []
    rows.append(["pass@1"] + [f"{results[x]['pass_at_1']:.3f}" for x in labels])
    rows.append(["95% CI"] + [f"[{results[x]['pass_at_1_ci'][0]:.3f}, {results[x]['pass_at_1_ci'][1]:.3f}]"
                              for x in labels])
    for k in k_values:
        if k > 1:
            rows.append([f"pass@{k}"] + [f"{results[x]['pass_at_k'].get(str(k), float('nan')):.3f}" for x in labels])
    levels = sorted({lv for x in labels for lv in results[x]["by_difficulty"]})
    for lv in levels:
        rows.append([f"pass@1 {lv}"] + [f"{results[x]['by_difficulty'][lv]['pass_at_1']:.3f}"
                                        if lv in results[x]["by_difficulty"] else "-" for x in labels])
    rows.append(["sampling tok/s"] + [f"{results[x]['timing']['sampling_tokens_per_sec']:.1f}"
                                      if results[x]["timing"]["sampling_tokens_per_sec"] else "-" for x in labels])
    if sweep:
        rows.append(["best T (sweep)"] + [f"{results[x]['sweep']['best_temperature']:g}" for x in labels])
    out.print(table(f"eval on {problems_spec} (prompt {prompt_style})", ["metric"] + labels, rows))
    out.print(caption(results[labels[0]]["sampling"]), markup=False)
