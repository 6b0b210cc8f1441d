"""TrainConfig: every knob of a training run, loadable from YAML like `mlx_lm.lora -c`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..errors import UserError
from .batching import GROUPINGS

FINE_TUNE_TYPES = ("lora", "dora", "full")
SCHEDULES = ("cosine", "constant")

# Fields that only change how a run is watched or stored; a resumed run may change them,
# and so may iters/epochs (a resumed run may be extended). Everything else must match.
RESUME_MAY_CHANGE = {"iters", "epochs", "save_every", "keep_checkpoints", "val_every", "compile", "chunked_loss",
                     "loss_chunk_tokens", "memory_gb"}


@dataclass
class TrainConfig:
    fine_tune_type: str = "lora"
    rank: int = 8
    scale: float = 20.0  # mlx_lm's LoRA scale; `alpha` sets scale = alpha / rank
    alpha: Optional[float] = None
    dropout: float = 0.0
    num_layers: Union[int, str] = "all"  # the last N transformer blocks, or "all"
    keys: Optional[list] = None  # target modules inside a block, e.g. ["self_attn.q_proj"]; None = all linears
    lr: float = 1e-4
    lr_schedule: str = "cosine"
    warmup: int = 0  # optimizer steps of linear warmup from 0
    min_lr_ratio: float = 0.1  # cosine ends at lr * min_lr_ratio
    weight_decay: float = 0.0
    max_grad_norm: float = 0.0  # 0 = no clipping
    iters: Optional[int] = None  # optimizer steps; default: one epoch
    epochs: Optional[float] = None
    batch_tokens: int = 2048  # tokens per batch (per step with grad_accum=1); no chunk pads past it
    # "batch": random batches, length-sorted inside (unbiased steps); "epoch": the whole epoch
    # sorted by length (least padding, but a step sees only one length of example).
    length_grouping: str = "batch"
    max_seq_len: int = 2048  # longer examples are dropped (truncating would cut the EOS)
    pad_multiple: int = 8  # pad lengths to a multiple: fewer distinct shapes to compile
    pack: bool = False  # several sequences per row, attention kept inside each
    pack_len: Optional[int] = None  # row length when packing; default: 4x the longest example, within batch_tokens
    grad_accum: int = 1
    grad_checkpoint: bool = False
    seed: int = 0
    save_every: int = 100  # optimizer steps between checkpoints (and always at the end)
    keep_checkpoints: int = 2
    val_every: int = 0  # 0 = validate only at the end (when validation data is given)
    quantize_bits: Optional[int] = None  # QLoRA from a float base: quantize it before adding LoRA
    quantize_group_size: int = 64
    # mx.compile the gradient step. Each new batch shape costs a trace; on the CPU backend
    # the tiny model trained ~25% faster without it (benchmarks/training.py).
    compile: bool = False
    # The loss over the vocabulary a chunk of tokens at a time (training/chunked_loss.py):
    # the [tokens x vocab] logits are never held whole. Same loss within float32 rounding.
    chunked_loss: bool = True
    loss_chunk_tokens: Optional[int] = None  # tokens per chunk; default: 64 MB of float32 logits
    # A memory budget in GB: a short probe measures peak memory and picks batch_tokens per
    # micro-batch, grad_accum and grad_checkpoint so a step of batch_tokens x grad_accum fits.
    memory_gb: Optional[float] = None

    def __post_init__(self):
        if self.fine_tune_type not in FINE_TUNE_TYPES:
            raise UserError(f"fine_tune_type {self.fine_tune_type!r}: use one of {', '.join(FINE_TUNE_TYPES)}")
        if self.lr_schedule not in SCHEDULES:
            raise UserError(f"lr_schedule {self.lr_schedule!r}: use one of {', '.join(SCHEDULES)}")
        if self.length_grouping not in GROUPINGS:
            raise UserError(f"length_grouping {self.length_grouping!r}: use one of {', '.join(GROUPINGS)}")
        if self.alpha is not None:
            self.scale = float(self.alpha) / self.rank
        if isinstance(self.num_layers, str) and self.num_layers != "all":
            try:
                self.num_layers = int(self.num_layers)
            except ValueError:
                raise UserError(f"num_layers {self.num_layers!r}: use a positive integer or 'all'") from None
        positive = {"rank": self.rank, "batch_tokens": self.batch_tokens, "max_seq_len": self.max_seq_len,
                    "grad_accum": self.grad_accum, "pad_multiple": self.pad_multiple}
        if isinstance(self.num_layers, int):
            positive["num_layers"] = self.num_layers
        if self.loss_chunk_tokens is not None:
            positive["loss_chunk_tokens"] = self.loss_chunk_tokens
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if self.iters is not None and (not isinstance(self.iters, int) or self.iters < 1):
            raise UserError(f"iters must be a positive integer, got {self.iters!r}")
        if self.epochs is not None and not (isinstance(self.epochs, (int, float)) and self.epochs > 0):
            raise UserError(f"epochs must be a positive number, got {self.epochs!r}")
        if self.iters is not None and self.epochs is not None:
            raise UserError("set iters or epochs, not both")
        if self.memory_gb is not None and not (isinstance(self.memory_gb, (int, float)) and self.memory_gb > 0):
            raise UserError(f"memory_gb must be a positive number of gigabytes, got {self.memory_gb!r}")
        if not self.lr > 0:
            raise UserError(f"lr must be positive, got {self.lr!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.warmup < 0 or self.save_every < 0 or self.val_every < 0:
            raise UserError("warmup, save_every and val_every must be >= 0")
        if self.keep_checkpoints < 1:
            raise UserError("keep_checkpoints must be at least 1")
        if self.quantize_bits is not None and self.quantize_bits not in (2, 3, 4, 5, 6, 8):
            raise UserError(f"quantize_bits {self.quantize_bits!r}: use 2, 3, 4, 5, 6 or 8")
        if self.quantize_bits is not None and self.fine_tune_type == "full":
            raise UserError("full fine-tuning cannot train a quantized base: use fine_tune_type lora or dora")
        if self.keys is not None and (not isinstance(self.keys, list) or not all(isinstance(k, str) for k in self.keys)):
            raise UserError("keys must be a list of module names, e.g. ['self_attn.q_proj', 'self_attn.v_proj']")

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict, *, source: str = "training config") -> "TrainConfig":
        if not isinstance(values, dict):
            raise UserError(f"{source}: expected a mapping of option: value")
        from ..config import unknown_fields

        unknown, known = unknown_fields(cls, values)
        if unknown:
            raise UserError(f"{source}: unknown option(s) {', '.join(unknown)} (known: {', '.join(known)})")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path, overrides: Optional[dict] = None) -> "TrainConfig":
        values = mlx_lm_aliases(read_config_file(path))
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_dict(values, source=str(path))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def resume_signature(self) -> dict:
        """The settings a checkpoint must share with the run that resumes it."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUME_MAY_CHANGE}


def read_config_file(path) -> dict:
    """The mapping in a YAML file, with one-line errors for a missing or malformed file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such config file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of option: value")
    return values


def mlx_lm_aliases(values: dict) -> dict:
    """Accept the spellings of an `mlx_lm.lora` YAML for the options both share."""
    values = dict(values)
    lora = values.pop("lora_parameters", None)
    if isinstance(lora, dict):
        for k in ("rank", "scale", "dropout", "keys"):
            if k in lora:
                values.setdefault(k, lora[k])
    renames = {"learning_rate": "lr", "max_seq_length": "max_seq_len",
               "grad_accumulation_steps": "grad_accum", "steps_per_save": "save_every",
               "steps_per_eval": "val_every"}
    for old, new in renames.items():
        if old in values:
            values.setdefault(new, values.pop(old))
    return values


def _reject_unknown_keywords(cls):
    """`TrainConfig(**values)` with a misspelt key: a one-line UserError, not a TypeError."""
    from ..config import unknown_fields

    init = cls.__init__

    def __init__(self, *args, **kwargs):
        unknown, known = unknown_fields(cls, kwargs)
        if unknown:
            raise UserError(f"training config: unknown option(s) {', '.join(unknown)} (known: {', '.join(known)})")
        init(self, *args, **kwargs)

    __init__.__doc__ = init.__doc__
    cls.__init__ = __init__
    return cls


_reject_unknown_keywords(TrainConfig)
