"""Fit a training run into a memory budget: batch tokens and gradient checkpointing, measured.

Peak memory is hard to predict from first principles (activations per layer, attention
per head and length, the allocator's run-ahead, what the output head costs), so the
budget is met by measurement: one forward and backward pass on one row and on a few rows
of the longest examples, MLX's peak memory read after each, a line peak = a + b * tokens
fitted through them (plus the optimizer's moments, which a probe does not allocate). The
tokens per optimizer step stay what the config asks; the budget only decides how a step
is computed: plain if it fits, else with gradient checkpointing, else in micro-batches
of the largest size that fits (gradient accumulation). A probe stops at the first
measurement over the budget, so probing does not itself overshoot by much; it costs two
to four training steps of one or two of the longest examples.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from functools import partial

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from ..errors import UserError
from .batching import make_batch
from .config import TrainConfig
from .data import TokenizedExample

GB = 1e9
# Head room under the budget for what a probe cannot see: allocator run-ahead, fragmentation.
MARGIN = 0.1
# The probe's batch sizes, in rows of the longest example.
PROBE_ROWS = (1, 2)


@dataclass
class LinearFit:
    """peak bytes = base + per_token * tokens, through the probe's measurements."""

    base: float
    per_token: float
    points: list = field(default_factory=list)  # [(tokens, peak bytes)]

    def predict(self, tokens: int) -> float:
        return self.base + self.per_token * tokens

    def max_tokens(self, limit: float) -> int:
        if self.per_token <= 0:  # flat, or a single (stopped) measurement: all or nothing
            return 1 << 30 if limit >= self.base else 0
        return max(0, int((limit - self.base) / self.per_token))

    def to_dict(self) -> dict:
        return {"base_gb": round(self.base / GB, 4), "gb_per_1k_tokens": round(1000 * self.per_token / GB, 4),
                "points": [{"tokens": t, "peak_gb": round(p / GB, 4)} for t, p in self.points]}


@dataclass
class MemoryPlan:
    budget_gb: float
    batch_tokens: int
    grad_accum: int
    grad_checkpoint: bool
    predicted_peak_gb: float
    fits: dict  # "plain" / "checkpointed" -> LinearFit.to_dict()
    probe_seconds: float

    def apply(self, config: TrainConfig) -> TrainConfig:
        return dataclasses.replace(config, batch_tokens=self.batch_tokens, grad_accum=self.grad_accum,
                                   grad_checkpoint=self.grad_checkpoint)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def fit_line(points: list[tuple[int, float]]) -> LinearFit:
    """Least squares through (tokens, peak); a single point or equal sizes give a flat slope."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_p = sum(p for _, p in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (p - mean_p) for t, p in points) / var if var else 0.0
    slope = max(slope, 0.0)
    return LinearFit(mean_p - slope * mean_t, slope, list(points))


def measure_step_peak(model, examples: list[TokenizedExample], rows: list[list[int]], config: TrainConfig) -> float:
    """MLX's peak memory (bytes, model included) over one forward and backward pass."""
    from .trainer import batch_arrays, loss_sum

    b = make_batch(examples, rows, pad_multiple=config.pad_multiple)
    args = batch_arrays(b, False)
    step = nn.value_and_grad(model, partial(loss_sum, chunked=config.chunked_loss,
                                            chunk_tokens=config.loss_chunk_tokens))
    mx.synchronize()
    mx.clear_cache()
    mx.reset_peak_memory()
    (loss, n), grads = step(model, *args)
    mx.eval(loss, n, grads)
    peak = mx.get_peak_memory()
    del loss, n, grads
    mx.clear_cache()
    return float(peak)


def probe(model, examples: list[TokenizedExample], config: TrainConfig, checkpointed: bool,
          stop_above: float = float("inf")) -> LinearFit:
    """The fit through PROBE_ROWS measurements; a measurement above `stop_above` bytes ends
    the probe (a bigger one would only overshoot the budget further)."""
    from .adapters import checkpoint_layers

    longest = max(range(len(examples)), key=lambda i: len(examples[i]))
    undo = checkpoint_layers(model) if checkpointed else None
    try:
        points = []
        for k in PROBE_ROWS:
            rows = [[longest]] * k
            tokens = k * (len(examples[longest]) - 1)
            points.append((tokens, measure_step_peak(model, examples, rows, config)))
            if points[-1][1] > stop_above:
                break
    finally:
        if undo is not None:
            undo()
    return fit_line(points)


def optimizer_bytes(model) -> float:
    """AdamW keeps two moments per trainable parameter (float32 here)."""
    return 2.0 * sum(v.nbytes for _, v in tree_flatten(model.trainable_parameters()))


def plan_memory(model, examples: list[TokenizedExample], config: TrainConfig) -> MemoryPlan:
    """How to train `config.batch_tokens` tokens per step within `config.memory_gb`.

    The model must already carry its adapters (the probe trains what the run trains).
    """
    budget = float(config.memory_gb) * GB
    usable = budget * (1 - MARGIN) - optimizer_bytes(model)
    target = config.batch_tokens
    longest = max(len(ex) for ex in examples) - 1
    t0 = time.perf_counter()
    was_training = model.training
    model.train()
    fits = {"plain": probe(model, examples, config, checkpointed=False, stop_above=usable)}
    chosen, tokens, accum = "plain", target, 1
    if fits["plain"].predict(target) > usable:
        fits["checkpointed"] = probe(model, examples, config, checkpointed=True, stop_above=usable)
        chosen = "checkpointed"
        if fits["checkpointed"].predict(target) > usable:
            fit = fits["checkpointed"]
            largest = fit.max_tokens(usable)
            if largest < longest:
                need = (fit.predict(longest) + optimizer_bytes(model)) / (1 - MARGIN) / GB
                raise UserError(f"memory_gb {config.memory_gb}: too small for this model and data (one "
                                f"{longest}-token example with gradient checkpointing needs about {need:.1f} GB); "
                                "raise --memory-gb, lower max_seq_len or quantize the base (--quantize-bits 4)")
            accum = math.ceil(target / largest)
            tokens = max(math.ceil(target / accum), longest)
    model.train(was_training)
    fit = fits[chosen]
    return MemoryPlan(budget_gb=float(config.memory_gb), batch_tokens=int(tokens),
                      grad_accum=int(accum * config.grad_accum), grad_checkpoint=chosen == "checkpointed",
                      predicted_peak_gb=round((fit.predict(tokens) + optimizer_bytes(model)) / GB, 3),
                      fits={k: v.to_dict() for k, v in fits.items()},
                      probe_seconds=round(time.perf_counter() - t0, 2))


def saved_plan(saved_config: dict, config: TrainConfig) -> TrainConfig:
    """A resumed run keeps the choices its checkpoint was made with (a new probe could differ)."""
    keep = {k: saved_config[k] for k in ("batch_tokens", "grad_accum", "grad_checkpoint") if k in saved_config}
    return dataclasses.replace(config, **keep)
