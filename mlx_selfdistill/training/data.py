"""Chat examples -> token ids with a completion-only loss mask.

The prompt mask comes from the chat template (the conversation up to the generation
prompt) and is *checked* to be a prefix of the full conversation's tokens: a template
that rewrites earlier turns (some strip reasoning, some add dates) would otherwise put
the loss on the wrong tokens without a word. The end-of-turn token is always a target:
a model trained without it learns never to stop.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np

from ..errors import DataError, UserError
from ..jsonl import iter_jsonl

ROLES = {"system", "user", "assistant", "tool", "developer"}
Examples = Union[str, os.PathLike, Sequence[dict]]


@dataclass(frozen=True)
class TokenizedExample:
    tokens: tuple  # the whole conversation
    prompt_len: int  # tokens[prompt_len:] are the targets (the last assistant turn)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def num_targets(self) -> int:
        return len(self.tokens) - self.prompt_len


def load_examples(data: Examples) -> list[tuple[str, dict]]:
    """(where, example) pairs from a JSONL path or an in-memory list, each validated."""
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        rows = [(f"{path}:{line}", obj) for line, obj in iter_jsonl(path)]
        if not rows:
            raise UserError(f"{path}: no training examples (the file is empty)")
    else:
        rows = [(f"example {i}", obj) for i, obj in enumerate(data)]
        if not rows:
            raise UserError("no training examples were given")
    for where, obj in rows:
        _validate(where, obj)
    return rows


def _validate(where: str, obj) -> None:
    def bad(msg):
        raise UserError(f"{where}: {msg}; expected {{\"messages\": [{{\"role\": \"user\", \"content\": ...}}, "
                        f"{{\"role\": \"assistant\", \"content\": ...}}]}}")

    if not isinstance(obj, dict):
        bad(f"expected a JSON object, got {type(obj).__name__}")
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        bad("missing or empty 'messages' list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            bad(f"message {i} needs string 'role' and 'content'")
        if m["role"] not in ROLES:
            bad(f"message {i} has unknown role {m['role']!r}")
    if messages[-1]["role"] != "assistant":
        bad("the last message must be the assistant's reply (the training target)")
    if len(messages) < 2:
        bad("needs at least one message before the assistant's reply")


def end_of_turn_ids(tokenizer) -> set[int]:
    ids = set(getattr(tokenizer, "eos_token_ids", None) or [])
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(tokenizer.eos_token_id)
    if not ids:
        raise UserError("the tokenizer has no end-of-sequence token: set eos_token in tokenizer_config.json")
    return ids


def _template_ids(tokenizer, messages, **kw) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False, **kw)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return [int(t) for t in ids]


def tokenize_example(tokenizer, messages: list[dict], where: str = "example") -> TokenizedExample:
    eos = end_of_turn_ids(tokenizer)
    if getattr(tokenizer, "chat_template", None) or getattr(tokenizer, "has_chat_template", False):
        prompt = _template_ids(tokenizer, messages[:-1], add_generation_prompt=True)
        full = _template_ids(tokenizer, messages)
        if full[: len(prompt)] != prompt:
            at = next((i for i, (a, b) in enumerate(zip(prompt, full)) if a != b), min(len(prompt), len(full)))
            raise DataError(where, f"the chat template does not render the prompt as a prefix of the full "
                            f"conversation (they differ at token {at}): the completion mask would be wrong; "
                            "fix the model's chat_template or train on single-turn examples")
    else:  # no template: the turns as plain text, the reply appended
        text = "\n\n".join(m["content"] for m in messages[:-1]) + "\n"
        prompt = tokenizer.encode(text)
        full = prompt + tokenizer.encode(messages[-1]["content"], add_special_tokens=False)
    completion = full[len(prompt):]
    if not completion:
        raise DataError(where, "the assistant's reply is empty after templating")
    if not eos.intersection(completion):
        # The template did not close the turn with an end-of-sequence token: add one.
        full = full + [min(eos) if tokenizer.eos_token_id is None else tokenizer.eos_token_id]
    return TokenizedExample(tuple(full), len(prompt))


def tokenize_examples(tokenizer, data: Examples) -> list[TokenizedExample]:
    return [tokenize_example(tokenizer, obj["messages"], where) for where, obj in load_examples(data)]


def fingerprint(examples: Iterable[TokenizedExample]) -> str:
    """A hash of the tokenized data: a resumed run must train on the same examples."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(np.asarray(ex.tokens, dtype=np.int32).tobytes())
        h.update(np.asarray([ex.prompt_len, -1], dtype=np.int32).tobytes())
    return h.hexdigest()[:16]
