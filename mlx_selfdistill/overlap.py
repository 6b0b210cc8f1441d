"""Training and evaluation problems that overlap: a pass@1 measured on problems the model
trained on says little about problems it has not seen.

Two problems overlap when they share an id (`mbpp@8` for training and `mbpp@5` for evaluation)
or when their prompts are the same text (one problem under two sources' ids). `run` checks its
training against its evaluation problems; `eval --adapter` checks the evaluation problems
against what the adapter was trained on, when the adapter sits in a run directory
(runs/NAME/round_R/adapters, beside its train.jsonl and below the run's config.json).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .records import Problem


@dataclass
class Overlap:
    evaluated: int
    same_id: list[str] = field(default_factory=list)  # evaluation ids also trained on
    same_prompt: list[str] = field(default_factory=list)  # evaluation ids whose prompt text was trained on

    @property
    def problems(self) -> list[str]:
        return sorted(set(self.same_id) | set(self.same_prompt))

    def warning(self, train_label: str, eval_label: str) -> str | None:
        """One line, or None when the sets are disjoint."""
        if not self.problems:
            return None
        how = []
        if self.same_id:
            how.append(f"{len(self.same_id)} by id")
        if self.same_prompt:
            how.append(f"{len(self.same_prompt)} by identical prompt")
        first = ", ".join(self.problems[:3]) + (", ..." if len(self.problems) > 3 else "")
        return (f"warning: {len(self.problems)} of {self.evaluated} evaluation problems ({eval_label}) were also "
                f"training problems ({train_label}): {' and '.join(how)} ({first}); pass@1 on them is not "
                "held-out performance")


def _norm(text: str) -> str:
    return " ".join(text.split())


def find_overlap(trained: Sequence[Problem], evaluated: Sequence[Problem], *,
                 trained_prompts: Iterable[str] = ()) -> Overlap:
    """Evaluation problems that share an id or a prompt with the training problems (or with
    `trained_prompts`, the user turns of a training file)."""
    from .prompts.chat import user_message

    ids = {p.id for p in trained}
    prompts = {_norm(p.prompt) for p in trained if p.prompt.strip()}
    turns = {_norm(t) for t in trained_prompts}
    same_id = [p.id for p in evaluated if p.id in ids]
    same_prompt = [p.id for p in evaluated
                   if (p.prompt.strip() and _norm(p.prompt) in prompts) or _norm(user_message(p)) in turns]
    return Overlap(len(evaluated), same_id, same_prompt)


def warn(message: str | None) -> None:
    if message:
        print(message, file=sys.stderr, flush=True)


def adapter_training(adapter: str | Path) -> tuple[list[Problem], list[str], str]:
    """(training problems, training user turns, label) of an adapter trained by `run`:
    the run's problem source from runs/NAME/config.json and the turns of round_R/train.jsonl.
    Empty for an adapter trained elsewhere (nothing to compare)."""
    adapter = Path(adapter)
    problems: list[Problem] = []
    label = str(adapter)
    config = adapter.parent.parent / "config.json"
    if config.is_file():
        try:
            spec = json.loads(config.read_text()).get("problems")
        except (json.JSONDecodeError, AttributeError):
            spec = None
        if isinstance(spec, str):
            from .errors import UserError
            from .problems import load_problems

            try:
                problems, label = load_problems(spec), spec
            except UserError:  # moved or offline: the training file's prompts still compare
                pass
    turns: list[str] = []
    train_file = adapter.parent / "train.jsonl"
    if train_file.is_file():
        from .jsonl import iter_jsonl

        for _, row in iter_jsonl(train_file, allow_partial_tail=True):
            turns += [m.get("content", "") for m in row.get("messages", []) if m.get("role") == "user"]
    return problems, turns, label


def warn_adapter_overlap(adapter: str | Path, evaluated: Sequence[Problem], eval_label: str = "evaluation") -> Overlap:
    trained, turns, label = adapter_training(adapter)
    found = find_overlap(trained, evaluated, trained_prompts=turns)
    warn(found.warning(f"adapter trained on {label}", eval_label))
    return found
