"""`mlx-selfdistill demo`: offline, on the embedded tiny model and the toy world."""

from __future__ import annotations

import click

from ..demo import run_demo
from ..decoding import caption
from ._common import out, print_json, table, unsafe_option
from ._progress import StageProgress


@click.command("demo")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--method", "methods", multiple=True, type=click.Choice(["rft", "ssd"]),
              help="Methods to run (default: both).")
@click.option("--fresh", is_flag=True, help="Delete earlier demo runs first instead of resuming them.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Change a setting of both methods' runs (as `run --set`), e.g. --set eval.problems=toy:heldout:20.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@unsafe_option
def demo(runs_dir, methods, fresh, assignments, as_json, unsafe_no_isolation):
    """Distil the embedded tiny model on the toy world; compare held-out pass@1 to the base."""
    methods = tuple(methods) or ("rft", "ssd")
    with StageProgress(json_stdout=as_json) as progress:
        result = run_demo(runs_dir, methods=methods, fresh=fresh, progress=progress, assignments=assignments,
                          overrides={"unsafe_no_isolation": True} if unsafe_no_isolation else None)
    if as_json:
        print_json(result)
        return
    names = {"rft": "test-filtered (rft)", "ssd": "SSD (no tests)"}
    rows, times = [], []
    for method, r in result["methods"].items():
        ci = r.get("distilled_ci") or (float("nan"), float("nan"))
        rows.append([names[method], f"{r['base_pass_at_1']:.3f}", f"{r['distilled_pass_at_1']:.3f}",
                     f"{ci[0]:.3f}-{ci[1]:.3f}", f"{100 * (r['distilled_pass_at_1'] - r['base_pass_at_1']):+.1f}",
                     f"{r['kept']}/{r['samples']}"])
        secs = r["seconds"]
        times.append([names[method]] + [f"{secs[k]:.0f}" if k in secs else "-"
                                        for k in ("sample", "verify", "train", "eval")])
    head = result["methods"][result["method"]]
    out.print(table("held-out pass@1, base vs distilled (toy world, tiny model)",
                    ["method", "base", "distilled", "95% CI", "gain", "kept"], rows))
    out.print(caption(result["eval_sampling"], "pass@1 sampling"), markup=False)
    out.print(table("time per stage (seconds)", ["method", "sample", "verify", "train", "eval"], times))
    base_ci = head.get("base_ci") or (float("nan"), float("nan"))
    out.print("gain in points of pass@1; kept = training examples / samples drawn")
    out.print(f"base pass@1 {head['base_pass_at_1']:.3f} (95% CI {base_ci[0]:.3f}-{base_ci[1]:.3f}), evaluated once "
              f"({head['seconds'].get('base_eval', 0):.0f}s) for both; this invocation took {result['seconds']:.0f}s; "
              f"runs in {runs_dir}/")
