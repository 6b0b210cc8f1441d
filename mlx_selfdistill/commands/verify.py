"""`mlx-selfdistill verify`: run samples' tests in the sandbox and append verdicts (resumable)."""

from __future__ import annotations

import click

from ..execution.verify import verify_file
from ._common import out, print_json, protections_table, table, unsafe_option
from ._progress import StageProgress


@click.command("verify")
@click.argument("samples", type=click.Path(dir_okay=False))
@click.option("--problems", "problems_spec", required=True,
              help="Problem source the samples answer (toy, humaneval+, mbpp+, a .jsonl path, ...).")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="verdicts.jsonl; samples already judged there are skipped.")
@click.option("--workers", type=int, default=None, help="Sandbox workers [default: one per core].")
@click.option("--timeout", "timeout_s", type=float, default=5.0, show_default=True,
              help="Wall-clock seconds per candidate (all its tests).")
@click.option("--memory-mb", type=int, default=1024, show_default=True, help="Memory limit per candidate.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@unsafe_option
def verify(samples, problems_spec, out_path, workers, timeout_s, memory_mb, as_json, unsafe_no_isolation):
    """Run candidates' tests in the sandbox and write verdicts."""
    with StageProgress(json_stdout=as_json) as progress:
        summary = verify_file(problems_spec, samples, out_path, workers=workers, timeout_s=timeout_s,
                              memory_mb=memory_mb, progress=progress, unsafe_no_isolation=unsafe_no_isolation)
    if as_json:
        print_json(summary)
        return
    rows = [[status, count, f"{count / summary['verdicts']:.1%}" if summary["verdicts"] else "-"]
            for status, count in summary["by_status"].items()]
    out.print(table(f"verify -> {out_path}", ["status", "verdicts", "share"], rows))
    speed = f", {summary['candidates_per_s']}/s" if summary["candidates_per_s"] else ""
    if summary["protections"]:
        out.print(protections_table(summary["protections"]))
    out.print(f"judged {summary['judged']} (skipped {summary['skipped']} already judged) in "
              f"{summary['seconds']}s{speed}; pass rate {summary['pass_rate']:.1%}")
