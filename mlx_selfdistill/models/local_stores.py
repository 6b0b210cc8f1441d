"""Find GGUF files in the model stores users already have (Ollama; LM Studio needs nothing).

Ollama keeps a manifest per model tag, a JSON list of content-addressed layers; the layer of
media type `application/vnd.ollama.image.model` is the GGUF, stored as blobs/sha256-<hex>.
LM Studio keeps plain .gguf files in its models folder, so a path to one works as is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import UserError

OLLAMA_PREFIX = "ollama:"
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
DEFAULT_REGISTRY = "registry.ollama.ai"


def ollama_root() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models").expanduser()


def is_ollama_spec(spec: str) -> bool:
    return spec.startswith(OLLAMA_PREFIX)


def _manifest_path(root: Path, name: str, tag: str) -> Path:
    # "qwen2.5-coder" is library/qwen2.5-coder; "user/model" is a user namespace;
    # "host/user/model" names another registry.
    parts = name.split("/")
    if len(parts) == 1:
        parts = [DEFAULT_REGISTRY, "library", *parts]
    elif len(parts) == 2:
        parts = [DEFAULT_REGISTRY, *parts]
    return root / "manifests" / Path(*parts) / tag


def resolve_ollama(spec: str) -> Path:
    """`ollama:NAME[:TAG]` -> the GGUF blob of that local Ollama model."""
    ref = spec[len(OLLAMA_PREFIX):].strip()
    if not ref:
        raise UserError("ollama: needs a model name, e.g. ollama:qwen2.5-coder:1.5b")
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:  # no tag (a registry host's port is not one)
        name, tag = ref, "latest"
    root = ollama_root()
    manifest = _manifest_path(root, name, tag)
    if not manifest.is_file():
        raise UserError(f"{spec}: no such Ollama model in {root} (run `ollama pull {name}:{tag}`, "
                        "or set OLLAMA_MODELS to your models folder)")
    try:
        layers = json.loads(manifest.read_text()).get("layers", [])
    except (OSError, ValueError, AttributeError) as exc:
        raise UserError(f"{manifest}: unreadable Ollama manifest ({exc.__class__.__name__})") from exc
    digests = [layer.get("digest", "") for layer in layers if layer.get("mediaType") == MODEL_MEDIA_TYPE]
    if not digests:
        raise UserError(f"{spec}: the Ollama manifest has no model layer ({MODEL_MEDIA_TYPE})")
    blob = root / "blobs" / digests[0].replace(":", "-")
    if not blob.is_file():
        raise UserError(f"{spec}: its model blob {blob.name} is missing from {root / 'blobs'} "
                        f"(run `ollama pull {name}:{tag}` again)")
    return blob
