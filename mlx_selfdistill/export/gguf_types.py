"""The tensor encodings an exported GGUF can use, and which tensor gets which.

One job: per tensor, pick the ggml type for the requested file type (as llama.cpp's own
converter does: vectors stay F32, rows that do not fill whole blocks fall back to F16) and
encode a float32 array into it with the `gguf` package's reference quantizers.

The 4- and 5-bit types (q4_0, q4_1, q5_0, q5_1) keep a file near the size of the quantized
GGUFs people download. As in llama.cpp's `llama-quantize`, the token embedding and the output
matrix stay at higher precision: there it is Q6_K, which the `gguf` package cannot write, so
here Q8_0.
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
    "q4_0": (Q.Q4_0, F.MOSTLY_Q4_0),
    "q4_1": (Q.Q4_1, F.MOSTLY_Q4_1),
    "q5_0": (Q.Q5_0, F.MOSTLY_Q5_0),
    "q5_1": (Q.Q5_1, F.MOSTLY_Q5_1),
}
LOW_BIT = {Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1}
# GGUF names of the matrices a low-bit file keeps at Q8_0 (the vocabulary in and out).
KEPT_AT_Q8_0 = ("token_embd.weight", "output.weight")


def check_out_type(out_type: str) -> str:
    key = str(out_type).lower()
    if key not in OUT_TYPES:
        raise UserError(f"--type {out_type!r}: choose one of {', '.join(OUT_TYPES)}")
    return key


def tensor_type(out_type: str, shape: tuple[int, ...], name: str = "") -> gguf.GGMLQuantizationType:
    """Norms and biases (vectors) stay F32: they are tiny and precision-sensitive."""
    qtype = OUT_TYPES[out_type][0]
    if len(shape) < 2:
        return Q.F32
    if qtype in LOW_BIT and name in KEPT_AT_Q8_0:
        qtype = Q.Q8_0
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if shape[-1] % block:
        return Q.F16
    return qtype


def encoded_nbytes(shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType) -> int:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return prod(shape) // block * size


def encode(w: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    return gguf.quants.quantize(np.ascontiguousarray(w, dtype=np.float32), qtype)
