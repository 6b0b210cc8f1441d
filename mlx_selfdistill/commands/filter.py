"""`mlx-selfdistill filter`: samples (+ verdicts) -> chat training examples."""

from __future__ import annotations


import click

from ..filtering import FILTERS, FilterConfig, filter_samples, to_train_examples
from ..jsonl import iter_jsonl, write_jsonl_atomic
from ..records import Sample, Verdict
from ._common import out, print_json, table


def filter_files(samples_path, problems_spec, out_path, *, verdicts_path=None, config: FilterConfig) -> dict:
    """Library entry point behind the command; returns the per-stage counts."""
    from ..problems import load_problems

    samples = [Sample.from_dict(o, path=samples_path, line=i) for i, o in iter_jsonl(samples_path)]
    verdicts = None
    if verdicts_path:
        verdicts = [Verdict.from_dict(o, path=verdicts_path, line=i) for i, o in iter_jsonl(verdicts_path)]
    kept, stats = filter_samples(samples, verdicts, config)
    problems = {p.id: p for p in load_problems(problems_spec)}
    examples = to_train_examples(kept, problems)
    write_jsonl_atomic(out_path, examples)
    return stats


@click.command("filter")
@click.argument("samples", type=click.Path(dir_okay=False))
@click.option("--problems", "problems_spec", required=True, help="Problem source the samples answer.")
@click.option("--verdicts", type=click.Path(dir_okay=False), help="verdicts.jsonl (needed by the tests filter).")
@click.option("--method", "filters", default="tests", show_default=True,
              help=f"Comma-separated filters applied in order: {', '.join(FILTERS)}.")
@click.option("--drop-shortest", type=float, default=0.1, show_default=True, help="none (SSD): fraction dropped.")
@click.option("--keep-fraction", type=float, default=0.5, show_default=True, help="confidence: fraction kept.")
@click.option("--max-per-problem", type=int, help="tests: cap on samples kept per problem.")
@click.option("--no-dedup", is_flag=True, help="tests: keep identical solutions.")
@click.option("--no-health", is_flag=True, help="Keep samples that hit max_tokens or ran away.")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def filter_cmd(samples, problems_spec, verdicts, filters, drop_shortest, keep_fraction, max_per_problem, no_dedup,
               no_health, out_path, as_json):
    """Filter samples into a chat training set."""
    config = FilterConfig(filters=filters, drop_shortest=drop_shortest, keep_fraction=keep_fraction,
                          max_per_problem=max_per_problem, dedup=not no_dedup, health=not no_health)
    stats = filter_files(samples, problems_spec, out_path, verdicts_path=verdicts, config=config)
    if as_json:
        print_json(stats)
        return
    out.print(table(f"filter -> {out_path}", ["stage", "samples"], [[k, v] for k, v in stats.items()]))
