"""The tensor encodings an exported GGUF can use, and which tensor gets which.

One job: per tensor, pick the ggml type for the requested file type (as llama.cpp's own
converter does: vectors stay F32, rows that do not fill whole blocks fall back to F16) and
encode a float32 array into it with the `gguf` package's reference quantizers.
"""

from __future__ import annotations

from math import prod

import gguf
import numpy as np

from ..errors import UserError

Q = gguf.GGMLQuantizationType
F = gguf.LlamaFileType

# --type -> (ggml type of the matrices, general.file_type)
OUT_TYPES = {
    "f16": (Q.F16, F.MOSTLY_F16),
    "q8_0": (Q.Q8_0, F.MOSTLY_Q8_0),
    "bf16": (Q.BF16, F.MOSTLY_BF16),
    "f32": (Q.F32, F.ALL_F32),
}


def check_out_type(out_type: str) -> str:
    key = str(out_type).lower()
    if key not in OUT_TYPES:
        raise UserError(f"--type {out_type!r}: choose one of {', '.join(OUT_TYPES)}")
    return key


def tensor_type(out_type: str, shape: tuple[int, ...]) -> gguf.GGMLQuantizationType:
    """Norms and biases (vectors) stay F32: they are tiny and precision-sensitive."""
    qtype = OUT_TYPES[out_type][0]
    if len(shape) < 2:
        return Q.F32
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if shape[-1] % block:
        return Q.F16
    return qtype


def encoded_nbytes(shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType) -> int:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return prod(shape) // block * size


def encode(w: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    return gguf.quants.quantize(np.ascontiguousarray(w, dtype=np.float32), qtype)
