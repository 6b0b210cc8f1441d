"""Merge an adapter into its base model and save a standalone model folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mlx.utils import tree_unflatten

from ..errors import UserError


def fuse_in_memory(model, *, dequantize: bool = False) -> int:
    """Fold LoRA/DoRA layers into plain weights, in place; returns how many were folded."""
    fused = [(n, m.fuse(dequantize=dequantize)) for n, m in model.named_modules() if hasattr(m, "fuse")]
    if fused:
        model.update_modules(tree_unflatten(fused))
    return len(fused)


def fuse_adapter(model_spec, adapter_path, save_path, *, dequantize: bool = False) -> dict:
    """Load base + adapter, fold the low-rank updates into the weights, save to save_path.

    The folder is written beside the target and renamed into place, so a killed fuse
    never leaves a half-written model that looks complete.
    """
    from mlx_lm.utils import dequantize_model, load, save

    from ..models import check_adapter, resolve_model

    base = resolve_model(model_spec)
    adapter = check_adapter(adapter_path)
    save_path = Path(save_path)
    if save_path.exists() and any(save_path.iterdir()) and not (save_path / "config.json").exists():
        raise UserError(f"{save_path}: exists and is not a model folder; choose another --save-path")
    try:
        model, tokenizer, config = load(base, adapter_path=adapter, return_config=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise UserError(f"could not load {base!r} with adapter {adapter!r}: {first}") from exc
    fused_layers = fuse_in_memory(model, dequantize=dequantize)
    if dequantize:
        model = dequantize_model(model)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    tmp = save_path.with_name(f".{save_path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp, base, model, tokenizer, config, donate_model=False)
    if save_path.exists():
        shutil.rmtree(save_path)
    os.replace(tmp, save_path)
    return {"model": str(model_spec), "adapter_path": str(adapter), "save_path": str(save_path),
            "fused_layers": fused_layers, "dequantized": dequantize}
