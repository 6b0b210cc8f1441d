"""The project's own wording: how a Problem becomes a chat prompt, and how a solution
becomes an assistant reply.

One place for the wording, so sampling, training and the embedded model (which was
trained on exactly these messages) agree. Other benchmarks' wordings are styles of
their own beside this module (styles.py).
"""

from __future__ import annotations

from ..records import Problem

FUNCTION_INSTRUCTION = (
    "Solve the task below in Python. Reply with the complete function in one ```python code block."
)
STDIO_INSTRUCTION = (
    "Solve the task below in Python. The program reads standard input and writes standard output. "
    "Reply with the complete program in one ```python code block."
)


def user_message(problem: Problem) -> str:
    instruction = STDIO_INSTRUCTION if problem.style == "stdio" else FUNCTION_INSTRUCTION
    text = f"{instruction}\n\n{problem.prompt.strip()}"
    if problem.starter_code.strip():
        text += f"\n\n```python\n{problem.starter_code.rstrip()}\n```"
    return text


def assistant_message(code: str, reasoning: str = "") -> str:
    """A reply in the shape the prompts ask for: optional prose, then one fenced block."""
    block = f"```python\n{code.rstrip()}\n```"
    return f"{reasoning.strip()}\n\n{block}" if reasoning.strip() else block


def chat_messages(problem: Problem, completion: str | None = None) -> list[dict]:
    messages = [{"role": "user", "content": user_message(problem)}]
    if completion is not None:
        messages.append({"role": "assistant", "content": completion})
    return messages


def raw_prompt(problem: Problem) -> str:
    """No chat template: the problem text as a plain continuation prompt (apple/ml-ssd style)."""
    text = problem.prompt.rstrip() + "\n"
    if problem.starter_code.strip():
        text += "\n" + problem.starter_code.rstrip() + "\n"
    return text
