"""`mlx-selfdistill run` and `mlx-selfdistill presets`."""

from __future__ import annotations

import click

from ..config import list_presets, resolve_config
from ..decoding import caption
from ..gate import parse_select
from ..loop import run as run_loop
from ..prompts import STYLES
from ._common import out, print_json, table, unsafe_option
from ._progress import StageProgress


ROUND_COLUMNS = ["model", "samples", "kept", "validation", "pass@1", "95% CI", "time", "train peak memory"]


def round_rows(summary: dict) -> list[list]:
    """One row for the base model and one per round; the model the run hands back is marked."""
    kept = (summary.get("kept") or {}).get("round")
    mark = lambda r: " (kept)" if kept == r else ""  # noqa: E731
    rows = []
    if "base_eval" in summary or "base_validation" in summary:
        b, v = summary.get("base_eval"), summary.get("base_validation")
        rows.append([f"base{mark(0)}", "-", "-", f"{v['pass_at_1']:.3f}" if v else "-",
                     f"{b['pass_at_1']:.3f}" if b else "-", _ci(b) if b else "-", "-", "-"])
    for r in summary["rounds"]:
        ev, val = r.get("eval") or {}, r.get("validation")
        secs = ", ".join(f"{k} {v:.0f}s" for k, v in r["seconds"].items() if v >= 0.5)  # skip instant stages
        train = r.get("train") or {}
        peak = train.get("peak_memory_gb")
        chosen = train.get("selected")
        label = f"round {r['round']}" + (f", {chosen['field']}={chosen['value']}" if chosen else "")
        rows.append([label + mark(r["round"]), r["samples"], r["kept"], f"{val['pass_at_1']:.3f}" if val else "-",
                     f"{ev['pass_at_1']:.3f}" if ev else "-", _ci(ev) if ev else "-", secs,
                     f"{peak:.2f} GB" if peak is not None else "-"])
    return rows


def settings_caption(config) -> str:
    """How the training samples and the evaluation (pass@1) were drawn (no pass@1 line when
    nothing is evaluated)."""
    lines = [caption(config.sample.__dict__, "training samples")]
    if config.eval.problems:
        lines.append(caption(config.eval.__dict__, "pass@1 sampling"))
    return "\n".join(lines)


def _ci(result: dict) -> str:
    lo, hi = result["pass_at_1_ci"]
    return f"[{lo:.3f}, {hi:.3f}]"


@click.command("run")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--preset", "preset_name", help="Start from a named preset (see `presets`).")
@click.option("--name", help="Run name: the directory under --runs-dir.")
@click.option("--method", type=click.Choice(["ssd", "rft", "confidence"]), help="Distillation method.")
@click.option("--model", help="Model to distill: a folder, a Hugging Face id, a GGUF file, ollama:NAME[:TAG], or 'tiny'.")
@click.option("--teacher", help="Teacher model that samples (teacher->student distillation).")
@click.option("--problems", help="Training problem source (e.g. toy:train:300, mbpp+, rstar:seed_sft).")
@click.option("--eval-problems", help="Evaluation problem source (e.g. toy:heldout:100, humaneval+).")
@click.option("--rounds", type=int, help="Number of rounds.")
@click.option("-n", "n", type=int, help="Samples per problem.")
@click.option("--temperature", type=float, help="Sampling temperature.")
@click.option("--top-k", type=int)
@click.option("--top-p", type=float)
@click.option("--eval-temperature", type=float, help="Decoding temperature for evaluation.")
@click.option("--eval-prompt-style", type=click.Choice(list(STYLES)),
              help="Prompt style for evaluation (evalplus: EvalPlus's instruct prompt) [default: as sampled].")
@click.option("--iters", type=int, help="Training steps per round.")
@click.option("--memory-gb", type=float, help="Training memory budget: batch tokens and checkpointing picked by a probe.")
@click.option("--seed", type=int)
@click.option("--val-problems", help="Validation problems of the gate that keeps the best round only if it beats the "
              "base [default: a held-back 10% of --problems; --set gate.holdout=0 turns the gate off].")
@click.option("--select", "select", metavar="FIELD=V1,V2,...",
              help="Train one adapter per value of a train field (e.g. lr=1e-5,3e-5,1e-4); keep the best on validation.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Set any config field, last; repeatable. none unsets a field: --set eval.problems=none.")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace a run directory started with another config.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@unsafe_option
def run(config_file, preset_name, name, method, model, teacher, problems, eval_problems, rounds, n, temperature,
        top_k, top_p, eval_temperature, eval_prompt_style, iters, memory_gb, seed, val_problems, select, assignments,
        runs_dir, overwrite, as_json, unsafe_no_isolation):
    """Run (or resume) self-distillation rounds: sample, verify, filter, train, evaluate."""
    overrides = {
        "name": name, "method": method, "model": model, "teacher": teacher, "problems": problems,
        "rounds": rounds,
        "gate": {"problems": val_problems, "select": parse_select(select) if select else None},
        "sample": {"n": n, "temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed},
        "eval": {"problems": eval_problems, "temperature": eval_temperature, "prompt_style": eval_prompt_style},
        "train": {"iters": iters, "memory_gb": memory_gb},
        "unsafe_no_isolation": unsafe_no_isolation or None,
    }
    config = resolve_config(preset_name=preset_name, config_file=config_file, overrides=overrides,
                            assignments=assignments)
    with StageProgress(json_stdout=as_json) as progress:
        summary = run_loop(config, runs_dir, overwrite=overwrite, progress=progress)
    if as_json:
        print_json(summary)
        return
    out.print(table(f"run {config.name} ({config.method})", ROUND_COLUMNS, round_rows(summary)))
    out.print(settings_caption(config), markup=False)
    if summary.get("kept"):
        out.print(f"{summary['kept']['message']} (validation: {summary['kept']['validation_problems']} problems)",
                  markup=False)
    out.print(f"run directory: {summary['run_dir']}")


@click.command("presets")
@click.option("--json", "as_json", is_flag=True)
def presets(as_json):
    """List the named presets."""
    found = list_presets()
    if as_json:
        print_json(found)
        return
    out.print(table("presets (use: run --preset NAME)", ["name", "description"], [[k, v] for k, v in found.items()]))
