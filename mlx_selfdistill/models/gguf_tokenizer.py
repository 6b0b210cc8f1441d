"""Rebuild a GGUF file's tokenizer and chat template as tokenizer.json + tokenizer_config.json.

A GGUF carries no tokenizer.json: the vocabulary, merges, special tokens and chat template
live in its metadata under llama.cpp's names. transformers' GGUF tokenizer converter turns
those into a `tokenizers` object; we use only its torch-free part (the metadata mapping and
`convert_gguf_tokenizer`) and read the metadata with the `gguf` package ourselves, because
transformers' own GGUF reader imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError


def _converter():
    """(GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer) wherever this transformers keeps them."""
    try:  # transformers >= 5
        from transformers.integrations.gguf.gguf_tokenizer_mapping import (
            GGUF_TOKENIZER_MAPPING,
            convert_gguf_tokenizer,
        )
    except ImportError:  # transformers 4.x
        from transformers.integrations.ggml import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer
    return GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer


def tokenizer_fields(gguf_file) -> tuple[dict, dict]:
    """(tokenizer_dict, tokenizer_config) under transformers' names, from the file's metadata."""
    GGUF_TOKENIZER_MAPPING, _ = _converter()

    groups = {}
    for group, renames in GGUF_TOKENIZER_MAPPING.items():
        groups[group] = {}
        for key, name in renames.items():
            value = gguf_file.get(f"tokenizer.{key}")
            if value is not None:
                groups[group][name] = value
    tokenizer, config = groups["tokenizer"], groups["tokenizer_config"]
    if "tokens" not in tokenizer:
        raise UserError(f"{gguf_file.path}: the GGUF has no tokenizer vocabulary (tokenizer.ggml.tokens)")
    if tokenizer.get("tokenizer_type") == "llama":
        # sentencepiece vocabularies that do not say otherwise get a BOS (llama.cpp's rule)
        config.setdefault("add_bos_token", True)
    tokens = tokenizer["tokens"]
    for name in ("bos", "eos", "unk", "pad"):
        key = {"unk": "unknown", "pad": "padding"}.get(name, name)
        token_id = gguf_file.get(f"tokenizer.ggml.{key}_token_id")
        if token_id is not None and 0 <= int(token_id) < len(tokens):
            config[f"{name}_token"] = tokens[int(token_id)]
    return tokenizer, config


# llama.cpp pre-tokenizers (tokenizer.ggml.pre) that transformers' converter does not rebuild:
# it gives every llama-architecture BPE vocabulary GPT-2's splitting. SmolLM splits each digit
# off first (HF's tokenizer: Digits(individual_digits) then ByteLevel), so a digit after
# indentation is its own token; without it 35 of HumanEval's 164 texts tokenize differently
# from llama.cpp (measured with llama-cpp-python; with it, 164 of 164 agree).
DIGITS_FIRST = {"smollm"}


def restore_pre_tokenizer(backend, pre: str | None) -> None:
    """Put back the splitting the file's pre-tokenizer name asks for, where the converter lost it."""
    from tokenizers import pre_tokenizers

    if pre in DIGITS_FIRST:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), backend.pre_tokenizer])


def write_tokenizer(gguf_file, folder: str | Path) -> None:
    """Write tokenizer.json and tokenizer_config.json (with chat_template) into folder."""
    from transformers import PreTrainedTokenizerFast

    _, convert_gguf_tokenizer = _converter()

    folder = Path(folder)
    tokenizer_dict, config = tokenizer_fields(gguf_file)
    try:
        backend, _ = convert_gguf_tokenizer(gguf_file.architecture, tokenizer_dict)
    except ValueError as exc:  # a tokenizer model transformers cannot build
        raise UserError(f"{gguf_file.path}: unsupported GGUF tokenizer: {str(exc).splitlines()[0]}") from exc
    restore_pre_tokenizer(backend, gguf_file.get("tokenizer.ggml.pre"))
    specials = {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if k in config}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **specials)
    tokenizer.save_pretrained(str(folder))
    # Write the settings ourselves so the folder reads the same under any transformers version
    # (newer ones move the chat template to chat_template.jinja).
    path = folder / "tokenizer_config.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved.update({k: v for k, v in config.items() if v is not None})
    saved["tokenizer_class"] = "PreTrainedTokenizerFast"  # a name every transformers version knows
    path.write_text(json.dumps(saved, indent=2, ensure_ascii=False))
