"""Load models, tokenizers and adapters; turn problems into prompt tokens.

A model is named by a local folder, a Hugging Face id (`mlx-community/...`, fetched
and cached by mlx_lm / huggingface_hub), a GGUF file (converted once into a cached MLX
folder, see gguf_convert), `ollama:NAME[:TAG]` (a local Ollama model's GGUF), or `tiny`
(the embedded default model). `resolve_model` is the single place a name becomes a folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError
from ..prompts import get_style
from ..records import Problem
from .local_stores import is_ollama_spec, resolve_ollama

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "tiny-coder"
TINY_ALIASES = {None, "", "tiny", "tiny-coder", "default"}


def resolve_model(spec: str | os.PathLike | None) -> str:
    """A local model folder (GGUF files converted into the cache first) or a hub id; one-line errors."""
    if spec in TINY_ALIASES:
        if not (DEFAULT_MODEL / "config.json").exists():
            raise UserError(
                f"the embedded model is missing at {DEFAULT_MODEL}: rebuild it with "
                "`python -m mlx_selfdistill.toy.build_model`"
            )
        return str(DEFAULT_MODEL)
    spec = str(spec)
    if is_ollama_spec(spec):
        return _gguf_folder(resolve_ollama(spec))
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf" or (path.is_file() and _starts_with_gguf_magic(path)):
        return _gguf_folder(path)  # missing/garbled files get one-line errors there
    if path.exists():
        if not (path / "config.json").exists():
            raise UserError(f"{path}: not a model folder (no config.json)")
        return str(path)
    parts = spec.split("/")
    looks_like_hub_id = len(parts) == 2 and all(parts) and not spec.startswith((".", "~"))
    if not looks_like_hub_id:
        raise UserError(f"model {spec!r}: no such folder, and not a Hugging Face id like 'org/name'")
    return spec


def _gguf_folder(path: Path) -> str:
    from .gguf_convert import cached_model_folder  # numpy/gguf only when a GGUF is named

    return str(cached_model_folder(path))


def _starts_with_gguf_magic(path: Path) -> bool:
    """Ollama blobs and renamed downloads are GGUFs without the suffix."""
    with open(path, "rb") as f:
        return f.read(4) == GGUF_MAGIC


def check_adapter(adapter: str | os.PathLike | None) -> str | None:
    if adapter is None:
        return None
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").exists() or not (path / "adapters.safetensors").exists():
        raise UserError(f"{path}: not an adapter folder (needs adapters.safetensors and adapter_config.json)")
    return str(path)


def load_model(spec=None, adapter=None, *, lazy: bool = False):
    """(model, tokenizer) through mlx_lm.load; failures become one-line UserErrors."""
    from mlx_lm import load

    name = resolve_model(spec)
    adapter_path = check_adapter(adapter)
    try:
        model, tokenizer = load(name, adapter_path=adapter_path, lazy=lazy)
    except UserError:
        raise
    except Exception as exc:  # network, missing files, unsupported architecture...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise UserError(f"could not load model {name!r}: {first}") from exc
    from .gguf_convert import notice
    from .precision import upcast_half_on_cpu

    upcast_half_on_cpu(model, model_name(spec), log=notice)
    return model, tokenizer


def prompt_text(tokenizer, problem: Problem, *, raw: bool = False, style: str | None = None) -> str:
    """The prompt of a named style (prompts/styles.py); `raw` is the older spelling of style='raw'."""
    return get_style(style, raw=raw).render(tokenizer, problem)


def prompt_tokens(tokenizer, problem: Problem, *, raw: bool = False, style: str | None = None) -> list[int]:
    chosen = get_style(style, raw=raw)
    # A rendered chat template already carries any special tokens the model needs.
    return tokenizer.encode(chosen.render(tokenizer, problem), add_special_tokens=chosen.add_special_tokens)


def model_name(spec) -> str:
    return "tiny-coder" if spec in TINY_ALIASES else str(spec)
