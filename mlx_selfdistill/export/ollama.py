"""An Ollama Modelfile for an exported GGUF: its prompt template and stop tokens, read off the
model's own chat template.

Ollama does not run the Jinja chat template stored in a GGUF; it wants a Go template. Rather
than translate Jinja, this renders the model's template around marker strings (a user turn, a
system turn, an assistant reply) and cuts the text at the markers: what comes before the user's
text (with the template's default system prompt, if it inserts one), between the user's text
and the reply, and after the reply (the end-of-turn text, which is also the stop token). The
Go template puts those pieces back around `.System`, `.Prompt` and `.Response`, so Ollama sends
the model the same text its chat template would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

USER, SYSTEM, REPLY = "\x01user-text\x01", "\x01system-text\x01", "\x01reply-text\x01"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*")


@dataclass
class ChatParts:
    """A chat template cut at its markers."""
    head: str  # before the user's text when no system prompt is given (default system included)
    system_prefix: str | None  # before a system prompt (None: the template has no system turn)
    after_system: str  # after a system prompt, up to the user's text
    default_system: str  # the system prompt the template inserts on its own ("" if none)
    reply_prefix: str  # after the user's text, up to the reply
    reply_suffix: str  # after the reply (end of turn)
    stop: list[str]

    def render(self, prompt: str, system: str | None = None) -> str:
        """The text Ollama sends for one turn (what the Go template below produces)."""
        system = self.default_system if system is None else system
        if system and self.system_prefix is not None:
            start = self.system_prefix + system + self.after_system
        else:
            start = self.head
        return start + prompt + self.reply_prefix


def _render(tokenizer, messages: list[dict], generation: bool) -> str:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=generation, tokenize=False)


def _strip_bos(text: str, tokenizer) -> str:
    """Drop a BOS the template writes as text when the tokenizer adds one anyway (llama.cpp
    adds it from the GGUF's add_bos_token): the model must not see two."""
    bos, bos_id = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "bos_token_id", None)
    if bos and text.startswith(bos) and bos_id is not None:
        adds = tokenizer.encode("a", add_special_tokens=True)[:1] == [bos_id]
        if adds:
            return text[len(bos):]
    return text


def chat_parts(tokenizer) -> ChatParts:
    """Cut the tokenizer's chat template at marker strings (one-line error if it has none)."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the model has no chat template: an Ollama Modelfile needs one (export without --ollama)")
    prompt = _strip_bos(_render(tokenizer, [{"role": "user", "content": USER}], True), tokenizer)
    if prompt.count(USER) != 1:
        raise UserError("the model's chat template does not show the user's text once; write the Modelfile by hand")
    head, reply_prefix = prompt.split(USER)
    full = _render(tokenizer, [{"role": "user", "content": USER}, {"role": "assistant", "content": REPLY}], False)
    reply_suffix = full.split(REPLY, 1)[1] if full.count(REPLY) == 1 else ""
    system_prefix, after_system, default_system = None, "", ""
    try:
        with_system = _strip_bos(_render(tokenizer, [{"role": "system", "content": SYSTEM},
                                                     {"role": "user", "content": USER}], True), tokenizer)
    except Exception:  # a template that refuses system turns (e.g. gemma)
        with_system = ""
    if with_system.count(SYSTEM) == 1 and with_system.count(USER) == 1 and with_system.index(SYSTEM) < with_system.index(USER):
        system_prefix, rest = with_system.split(SYSTEM)
        after_system = rest.split(USER)[0]
        if head.startswith(system_prefix) and head.endswith(after_system) and len(head) >= len(system_prefix + after_system):
            default_system = head[len(system_prefix):len(head) - len(after_system)]
    end_of_turn = reply_suffix.strip()
    eos = getattr(tokenizer, "eos_token", None)
    stop = [s for s in dict.fromkeys([end_of_turn, eos]) if s]
    return ChatParts(head, system_prefix, after_system, default_system, reply_prefix, reply_suffix, stop)


def go_template(parts: ChatParts) -> str:
    """Ollama's TEMPLATE: .System and .Prompt in, .Response out, as the chat template lays them."""
    if parts.system_prefix is None:
        start = parts.head
    else:
        start = (f"{{{{ if .System }}}}{parts.system_prefix}{{{{ .System }}}}{parts.after_system}"
                 f"{{{{ else }}}}{parts.head}{{{{ end }}}}")
    return f"{start}{{{{ .Prompt }}}}{parts.reply_prefix}{{{{ .Response }}}}{parts.reply_suffix}"


def _quoted(text: str) -> str:
    if '"""' in text:
        raise UserError('the chat template contains """, which a Modelfile cannot quote; write it by hand')
    return f'"""{text}"""'


def modelfile_text(gguf_file: Path, parts: ChatParts) -> str:
    lines = [f"# Ollama Modelfile written by `mlx-selfdistill export`; template and stops from the model's chat template",
             f"FROM ./{gguf_file.name}", f"TEMPLATE {_quoted(go_template(parts))}"]
    if parts.default_system:
        lines.append(f"SYSTEM {_quoted(parts.default_system)}")
    lines += [f'PARAMETER stop "{s}"' for s in parts.stop if '"' not in s]
    return "\n".join(lines) + "\n"


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise UserError(f"--ollama {name!r}: a model name is letters, digits and . _ - : / (e.g. qwen-distilled)")
    return name


def write_modelfile(gguf_file: str | Path, model_folder: str | Path, name: str) -> dict:
    """Write GGUF_STEM.Modelfile beside the GGUF; returns its path and the `ollama create` line."""
    from transformers import AutoTokenizer

    check_name(name)
    gguf_file = Path(gguf_file).resolve()
    parts = chat_parts(AutoTokenizer.from_pretrained(str(model_folder)))
    path = gguf_file.with_name(f"{gguf_file.stem}.Modelfile")
    path.write_text(modelfile_text(gguf_file, parts), encoding="utf-8")
    return {"modelfile": str(path), "ollama_create": f"ollama create {name} -f {path}",
            "stop": parts.stop}
