"""EvalPlus's instruct protocol, so a score compares with leaderboard figures.

Published instruct-model scores (EvalPlus leaderboard, the Qwen2.5-Coder report's 61.6 for
0.5B-Instruct) use EvalPlus's chat prompt: the task inside a plain fence after a fixed
instruction, and the assistant turn pre-filled with a fixed sentence and an opened
```python fence, so the model's first token is code. Generation stops at the closing
fence or at a top-level demo, and the code is trimmed to the entry point (sanitize.py).
Only the short strings that define the protocol are reproduced here.
"""

from __future__ import annotations

from ..errors import UserError
from ..extraction import Extracted, extract_code
from ..problems.humaneval import instruction as humaneval_instruction
from ..records import Problem
from ..sanitize import keep_entry_point

INSTRUCTION_PREFIX = ("Please provide a self-contained Python script that solves the following problem "
                      "in a markdown code block:")
RESPONSE_PREFIX = ("Below is a Python script with a self-contained function that solves the problem "
                   "and passes corresponding tests:")
OPEN_FENCE = "```python\n"  # ends the pre-filled assistant turn
# EvalPlus's stop strings for chat models: the closing fence, and the starts of demo code.
STOP = ("\n```\n", "\nif __name__", "\ndef main(", "\nprint(")
# Cuts the rendered chat where the model's reply begins (any text no template contains).
_SPLIT = "<<mlx-selfdistill: reply starts here>>"


def task_text(problem: Problem) -> str:
    """The task as EvalPlus shows it: HumanEval's prompt is the function stub alone (our
    loader's generated instruction is not part of the benchmark); others add the question."""
    if problem.starter_code.strip() and problem.prompt == humaneval_instruction(problem.entry_point or ""):
        return problem.starter_code.strip()
    parts = [problem.prompt.strip(), problem.starter_code.strip()]
    return "\n\n".join(p for p in parts if p)


def user_message(problem: Problem) -> str:
    return f"{INSTRUCTION_PREFIX}\n```\n{task_text(problem)}\n```\n"


def train_messages(problem: Problem, completion: str) -> list[dict]:
    """A sampled completion as the chat example a model trains on: the same user turn and the
    same pre-filled reply it was sampled after, then the completion and the closing fence the
    stop string cut off, so training and decoding see one format."""
    reply = f"{RESPONSE_PREFIX}\n{OPEN_FENCE}{completion.rstrip()}\n```"
    return [{"role": "user", "content": user_message(problem)}, {"role": "assistant", "content": reply}]


def render(tokenizer, problem: Problem) -> str:
    if not getattr(tokenizer, "has_chat_template", False):
        raise UserError("prompt style 'evalplus' needs a model with a chat template (an instruct model); "
                        "use --prompt-style raw for a base model")
    user = user_message(problem)
    reply = f"{RESPONSE_PREFIX}\n{OPEN_FENCE}{_SPLIT}\n```\n"
    text = tokenizer.apply_chat_template([{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
                                         tokenize=False)
    head, found, _ = text.partition(_SPLIT)
    if not found:
        raise UserError("prompt style 'evalplus': the model's chat template drops the assistant turn, so the reply "
                        "cannot be pre-filled; use the default prompt style")
    return head


def extract(completion: str, problem: Problem) -> Extracted:
    """The reply continues the opened fence: re-open it, take the block, keep the entry point."""
    block = extract_code(OPEN_FENCE + completion.replace("\t", "    "))
    return Extracted(code=keep_entry_point(block.code, problem.entry_point), reasoning="", fenced=True)
