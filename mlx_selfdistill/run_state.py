"""A run directory across invocations: new, resuming or finished, and what a changed config
makes stale.

A run directory records the config it was started with (config.json) and the identities of
its inputs (inputs.json: the model's and teacher's weights, the problem sets' contents), so a
GGUF replaced under the same path counts as a change just like an edited setting. Started
again with a difference, the run is refused (naming what differs) unless `--overwrite` is
given; then every stage the difference invalidates is removed, and nothing else:

    model (name or weights), an unknown field   the whole run directory
    teacher, problems, sample.*                 every round (samples onward); the base evaluation stays
    sample.raw_prompt, sample.prompt_style      also every evaluation (its prompt follows the samples')
    timeout_s                                   verdicts onward, and every evaluation
    method, filter, train, restart_from_base    training onward (round 2 and later wholly: they sample
                                                from round 1's student)
    eval.*, the evaluation problems' content    every evaluation, and the validation gate's (with --select,
                                                the installed winner too: it is chosen again)
    gate.problems, gate.holdout                 every round (the training problems change), the base's validation
    gate.select                                 training onward
    rounds                                      the rounds past the new count
    name, description, workers, evaluate_base   nothing

A field added to RunConfig later is unknown here, so it removes everything until it is
listed: a stale result is never kept by omission. summary.json goes with any change.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig, with_added_defaults
from .errors import UserError
from .fingerprint import differences, model_identity, problems_identity
from .jsonl import write_json_atomic

CONFIG_FILE, INPUTS_FILE, SUMMARY_FILE = "config.json", "inputs.json", "summary.json"
TRAIN_OUTPUTS = ("train.jsonl", "adapters", "train_done.json", "model", "select")
EVAL_OUTPUTS = ("eval.json", "eval", "sweep", "validation")
# stage -> the timing.json entries (loop._spent) that go with its outputs
TIMED = {"verify": ("verify", "filter", "train", "validate", "eval"), "train": ("filter", "train", "validate", "eval"),
         "eval": ("eval", "validate")}

NO_EFFECT = {"name", "description", "workers", "evaluate_base", "unsafe_no_isolation"}
EFFECTS = {
    "model": {"all"}, "inputs.model": {"all"},
    "teacher": {"sample"}, "inputs.teacher": {"sample"}, "problems": {"sample"}, "inputs.problems": {"sample"},
    "sample": {"sample"},  # the sample stage's prompt also shapes the eval prompt (eval.prompt_style None)
    "sample.raw_prompt": {"sample", "eval"}, "sample.prompt_style": {"sample", "eval"},
    "timeout_s": {"verify", "eval"},
    "method": {"train"}, "filter": {"train"}, "train": {"train"}, "restart_from_base": {"train"},
    "eval": {"eval"}, "inputs.eval_problems": {"eval"}, "inputs.val_problems": {"eval"},
    "gate.problems": {"sample", "base_validation"}, "gate.holdout": {"sample", "base_validation"},
    "gate.select": {"train"},
}


def run_inputs(config: RunConfig, problems_of) -> dict:
    """Identities of what the config names: weights and problem contents (problems_of: spec -> list)."""
    return {"model": model_identity(config.model),
            "teacher": model_identity(config.teacher) if config.teacher else None,
            "problems": problems_identity(problems_of(config.problems)),
            "eval_problems": problems_identity(problems_of(config.eval.problems)) if config.eval.problems else None,
            "val_problems": problems_identity(problems_of(config.gate.problems)) if config.gate.problems else None}


def stale_stages(changed: list[str], old: dict, new: dict) -> set[str]:
    """The stages (sample, verify, train, eval; or all) that the changed dotted names invalidate."""
    stages: set[str] = set()
    for name in changed:
        head = ".".join(name.split(".")[:2]) if name.startswith("inputs.") else name.split(".")[0]
        if head in NO_EFFECT:
            continue
        if head == "rounds":
            if not (old.get("restart_from_base") and new.get("restart_from_base")):
                stages.add("train")  # rounds == 1 keeps an adapter, more keep a fused model per round
            continue
        effect = EFFECTS.get(name) or EFFECTS.get(".".join(name.split(".")[:2])) or EFFECTS.get(head)
        if effect is None:
            return {"all"}
        stages |= effect
    return stages


def _remove(path: Path, removed: list[str], root: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    else:
        return
    removed.append(str(path.relative_to(root)))


def _drop_timings(stage_dir: Path, stage: str) -> None:
    path = stage_dir / "timing.json"
    if path.exists():
        spent = json.loads(path.read_text())
        write_json_atomic(path, {k: v for k, v in spent.items() if k not in TIMED[stage]})


def remove_stale(run_dir: Path, stages: set[str], rounds: int) -> list[str]:
    """Delete the outputs of the stale stages (and of rounds past `rounds`); the paths removed."""
    removed: list[str] = []
    if "all" in stages:
        shutil.rmtree(run_dir)
        return ["."]
    for rd in sorted(run_dir.glob("round_*")):
        try:
            r = int(rd.name.split("_")[1])
        except ValueError:
            continue
        if r > rounds or "sample" in stages or (r > 1 and stages & {"verify", "train"}):
            _remove(rd, removed, run_dir)
            continue
        for stage, outputs in (("verify", ("verdicts.jsonl",) + TRAIN_OUTPUTS + EVAL_OUTPUTS),
                               ("train", TRAIN_OUTPUTS + EVAL_OUTPUTS), ("eval", EVAL_OUTPUTS)):
            if stage in stages:
                for name in outputs:
                    _remove(rd / name, removed, run_dir)
                if stage == "eval" and (rd / "select").is_dir():  # the winner was chosen on validation
                    for name in ("adapters", "train_done.json", "model"):
                        _remove(rd / name, removed, run_dir)
                    for candidate in sorted((rd / "select").iterdir()):
                        _remove(candidate / "validation", removed, run_dir)
                _drop_timings(rd, stage)
                break
    if "eval" in stages:  # base/ holds the base model's evaluation and its validation
        _remove(run_dir / "base", removed, run_dir)
    elif "base_validation" in stages:
        _remove(run_dir / "base" / "validation", removed, run_dir)
    return removed


@dataclass
class RunStatus:
    """What opening the run directory found and did."""
    state: str  # new | resuming | finished
    changed: list[str] = field(default_factory=list)  # dotted names that differ from the stored run
    removed: list[str] = field(default_factory=list)  # paths removed because of them

    def messages(self, run_dir: Path) -> list[str]:
        out = []
        if self.changed:
            what = ("the whole run directory" if self.removed == ["."]
                    else ", ".join(self.removed) if self.removed else "nothing (no stage depends on it)")
            out.append(f"{run_dir}: --overwrite: {', '.join(self.changed)} changed; removed {what}")
        if self.state == "resuming":
            out.append(f"{run_dir}: resuming: finished stages are kept, the rest continues where it stopped")
        elif self.state == "finished":
            out.append(f"{run_dir}: already finished; showing its results (change a setting and add --overwrite "
                       "to redo what it affects)")
        return out


def open_run_dir(run_dir: Path, config: RunConfig, inputs: dict, *, overwrite: bool) -> RunStatus:
    """Check the stored config and inputs against these, remove what --overwrite invalidates,
    and record these. Refuses a difference without --overwrite; writes nothing before it has
    decided."""
    cfg_path, inputs_path = run_dir / CONFIG_FILE, run_dir / INPUTS_FILE
    wanted = config.identity()
    status = RunStatus("new")
    if cfg_path.exists():
        try:
            existing = with_added_defaults(json.loads(cfg_path.read_text()))
            stored_inputs = json.loads(inputs_path.read_text()) if inputs_path.exists() else inputs
        except json.JSONDecodeError:
            raise UserError(f"{run_dir}: corrupt run config; delete the run directory to start over") from None
        # A run started before inputs were recorded is taken at its config's word.
        changed = differences(existing, wanted) + [f"inputs.{k}" for k in differences(stored_inputs, inputs)]
        changed = sorted(dict.fromkeys(n if not n.startswith("inputs.") else ".".join(n.split(".")[:2])
                                       for n in changed))
        if changed and not overwrite:
            raise UserError(f"{run_dir} was started with a different config (differs in: {', '.join(changed)}); "
                            "use another --name, or --overwrite to redo the stages it affects")
        if changed:
            status.changed = changed
            status.removed = remove_stale(run_dir, stale_stages(changed, existing, wanted), config.rounds)
            if status.removed != ["."]:
                _remove(run_dir / SUMMARY_FILE, status.removed, run_dir)
        if run_dir.exists():
            status.state = "finished" if (run_dir / SUMMARY_FILE).exists() else "resuming"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cfg_path, wanted)
    write_json_atomic(inputs_path, inputs)
    return status
