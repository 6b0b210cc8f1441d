"""What gets trained (LoRA / DoRA / full, on a float or quantized base) and how it is saved.

Adapters are written in mlx_lm's format (`adapters.safetensors` + `adapter_config.json`)
so `mlx_lm.load(model, adapter_path=...)` and `mlx_selfdistill.models.load_model` read them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from ..errors import UserError
from ..jsonl import write_json_atomic
from .config import TrainConfig


def num_blocks(model) -> int:
    layers = getattr(model, "layers", None)
    if layers is None:
        raise UserError(f"{type(model).__name__}: no .layers, cannot place LoRA adapters on this model")
    return len(layers)


def lora_layers_count(model, config: TrainConfig) -> int:
    n = num_blocks(model)
    return n if config.num_layers == "all" else min(int(config.num_layers), n)


def lora_parameters(config: TrainConfig) -> dict:
    params = {"rank": config.rank, "scale": config.scale, "dropout": config.dropout}
    if config.keys:
        params["keys"] = list(config.keys)
    return params


def _group_size_for(model, preferred: int) -> int:
    """The largest of (preferred, 64, 32) that divides every linear/embedding input dim."""
    dims = set()
    for _, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            dims.add(m.weight.shape[-1])
    for g in (preferred, 128, 64, 32):
        if g <= preferred and all(d % g == 0 for d in dims):
            return g
    raise UserError(f"cannot quantize this model: no group size in (128, 64, 32) divides its widths {sorted(dims)}")


def quantize_base(model, bits: int, group_size: int = 64) -> int:
    """Quantize a float model in place (QLoRA's frozen base). Returns the group size used."""
    g = _group_size_for(model, group_size)
    nn.quantize(model, group_size=g, bits=bits)
    return g


def is_quantized(model) -> bool:
    return any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in model.named_modules())


def setup_trainable(model, config: TrainConfig) -> dict:
    """Freeze the base and add adapters (or unfreeze everything for full fine-tuning).

    Seed first: every data-parallel rank must create the same LoRA weights.
    Returns facts for the adapter config (quantization used, number of layers).
    """
    from mlx_lm.tuner.utils import linear_to_lora_layers

    info = {}
    if config.quantize_bits is not None and not is_quantized(model):
        info["quantization"] = {"bits": config.quantize_bits,
                                "group_size": quantize_base(model, config.quantize_bits, config.quantize_group_size)}
    if config.fine_tune_type == "full":
        if is_quantized(model):
            raise UserError("full fine-tuning cannot train a quantized model: use fine_tune_type lora or dora")
        model.unfreeze()
        return info
    mx.random.seed(config.seed)
    model.freeze()
    try:
        linear_to_lora_layers(model, lora_layers_count(model, config), lora_parameters(config),
                              use_dora=config.fine_tune_type == "dora")
    except ValueError as exc:
        raise UserError(f"cannot add {config.fine_tune_type} adapters: {exc}") from None
    if not tree_flatten(model.trainable_parameters()):
        raise UserError(f"keys {config.keys}: no module of the model matched, nothing to train")
    return info


def adapter_config(model, config: TrainConfig, model_name: str | None, info: dict) -> dict:
    """What mlx_lm's load_adapters reads, plus the full training config for the record."""
    out = {"fine_tune_type": config.fine_tune_type, "num_layers": lora_layers_count(model, config),
           "lora_parameters": None if config.fine_tune_type == "full" else lora_parameters(config),
           "model": model_name, "trainer": "mlx_selfdistill", "train_config": config.to_dict()}
    out.update(info)
    return out


def trainable_weights(model) -> dict:
    return dict(tree_flatten(model.trainable_parameters()))


def save_safetensors_atomic(path: Path, arrays: dict) -> None:
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.safetensors")
    mx.save_safetensors(str(tmp), arrays)
    _fsync(tmp)
    os.replace(tmp, path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(adapter_dir: Path) -> None:
    """Drop the temporary files of atomic writes that a killed run left behind."""
    if not adapter_dir.is_dir():
        return
    for p in adapter_dir.glob(".*.tmp-*"):
        m = re.search(r"\.tmp-(\d+)", p.name)
        if p.is_file() and m and int(m.group(1)) != os.getpid():
            p.unlink(missing_ok=True)


def save_adapter(model, adapter_dir: Path, config_dict: dict) -> None:
    adapter_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(adapter_dir / "adapter_config.json", config_dict, default=str)
    save_safetensors_atomic(adapter_dir / "adapters.safetensors", trainable_weights(model))


# -- gradient checkpointing, per instance ---------------------------------------------------
def checkpoint_layers(model) -> Callable[[], None]:
    """Recompute each block's activations in the backward pass, to save memory.

    mlx_lm swaps `__call__` on the block's class, which changes every model of that class
    in the process. Here each block instance gets its own one-off subclass instead, so
    other models are untouched and parameter names stay the same. Returns an undo.
    """
    undo = []
    for layer in model.layers:
        base = type(layer)

        def call(self, x, *args, __base=base, **kwargs):
            def inner(params, x):
                self.update(params)
                return __base.__call__(self, x, *args, **kwargs)

            return mx.checkpoint(inner)(self.trainable_parameters(), x)

        layer.__class__ = type(f"Checkpointed{base.__name__}", (base,), {"__call__": call})
        undo.append((layer, base))

    def restore():
        for layer, base in undo:
            layer.__class__ = base

    return restore


def snapshot(model) -> Callable[[], None]:
    """An undo for everything training does to a model passed in by the caller: adapter
    modules, quantization, updated weights, frozen flags and train mode."""
    modules = model.leaf_modules()
    params = model.parameters()
    was_training = model.training

    def restore():
        model.update_modules(modules)
        model.update(params)
        model.unfreeze()
        model.train(was_training)

    return restore


def count_parameters(model) -> tuple[int, int]:
    """(trainable, stored) parameter counts; a quantized weight counts its packed words."""
    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    total = sum(v.size for _, v in tree_flatten(model.parameters()))
    return int(trainable), int(total)
