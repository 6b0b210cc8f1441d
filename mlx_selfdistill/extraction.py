"""Pull the code out of a model's reply.

The prompts ask for one ```python block; models add prose before it, sometimes several
blocks (a draft, then the fix), sometimes no fence at all, and a reply cut by max_tokens
can end inside an unclosed block. Rule: the last python (or unlabelled) fenced block,
unclosed ones included; with no such block, the whole completion is the code.
"""

from __future__ import annotations

from dataclasses import dataclass

PYTHON_LANGS = {"", "python", "py", "python3", "py3"}
FENCE = "```"


@dataclass(frozen=True)
class Extracted:
    code: str
    reasoning: str  # the text before the chosen block ("" when there is no block)
    fenced: bool  # False when the whole completion was taken as code


def _blocks(text: str) -> list[tuple[str, int, str]]:
    """(language, start offset of the opening fence, body) of every fenced block."""
    blocks = []
    lines = text.splitlines(keepends=True)
    offset = 0
    lang = None  # language of the open block, None when outside a block
    start = 0
    body: list[str] = []
    for line in lines:
        stripped = line.strip()
        if lang is None:
            if stripped.startswith(FENCE):
                info = stripped[len(FENCE):].strip()
                # "```python" or "```python code```" on one line are both openings.
                first_word = info.split()[0].lower() if info.split() else ""
                lang, start, body = first_word, offset + line.index(FENCE), []
                if first_word != info.lower() and info.endswith(FENCE) and len(info) > len(FENCE):
                    body.append(info[len(first_word):-len(FENCE)].strip() + "\n")
                    blocks.append((lang, start, "".join(body)))
                    lang = None
        elif stripped.startswith(FENCE):
            blocks.append((lang, start, "".join(body)))
            lang = None
        elif stripped.endswith(FENCE):
            # Closing fence glued to the last code line: "    return x```".
            body.append(line.rstrip()[: -len(FENCE)] + "\n")
            blocks.append((lang, start, "".join(body)))
            lang = None
        else:
            body.append(line)
        offset += len(line)
    if lang is not None:  # cut off inside a block (max_tokens)
        blocks.append((lang, start, "".join(body)))
    return blocks


def extract_code(completion: str) -> Extracted:
    python_blocks = [b for b in _blocks(completion) if b[0] in PYTHON_LANGS]
    if not python_blocks:
        return Extracted(code=completion.strip("\n"), reasoning="", fenced=False)
    _, start, body = python_blocks[-1]
    return Extracted(code=body.strip("\n"), reasoning=completion[:start].strip(), fenced=True)
