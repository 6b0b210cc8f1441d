"""`mlx-selfdistill problems SOURCE`: what a problem source holds."""

from __future__ import annotations

import click
from rich.progress import Progress

from ._common import console, out, print_json, table


def _sources_help() -> str:
    from ..problems.sources import list_sources

    return "\n".join(f"  {s.spec:28} {s.description}" for s in list_sources())


class _Command(click.Command):
    def format_epilog(self, ctx, formatter):
        formatter.write("\nSources:\n")
        formatter.write(_sources_help() + "\n")


def harvest_table(report):
    """A code: harvest's counts: what was found, kept, and dropped for which reason."""
    rows = [["package", f"{report.package} {report.version}".strip()],
            ["files (tests)", f"{report.files} ({report.test_files})"],
            ["functions", report.functions], ["found (with literal tests)", report.found], ["kept", report.kept],
            *[[f"dropped: {k}", v] for k, v in report.dropped.items()],
            ["kept tests", f"{report.tests.get('visible', 0)} visible, {report.tests.get('hidden', 0)} hidden"],
            ["splits", ", ".join(f"{k}: {v}" for k, v in report.splits.items())]]
    if report.skipped_files:
        rows.append(["skipped files", ", ".join(f"{p} ({why})" for p, why in report.skipped_files[:5])])
    return table(f"harvest: {report.origin}", ["", "count"], rows)


@click.command(cls=_Command)
@click.argument("source")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N problems.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where to cache downloads and computed expected outputs.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--dump", is_flag=True, help="Print the problems themselves as JSONL on stdout.")
def problems(source, limit, cache_dir, as_json, dump):
    """List the problems of SOURCE: count, ids, test types, difficulties."""
    import json
    import sys

    from ..problems import load_problems, summarize
    from ..problems.skipped import collect_skips

    bar: dict = {}

    def on_progress(done, total):
        # Only loaders with slow work (EvalPlus expected outputs, a harvest's sandbox check) report progress.
        if not bar:
            bar["progress"] = Progress(console=console, transient=True)
            bar["progress"].start()
            bar["task"] = bar["progress"].add_task(label, total=total)
        bar["progress"].update(bar["task"], completed=done)

    code_spec = source.strip().lower().startswith("code:")
    label = "checking references in the sandbox" if code_spec else "computing expected outputs"
    harvest = None
    try:
        with collect_skips() as skipped:
            if code_spec:  # a harvest has a report worth showing: found, kept, dropped by reason
                from ..problems.code_harvest import harvest_spec
                from ..problems.sources import split_at_limit

                code_rest, first = split_at_limit(source.strip()[5:], limit)
                harvest, items = harvest_spec(code_rest, cache_dir=cache_dir, progress=on_progress)
                items = items[:first] if first else items
            else:
                items = load_problems(source, cache_dir=cache_dir, limit=limit, progress=on_progress)
    finally:
        if bar:
            bar["progress"].stop()
    for message in skipped:
        console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
    if dump:
        for p in items:
            sys.stdout.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
        return
    info = summarize(items)
    if as_json:
        print_json({"source": source, **info, "skipped": len(skipped), "skipped_reasons": skipped,
                    **({"harvest": harvest.report.to_dict()} if harvest else {})})
        return
    if harvest is not None:
        out.print(harvest_table(harvest.report))
    rows = [["problems", info["count"]], ["first ids", ", ".join(info["ids"])],
            ["styles", ", ".join(f"{k}: {v}" for k, v in info["styles"].items())],
            ["test types", ", ".join(f"{k}: {v}" for k, v in info["test_types"].items())],
            ["tests per problem", "{min} / {mean} / {max} (min / mean / max)".format(**info["tests_per_problem"])],
            ["with reference solution", info["with_canonical_solution"]],
            ["skipped records", len(skipped)]]
    out.print(table(f"problems: {source}", ["", "value"], rows))
    out.print(table("difficulty", ["difficulty", "problems"], [[k, v] for k, v in info["difficulty"].items()]))
