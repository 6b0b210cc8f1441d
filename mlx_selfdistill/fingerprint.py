"""What made a result: identities of models, adapters and problem sets, and the key of an evaluation.

A cached or resumed result is reused only when everything that made it is the same. A model
spec (a path, a GGUF file, `ollama:NAME`) can name other weights tomorrow, so a model is
identified by the content of its weights, not by its name: a GGUF or Ollama blob by the file's
sha256 (memoized per path, size and mtime, so a 1 GB file is hashed once per version), a model
folder by the hashes of its config, tokenizer and weight files, a hub id by its downloaded
snapshot's files (by the id alone before it is downloaded). An adapter is identified by its weights and the settings that load it; a problem
set by its ids and the hash of its content.

`differences(old, new)` names what changed between two keys, for one-line refusals.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

# Files of a model folder whose bytes decide what the model computes.
WEIGHT_SUFFIXES = (".safetensors", ".npz", ".gguf")
FOLDER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
# adapter_config.json fields that change how the adapter's weights are applied.
ADAPTER_LOAD_FIELDS = ("fine_tune_type", "num_layers", "lora_parameters")


def digest_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def digest_json(obj) -> str:
    return digest_text(json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")))


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file, memoized by (path, size, mtime, inode): hashed once per version."""
    from .models.gguf_convert import content_key

    return content_key(path)


def folder_digest(folder: str | os.PathLike) -> str:
    """One sha256 over a model folder's config, tokenizer and weight files (names and contents)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file()
                   and (p.suffix in WEIGHT_SUFFIXES or p.name in FOLDER_FILES))
    return digest_text("\n".join(f"{p.name}:{file_digest(p)}" for p in files))


def model_identity(spec, adapter: str | os.PathLike | None = None) -> str:
    """'NAME@sha256:HEX' of a model spec, with '+ADAPTER@sha256:HEX' when an adapter is applied.

    What a Sample's `model` field records and what an evaluation is keyed by."""
    from .models import TINY_ALIASES, model_name, resolve_model
    from .models.local_stores import is_ollama_spec, resolve_ollama

    text = str(spec) if spec not in TINY_ALIASES else ""
    if text and is_ollama_spec(text):
        ident = f"{text}@sha256:{file_digest(resolve_ollama(text))}"
    elif text and Path(text).expanduser().is_file():
        ident = f"{model_name(spec)}@sha256:{file_digest(Path(text).expanduser())}"
    else:
        folder = resolve_model(spec)
        if Path(folder).is_dir():
            ident = f"{model_name(spec)}@sha256:{folder_digest(folder)}"
        else:
            cached = _hub_snapshot(folder)
            ident = f"{folder}@sha256:{folder_digest(cached)}" if cached else f"{folder}@hub"
    if adapter is not None:
        ident += "+" + adapter_identity(adapter)
    return ident


def loaded_identity(model, tokenizer) -> str:
    """'loaded-model@sha256:HEX' of a model already in memory (weights, and the tokenizer's chat
    template and vocabulary size, which shape the prompts), for callers that pass a loaded pair
    without its spec. Reads every weight once: a spec's identity is cheaper."""
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten

    h = hashlib.sha256()
    for name, value in sorted(tree_flatten(model.parameters()), key=lambda kv: kv[0]):
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        array = value.view(mx.uint16) if value.dtype == mx.bfloat16 else value  # numpy has no bfloat16
        h.update(memoryview(np.ascontiguousarray(np.array(array))).cast("B"))
    h.update(str(getattr(tokenizer, "chat_template", "")).encode())
    h.update(str(len(tokenizer.get_vocab()) if hasattr(tokenizer, "get_vocab") else "").encode())
    return f"loaded-model@sha256:{h.hexdigest()}"


def _hub_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of a downloaded hub model (no network), else None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # no huggingface_hub, or a malformed id: identified by name only
        return None
    return Path(found).parent if isinstance(found, str) else None


def adapter_identity(adapter: str | os.PathLike) -> str:
    """'adapter@sha256:HEX' over the adapter's weights and the fields that load them (not its
    path: the same adapter copied elsewhere makes the same samples)."""
    folder = Path(adapter).expanduser()
    config = json.loads((folder / "adapter_config.json").read_text())
    loading = {k: config.get(k) for k in ADAPTER_LOAD_FIELDS}
    weights = file_digest(folder / "adapters.safetensors")
    return f"adapter@sha256:{digest_json({'weights': weights, 'config': loading})}"


def problems_identity(problems: Sequence) -> dict:
    """Count, ids hash and content hash of a problem list (order included: it decides the slices)."""
    ids = [p.id for p in problems]
    return {"count": len(ids), "ids_sha256": digest_json(ids),
            "content_sha256": digest_json([p.to_dict() for p in problems])}


def evaluation_key(model: str, problems: Sequence, *, prompt_style: str, sampling: dict,
                   timeout_s: float) -> dict:
    """Everything that decides an evaluation's samples and verdicts."""
    return {"model": model, "problems": problems_identity(problems), "prompt_style": prompt_style,
            "sampling": dict(sorted(sampling.items())), "timeout_s": float(timeout_s)}


def short(key: dict, length: int = 12) -> str:
    """A folder name for a key."""
    return digest_json(key)[:length]


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ (sections compared entry by entry)."""
    out: list[str] = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict) and k != "problems":
            out += differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def describe(names: Iterable[str]) -> str:
    return ", ".join(names) or "nothing"


KEY_FILE = "fingerprint.json"


def claim(folder: str | os.PathLike, key: dict, *, hint: str) -> None:
    """Make `folder` the home of results keyed by `key`: refuse (one line, naming what differs)
    when it holds results of another key, or results written before keys were recorded."""
    from .errors import UserError
    from .jsonl import write_json_atomic

    folder = Path(folder)
    path = folder / KEY_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{path}: corrupt; delete {folder} to start it over") from None
        diff = differences(old, key)
        if diff:
            raise UserError(f"{folder} holds results made with another {describe(diff)}; {hint}")
        return
    if folder.is_dir() and any(folder.glob("*.jsonl")):
        raise UserError(f"{folder} holds results that record no fingerprint (an older version wrote them), "
                        f"so they cannot be checked; {hint}")
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, key)
