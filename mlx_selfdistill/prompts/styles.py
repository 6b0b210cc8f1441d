"""Named prompt styles: how a Problem becomes prompt text, and how a reply becomes code.

A style fixes four things that must agree: the prompt, the stop strings, the code
extraction (a style that pre-fills the reply must re-attach what it pre-filled), and the
chat example a sample of that style trains as. Samples
record their style's name, so a resumed file cannot mix two styles.

  chat      the project's wording in the model's chat template (the default; plain text
            for a model without a template)
  raw       no chat template: the problem text as a plain continuation prompt
  evalplus  EvalPlus's instruct prompt with its pre-filled reply, for leaderboard figures
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import UserError
from ..extraction import Extracted, extract_code
from ..records import Problem
from . import evalplus
from .chat import chat_messages, raw_prompt

DEFAULT_STYLE = "chat"


@dataclass(frozen=True)
class PromptStyle:
    name: str
    description: str
    render: Callable[[object, Problem], str]  # (tokenizer, problem) -> prompt text
    extract: Callable[[str, Problem], Extracted]  # (completion, problem) -> code
    stop: tuple[str, ...] = ()
    # (problem, completion) -> the chat messages it trains as (user turn, assistant reply)
    train_messages: Callable[[Problem, str], list] = chat_messages
    # Whether the tokenizer adds its BOS etc.: a rendered chat template already has them.
    add_special_tokens: bool = False


def _chat(tokenizer, problem: Problem) -> str:
    if not getattr(tokenizer, "has_chat_template", False):
        return raw_prompt(problem)
    return tokenizer.apply_chat_template(chat_messages(problem), add_generation_prompt=True, tokenize=False)


def _reply_code(completion: str, problem: Problem) -> Extracted:
    return extract_code(completion)


STYLES = {
    "chat": PromptStyle("chat", "the project's instruction in the model's chat template", _chat, _reply_code),
    "raw": PromptStyle("raw", "no chat template: the problem text as a plain continuation prompt",
                       lambda tokenizer, problem: raw_prompt(problem), _reply_code, add_special_tokens=True),
    "evalplus": PromptStyle("evalplus", "EvalPlus's instruct prompt and pre-filled reply (leaderboard figures)",
                            evalplus.render, evalplus.extract, stop=evalplus.STOP,
                            train_messages=evalplus.train_messages),
}


def get_style(name: str | None = None, *, raw: bool = False) -> PromptStyle:
    """The named style; with no name, `raw` picks between the two original ones."""
    if name is None or name == "":
        name = "raw" if raw else DEFAULT_STYLE
    elif raw and name != "raw":
        raise UserError(f"raw prompt and prompt style {name!r} contradict each other: pass only one")
    style = STYLES.get(name)
    if style is None:
        raise UserError(f"unknown prompt style {name!r}: use one of {', '.join(STYLES)}")
    return style
