"""The tokenizer metadata of an exported GGUF, from the model folder's tokenizer files.

One job: describe the folder's byte-level BPE tokenizer the way llama.cpp reads it -
`tokenizer.ggml.model` "gpt2", the token list and types, the merges, the special token ids,
the chat template, and `tokenizer.ggml.pre`, the name of the pre-tokenizer (the regex that
splits text before the merges), which llama.cpp cannot infer and must be told.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import gguf

from ..errors import UserError

log = logging.getLogger(__name__)
T = gguf.TokenType


def add_tokenizer(writer: gguf.GGUFWriter, folder: Path, n_vocab: int) -> dict:
    """Write the tokenizer keys; returns a summary (pre-tokenizer name, token counts)."""
    tok = _read_tokenizer_json(folder)
    tokens, types = token_table(tok, n_vocab)
    pre = pre_tokenizer_name(tok)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # Merges, bos/eos/pad ids, add_bos and the chat template: the gguf package reads
    # tokenizer.json, tokenizer_config.json (or chat_template.jinja) and config.json for these.
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=n_vocab)
    if not special.merges:
        raise UserError(f"{folder / 'tokenizer.json'}: no BPE merges; the exported tokenizer would not work")
    special.add_to_gguf(writer, quiet=True)
    if "bos" not in special.add_special_token:
        # Byte-level BPE tokenizers add no BOS unless their files say so; llama.cpp's default
        # depends on its version, so say it.
        writer.add_add_bos_token(False)
    return {"pre_tokenizer": pre, "tokens": len(tokens), "merges": len(special.merges),
            "special_ids": dict(special.special_token_ids),
            "chat_template": special.chat_template is not None}


def _read_tokenizer_json(folder: Path) -> dict:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{folder}: no tokenizer.json; GGUF export needs the model's fast tokenizer file")
    tok = json.loads(path.read_text(encoding="utf-8"))
    model, decoder = tok.get("model") or {}, tok.get("decoder") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder.get("type") != "ByteLevel":
        raise UserError(f"{path}: only byte-level BPE tokenizers (GPT-2 style, as Qwen and SmolLM use) "
                        "can be exported to GGUF yet")
    return tok


def token_table(tok: dict, n_vocab: int) -> tuple[list[str], list[int]]:
    """Tokens and their types for ids 0..n_vocab-1.

    llama.cpp requires exactly one entry per embedding row: ids the tokenizer never uses
    (Qwen pads its embedding to a multiple of 128) become `[PAD<id>]` marked unused.
    """
    tokens: list[str | None] = [None] * n_vocab
    types = [T.UNUSED] * n_vocab

    def put(token_id: int, text: str, kind) -> None:
        if not 0 <= token_id < n_vocab:
            raise UserError(f"token {text!r} has id {token_id}, beyond the model's {n_vocab} embedding rows")
        tokens[token_id], types[token_id] = text, kind

    for text, token_id in tok["model"]["vocab"].items():
        put(token_id, text, T.NORMAL)
    for added in tok.get("added_tokens") or []:
        # Special tokens are control tokens (never produced by splitting text); other added
        # tokens are matched whole in text, which is what "user defined" means to llama.cpp.
        put(added["id"], added["content"], T.CONTROL if added.get("special") else T.USER_DEFINED)
    for i, text in enumerate(tokens):
        if text is None:
            tokens[i] = f"[PAD{i}]"
    return tokens, [int(t) for t in types]


def _known_splits() -> dict[str, str]:
    """Split regex -> llama.cpp pre-tokenizer name, from transformers' table of them."""
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS
    except ImportError:  # older transformers: only the structural matches below
        return {}
    names: dict[str, str] = {}
    for name, regex in GGUF_PRE_TOKENIZER_SPLITS.items():
        names.setdefault(regex, name)  # the first name listed is the canonical one
    return names


def pre_tokenizer_name(tok: dict) -> str:
    """llama.cpp's name for this tokenizer's pre-tokenizer, recognised from its structure."""
    pre = tok.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    byte_level_regex = bool(steps) and steps[-1].get("type") == "ByteLevel" and steps[-1].get("use_regex", True)
    if kinds == ["ByteLevel"] and byte_level_regex:
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and byte_level_regex:
        return "smollm"  # GPT-2's regex after splitting every digit apart
    if kinds == ["Split", "ByteLevel"] and not byte_level_regex:
        pattern = (steps[0].get("pattern") or {}).get("Regex")
        name = _known_splits().get(pattern)
        if name:
            return name
    log.warning("unrecognised pre-tokenizer %s: writing 'default'; llama.cpp may split text differently", kinds)
    return "default"
