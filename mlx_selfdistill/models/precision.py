"""Which precision a model runs in on this backend.

Two rules, both about speed and memory rather than accuracy:
- The CPU backend multiplies float16/bfloat16 an order of magnitude slower than float32
  (DESIGN.md, platform facts), so half-precision models are upcast there, and GGUF files
  are dequantized to float32.
- On Metal, memory is the constraint: a GGUF is re-quantized to MLX 4- or 8-bit per
  tensor, following the source's own precision, so a 7B Q4_K_M stays ~4 GB instead of
  becoming 14 GB of float16.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

KEEP_DTYPE_ENV = "MLX_SELFDISTILL_KEEP_DTYPE"

# ggml block types by the MLX bit width that keeps their precision without growing them.
_EIGHT_BIT = {"Q8_0", "Q8_1", "Q8_K", "Q6_K"}
_FLOAT = {"F32": "float16", "F16": "float16", "BF16": "bfloat16", "F64": "float16"}


def on_cpu_backend() -> bool:
    import mlx.core as mx

    return mx.default_device() == mx.cpu or not mx.metal.is_available()


def keep_dtype() -> bool:
    """True when the user asked to run models in their stored dtype (env or --keep-dtype)."""
    return os.environ.get(KEEP_DTYPE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class TensorPlan:
    """How one dequantized tensor is stored: a float dtype, or MLX affine bits."""

    dtype: str = "float32"
    bits: int | None = None

    GROUP_SIZE = 64  # mlx_lm's default affine group size

    def apply(self, name: str, w) -> dict:
        """{name: array} for the MLX folder (weight/scales/biases when quantized)."""
        import mlx.core as mx

        if self.bits is None:
            return {name: w.astype(getattr(mx, self.dtype))}
        q, scales, biases = mx.quantize(w.astype(mx.float16), group_size=self.GROUP_SIZE, bits=self.bits)
        stem = name[: -len(".weight")]
        return {name: q, f"{stem}.scales": scales, f"{stem}.biases": biases}


def plan_tensor(mlx_name: str, qtype: str, shape, *, cpu: bool) -> TensorPlan:
    """The storage of one tensor: float32 on CPU; on Metal, MLX bits per the source type."""
    if cpu:
        return TensorPlan("float32")
    quantizable = (
        mlx_name.endswith(".weight")
        and len(shape) == 2
        and shape[-1] % TensorPlan.GROUP_SIZE == 0
        and not mlx_name.endswith("norm.weight")
    )
    if qtype in _FLOAT or not quantizable:
        return TensorPlan(_FLOAT.get(qtype, "float16"))
    return TensorPlan("float16", bits=8 if qtype in _EIGHT_BIT else 4)


def upcast_half_on_cpu(model, name: str, log=None) -> bool:
    """Run a float16/bfloat16 model in float32 on the CPU backend (one log line); True if done."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    if keep_dtype() or not on_cpu_backend():
        return False
    params = tree_flatten(model.parameters())
    half = {mx.float16, mx.bfloat16}
    if not any(v.dtype in half for _, v in params):
        return False
    model.set_dtype(mx.float32, lambda dtype: dtype in half)
    if log is not None:
        log(f"{name}: half precision runs slowly on the CPU backend; running it in float32 "
            f"(set {KEEP_DTYPE_ENV}=1 or pass --keep-dtype to keep the stored dtype)")
    return True
