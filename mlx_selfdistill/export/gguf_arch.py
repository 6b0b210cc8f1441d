"""What llama.cpp must be told about a model's architecture, from its mlx_lm config.

One job: turn `config.json` into llama.cpp's architecture name and hyperparameter keys, and
mlx_lm's tensor names into llama.cpp's (through the `gguf` package's own name map), with
the q/k row order llama.cpp's rope kernel expects.
"""

from __future__ import annotations

from dataclasses import dataclass

import gguf
import numpy as np

from ..errors import UserError
from ..models.gguf import PERMUTED_QK, permute_qk

# mlx_lm model_type -> GGUF architecture (mlx_lm runs Mistral with its llama module, and
# llama.cpp reads Mistral files as llama too).
ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}


@dataclass(frozen=True)
class ArchSpec:
    arch: str
    n_layers: int
    hidden: int
    ffn: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    context: int
    rope_theta: float
    rms_eps: float
    rope_scaling: dict | None
    tied: bool


def arch_spec(config: dict) -> ArchSpec:
    """The hyperparameters llama.cpp needs; one-line errors for what it cannot run as exported."""
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise UserError(f"model_type {model_type!r} cannot be exported to GGUF yet; "
                        f"supported: {', '.join(sorted(ARCHITECTURES))}")
    hidden, n_heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    scaling = config.get("rope_scaling")
    if scaling:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind not in ("linear", "default"):
            raise UserError(f"rope_scaling {kind!r} is not supported by the GGUF export (only linear)")
        scaling = scaling if kind == "linear" else None
    return ArchSpec(
        arch=ARCHITECTURES[model_type],
        n_layers=int(config["num_hidden_layers"]),
        hidden=hidden,
        ffn=int(config["intermediate_size"]),
        n_heads=n_heads,
        n_kv_heads=int(config.get("num_key_value_heads") or n_heads),
        head_dim=int(config.get("head_dim") or hidden // n_heads),
        context=int(config.get("max_position_embeddings") or 4096),
        rope_theta=float(config.get("rope_theta", 10000.0)),
        rms_eps=float(config.get("rms_norm_eps", 1e-6)),
        rope_scaling=scaling,
        # mlx_lm's llama/qwen default is tied when the key is absent.
        tied=bool(config.get("tie_word_embeddings", True)),
    )


def add_hparams(writer: gguf.GGUFWriter, spec: ArchSpec, n_vocab: int) -> None:
    writer.add_context_length(spec.context)
    writer.add_embedding_length(spec.hidden)
    writer.add_block_count(spec.n_layers)
    writer.add_feed_forward_length(spec.ffn)
    writer.add_head_count(spec.n_heads)
    writer.add_head_count_kv(spec.n_kv_heads)
    writer.add_rope_freq_base(spec.rope_theta)
    writer.add_layer_norm_rms_eps(spec.rms_eps)
    writer.add_rope_dimension_count(spec.head_dim)
    writer.add_vocab_size(n_vocab)
    # llama.cpp assumes hidden / heads unless told; qwen3 and some llamas differ.
    if spec.head_dim * spec.n_heads != spec.hidden or spec.arch == "qwen3":
        writer.add_key_length(spec.head_dim)
        writer.add_value_length(spec.head_dim)
    if spec.rope_scaling:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(spec.rope_scaling["factor"]))


class TensorNames:
    """mlx_lm parameter name -> llama.cpp tensor name, via the gguf package's name map."""

    def __init__(self, spec: ArchSpec):
        arch_id = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == spec.arch)
        self._map = gguf.get_tensor_name_map(arch_id, spec.n_layers)

    def __call__(self, mlx_name: str) -> str:
        name = self._map.get_name(mlx_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UserError(f"tensor {mlx_name!r} has no llama.cpp name: this model cannot be exported to GGUF")
        return name


def to_llama_cpp_rows(spec: ArchSpec, gguf_name: str, w: np.ndarray) -> np.ndarray:
    """q/k weights (and biases) in the row order llama.cpp's rope expects for this architecture.

    llama.cpp's llama rope rotates adjacent pairs where Hugging Face and MLX rotate the two
    halves of each head; its converter interleaves the halves and its loader expects that
    (the importer undoes the same permutation). qwen2/qwen3 are stored as they are.
    """
    if spec.arch not in PERMUTED_QK:
        return w
    if ".attn_q." in gguf_name:
        heads = spec.n_heads
    elif ".attn_k." in gguf_name:
        heads = spec.n_kv_heads
    else:
        return w
    return permute_qk(w, heads)
