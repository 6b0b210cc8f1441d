"""`mlx-selfdistill demo`: offline, on the embedded tiny model and the toy world."""

from __future__ import annotations

import click

from ..demo import run_demo
from ._common import out, print_json, table
from ._progress import StageProgress


@click.command("demo")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--method", "methods", multiple=True, type=click.Choice(["rft", "ssd"]),
              help="Methods to run (default: both).")
@click.option("--fresh", is_flag=True, help="Delete earlier demo runs first instead of resuming them.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def demo(runs_dir, methods, fresh, as_json):
    """Distil the embedded tiny model on the toy world; compare held-out pass@1 to the base."""
    methods = tuple(methods) or ("rft", "ssd")
    with StageProgress(enabled=not as_json) as progress:
        result = run_demo(runs_dir, methods=methods, fresh=fresh, progress=progress)
    if as_json:
        print_json(result)
        return
    rows = []
    for method, r in result["methods"].items():
        secs = r["seconds"]
        rows.append([
            {"rft": "test-filtered (rft)", "ssd": "SSD (no tests)"}[method],
            f"{r['base_pass_at_1']:.3f}", f"{r['distilled_pass_at_1']:.3f}",
            f"{100 * (r['distilled_pass_at_1'] - r['base_pass_at_1']):+.1f}",
            f"{r['kept']}/{r['samples']}",
            " ".join(f"{k} {v:.0f}s" for k, v in secs.items()),
        ])
    out.print(table("held-out pass@1, base vs distilled (toy world, tiny model)",
                        ["method", "base", "distilled", "gain (pts)", "kept/sampled", "time per stage"], rows))
    out.print(f"total {result['seconds']:.0f}s; runs in {runs_dir}/")
