"""Read a GGUF file as an mlx_lm model: its config, and its tensors dequantized one at a time.

GGUF (llama.cpp's format) is how most users already hold their models (Ollama, LM Studio).
`mlx.core.load` reads only some of its quant types (no K-quants, no Q5_0), so the `gguf`
package - ggml's own reader - dequantizes every type here. This module knows the two
vocabularies: llama.cpp's tensor/metadata names and mlx_lm's, and the transforms between
them (llama.cpp's q/k row permutation for llama, Gemma's +1 on norm weights).
Writing the MLX folder is `gguf_convert`'s job; the tokenizer is `gguf_tokenizer`'s.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UserError
from . import GGUF_MAGIC

# GGUF architecture -> mlx_lm model_type.
ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3": "gemma3_text"}

# llama.cpp's converter permutes q/k rows for these architectures only (its rope kernel
# rotates interleaved pairs); the others are stored as Hugging Face has them.
PERMUTED_QK = {"llama"}

# Per-layer names: llama.cpp suffix -> mlx_lm suffix (under model.layers.N.).
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
# Gemma 3 has four norms per layer; llama.cpp's `ffn_norm` is its pre-feed-forward norm.
_GEMMA3_LAYER_NAMES = {
    **_LAYER_NAMES,
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")


@dataclass(frozen=True)
class SourceTensor:
    """One tensor as stored: its GGUF name, mlx name, ggml type name and bytes on disk."""

    gguf_name: str
    mlx_name: str
    qtype: str
    nbytes: int


class GGUFFile:
    """An opened GGUF file: metadata and lazily dequantized tensors under mlx_lm names."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self.reader = _open_reader(self.path)
        self.architecture = self.get("general.architecture")
        if self.architecture not in ARCHITECTURES:
            raise UserError(
                f"{self.path}: unsupported GGUF architecture {self.architecture!r} "
                f"(supported: {', '.join(sorted(ARCHITECTURES))})"
            )
        self._tensors = {t.name: t for t in self.reader.tensors}
        self._check_types()

    # -- metadata ----------------------------------------------------------------------

    def get(self, key: str, default=None):
        field = self.reader.fields.get(key)
        if field is None:
            return default
        return field.contents()

    def arch_get(self, key: str, default=None):
        return self.get(f"{self.architecture}.{key}", default)

    @property
    def name(self) -> str | None:
        return self.get("general.name")

    def config(self) -> dict:
        """config.json for mlx_lm, from the file's metadata (and tensor shapes where needed)."""
        a, need = self.arch_get, self._need
        n_heads = int(need("attention.head_count"))
        hidden = int(need("embedding_length"))
        embed = self._tensors.get("token_embd.weight")
        if embed is None:
            raise UserError(f"{self.path}: the GGUF has no token_embd.weight tensor; it is not a complete model")
        cfg = {
            "model_type": ARCHITECTURES[self.architecture],
            "hidden_size": hidden,
            "num_hidden_layers": int(need("block_count")),
            "intermediate_size": int(need("feed_forward_length")),
            "num_attention_heads": n_heads,
            "num_key_value_heads": int(a("attention.head_count_kv", n_heads)),
            "rms_norm_eps": float(a("attention.layer_norm_rms_epsilon", 1e-6)),
            "vocab_size": int(embed.shape[1]),  # ggml order: (cols, rows)
            "max_position_embeddings": int(a("context_length", 4096)),
            "tie_word_embeddings": "output.weight" not in self._tensors,
        }
        theta = a("rope.freq_base")
        if theta is not None:
            cfg["rope_theta"] = float(theta)
        head_dim = a("attention.key_length")
        if head_dim is not None:
            cfg["head_dim"] = int(head_dim)
        elif self.architecture in ("qwen3", "gemma3"):
            cfg["head_dim"] = hidden // n_heads
        scaling = self._rope_scaling()
        if scaling:
            cfg["rope_scaling"] = scaling
        if self.architecture == "gemma3":
            cfg["query_pre_attn_scalar"] = cfg["head_dim"]
            window = a("attention.sliding_window")
            if window is not None:
                cfg["sliding_window"] = int(window)
            pattern = a("attention.sliding_window_pattern")  # an int, or per layer True = sliding
            if isinstance(pattern, list) and False in pattern:
                pattern = pattern.index(False) + 1
            if isinstance(pattern, int):
                cfg["sliding_window_pattern"] = pattern
        if self.architecture == "llama":
            cfg["attention_bias"] = "blk.0.attn_q.bias" in self._tensors
        for name in ("bos", "eos"):
            token_id = self.get(f"tokenizer.ggml.{name}_token_id")
            if token_id is not None:
                cfg[f"{name}_token_id"] = int(token_id)
        # End-of-turn tokens also end a generation (e.g. <|im_end|> beside <|endoftext|>).
        eos = [cfg["eos_token_id"]] if "eos_token_id" in cfg else []
        for key in ("eot_token_id", "eom_token_id"):
            token_id = self.get(f"tokenizer.ggml.{key}")
            if token_id is not None and int(token_id) not in eos:
                eos.append(int(token_id))
        if len(eos) > 1:
            cfg["eos_token_id"] = eos
        return cfg

    def _need(self, key: str):
        value = self.arch_get(key)
        if value is None:
            raise UserError(f"{self.path}: GGUF metadata lacks {self.architecture}.{key}; the file is incomplete")
        return value

    def _rope_scaling(self) -> dict | None:
        kind = self.arch_get("rope.scaling.type")
        factor = self.arch_get("rope.scaling.factor")
        if kind in (None, "none") or factor is None:
            return None
        scaling = {"type": kind, "rope_type": kind, "factor": float(factor)}
        original = self.arch_get("rope.scaling.original_context_length")
        if original is not None:
            scaling["original_max_position_embeddings"] = int(original)
        return scaling

    # -- tensors -----------------------------------------------------------------------

    def source_tensors(self) -> list[SourceTensor]:
        return [SourceTensor(t.name, self.mlx_name(t.name), t.tensor_type.name, int(t.n_bytes))
                for t in self.reader.tensors if self.mlx_name(t.name) is not None]

    def mlx_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each mlx tensor's shape, from the tensor table alone (ggml lists dimensions reversed)."""
        return {s.mlx_name: tuple(int(d) for d in reversed(self._tensors[s.gguf_name].shape))
                for s in self.source_tensors()}

    def mlx_name(self, gguf_name: str) -> str | None:
        """The mlx_lm parameter name, or None for tensors mlx_lm computes itself (rope freqs)."""
        if gguf_name in _GLOBAL_NAMES:
            return _GLOBAL_NAMES[gguf_name]
        if gguf_name == "rope_freqs.weight":
            return None
        m = _LAYER_RE.match(gguf_name)
        names = _GEMMA3_LAYER_NAMES if self.architecture == "gemma3" else _LAYER_NAMES
        if not m or m.group(2) not in names:
            raise UserError(f"{self.path}: tensor {gguf_name!r} has no {self.architecture} counterpart in mlx_lm")
        return f"model.layers.{m.group(1)}.{names[m.group(2)]}.{m.group(3)}"

    def dequantized(self, gguf_name: str) -> np.ndarray:
        """One tensor as float32 in mlx_lm's layout (rows = output features)."""
        from gguf.quants import dequantize

        t = self._tensors[gguf_name]
        try:
            w = dequantize(t.data, t.tensor_type)
        except NotImplementedError as exc:
            raise UserError(f"{self.path}: quant type {t.tensor_type.name} of {gguf_name} cannot be dequantized "
                            "by the installed gguf package (try `pip install -U gguf`)") from exc
        w = np.asarray(w, dtype=np.float32).reshape(tuple(int(d) for d in reversed(t.shape)))
        return self._to_mlx_layout(gguf_name, w)

    def _to_mlx_layout(self, gguf_name: str, w: np.ndarray) -> np.ndarray:
        if self.architecture in PERMUTED_QK:
            if gguf_name.startswith("blk.") and ".attn_q." in gguf_name:
                w = unpermute_qk(w, int(self.arch_get("attention.head_count")))
            elif gguf_name.startswith("blk.") and ".attn_k." in gguf_name:
                n_heads = int(self.arch_get("attention.head_count"))
                w = unpermute_qk(w, int(self.arch_get("attention.head_count_kv", n_heads)))
        if self.architecture == "gemma3" and gguf_name.endswith("norm.weight"):
            w = w - 1.0  # llama.cpp stores Gemma's (1 + w); mlx_lm adds the 1 itself
        return w

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """(mlx name, float32 array) pairs, one dequantized tensor alive at a time."""
        for st in self.source_tensors():
            yield st.mlx_name, self.dequantized(st.gguf_name)

    def _check_types(self) -> None:
        import gguf.quants

        # gguf's registry of the block types it can dequantize (F32/F16 are handled inline).
        known = getattr(gguf.quants, "_type_traits", None)
        for t in self.reader.tensors:
            qtype = t.tensor_type
            if known is not None and qtype.name not in ("F32", "F16") and qtype not in known:
                raise UserError(f"{self.path}: unsupported quant type {qtype.name} (tensor {t.name}); "
                                "re-quantize it with llama.cpp to Q8_0, Q4_K_M or similar")


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's row permutation of q/k (weights or biases; n_heads = kv heads for k).

    llama.cpp's rope rotates adjacent pairs while Hugging Face rotates the two halves of each
    head, so its converter interleaves each head's halves; this restores them.
    """
    rows = w.shape[0]
    rest = w.shape[1:]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)


def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's permutation (the inverse of `unpermute_qk`), for writers and tests."""
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def check_magic(path: str | os.PathLike) -> None:
    """One-line errors for a missing file or one that is not a GGUF at all."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such GGUF file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise UserError(f"{path}: not a GGUF file (starts with {magic!r}, expected b'GGUF')")


def _open_reader(path: Path):
    """GGUFReader with the user's mistakes turned into one-line errors."""
    check_magic(path)
    from gguf import GGUFReader

    size = path.stat().st_size
    try:
        reader = GGUFReader(path, "r")
    except Exception as exc:  # the reader maps every tensor up front: a cut anywhere lands here
        raise UserError(f"{path}: truncated or corrupt GGUF file ({size} bytes; {_first_line(exc)}); "
                        "download it again") from exc
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise UserError(f"{path}: truncated GGUF file ({size} bytes, its tensors need {end}); download it again")
    return reader


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
