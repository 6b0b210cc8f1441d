"""The training loop: completion-only cross-entropy, token-budget batches, AdamW with
warmup + cosine, gradient accumulation, data parallelism, exact resume.

The loss of a step is the sum of per-token losses over all of its micro-batches (on all
ranks) divided by the number of completion tokens among them, so a step means the same
thing whatever the split: accumulation over 4 micro-batches equals one batch 4x the size,
and 2 ranks equal 1 process on the same global batch.
"""

from __future__ import annotations

import json
import math
import os
import time
from functools import partial
from pathlib import Path
from typing import Callable, Optional, Union

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_map

from .. import blas_governor, killpoints
from ..errors import UserError
from . import checkpoint as ckpt
from .adapters import (adapter_config, checkpoint_layers, count_parameters, remove_stale_temp_files, save_adapter,
                       setup_trainable, snapshot)
from .batching import BatchPlan, make_batch, shard_rows
from .chunked_loss import chunked_cross_entropy, output_head
from .config import TrainConfig
from .data import TokenizedExample, fingerprint, tokenize_examples
from .distributed import all_sum, all_sum_tree, world


class TrainingDiverged(UserError):
    """The loss or the gradients stopped being finite numbers."""


# -- the model call, with an optional packed (block-diagonal) attention mask ---------------
class _FixedMask:
    """Stands in for a KV cache so an mlx_lm model uses our attention mask.

    mlx_lm models build their mask through `cache.make_mask` when the cache has one, and
    apply RoPE at `cache.offset`. Positions stay global within a packed row: RoPE makes
    attention depend only on the distance between tokens, and the mask keeps every pair
    inside one example, so each example sees exactly what it would see alone.
    """

    offset = 0

    def __init__(self, mask):
        self.mask = mask

    def make_mask(self, n, return_array=False, window_size=None):
        return self.mask

    def update_and_fetch(self, keys, values):
        return keys, values


def block_mask(segments: mx.array) -> mx.array:
    L = segments.shape[1]
    causal = mx.tril(mx.ones((L, L), dtype=mx.bool_))
    same = segments[:, :, None] == segments[:, None, :]
    return mx.expand_dims(same & causal, 1)


def forward(model, inputs, segments=None, hidden=False):
    """The logits, or with hidden=True the final norm's output (for the chunked loss)."""
    call = model.model if hidden else model
    if segments is None:
        return call(inputs)
    cache = [_FixedMask(block_mask(segments))] * len(model.layers)
    return call(inputs, cache=cache)


def loss_sum(model, inputs, targets, weights, segments=None, select=None, *, chunked=True, chunk_tokens=None):
    """(sum of completion-token cross-entropies, number of completion tokens).

    select: the flat positions (row * L + column) whose weight is non-zero; the chunked
    loss projects only those onto the vocabulary. chunked=False (or a model whose head
    is not plain) computes the full logits instead.
    """
    head = output_head(model) if chunked else None
    if head is None:
        logits = forward(model, inputs, segments)
        ce = nn.losses.cross_entropy(logits.astype(mx.float32), targets) * weights
        return ce.sum(), weights.sum()
    h = forward(model, inputs, segments, hidden=True)
    h, t, w = h.reshape(-1, h.shape[-1]), targets.reshape(-1), weights.reshape(-1)
    if select is not None:
        h, t, w = h[select], t[select], w[select]
    return chunked_cross_entropy(h, t, w, head, chunk_tokens), weights.sum()


def batch_arrays(b, packed: bool) -> list:
    """A Batch as loss_sum's arguments: inputs, targets, weights, segments, select."""
    select = np.flatnonzero(b.weights.reshape(-1)).astype(np.int32)
    return [mx.array(b.inputs), mx.array(b.targets), mx.array(b.weights),
            mx.array(b.segments) if packed else None, mx.array(select) if len(select) else None]


# -- learning-rate schedule ----------------------------------------------------------------
def make_schedule(config: TrainConfig, total_steps: int) -> Callable:
    lr, warm = config.lr, min(config.warmup, total_steps)
    end = lr * config.min_lr_ratio
    decay_steps = max(total_steps - warm, 1)

    def schedule(step):
        s = step.astype(mx.float32) if isinstance(step, mx.array) else mx.array(step, mx.float32)
        if config.lr_schedule == "cosine":
            progress = mx.clip((s - warm) / decay_steps, 0.0, 1.0)
            main = end + (lr - end) * 0.5 * (1.0 + mx.cos(math.pi * progress))
        else:
            main = mx.array(lr, mx.float32)
        if warm == 0:
            return main
        return mx.where(s < warm, lr * (s + 1.0) / warm, main)

    return schedule


# -- inputs --------------------------------------------------------------------------------
def _load(model_spec):
    """(model, tokenizer, caller_owns_model, name)."""
    if isinstance(model_spec, tuple) and len(model_spec) == 2:
        return model_spec[0], model_spec[1], True, None
    from ..models import load_model, model_name

    model, tokenizer = load_model(model_spec)
    return model, tokenizer, False, model_name(model_spec)


def _examples(tokenizer, data, max_seq_len: int, what: str) -> tuple[list[TokenizedExample], int]:
    if data and isinstance(data, (list, tuple)) and isinstance(data[0], TokenizedExample):
        examples = list(data)
    else:
        examples = tokenize_examples(tokenizer, data)
    kept = [ex for ex in examples if len(ex) <= max_seq_len]
    if not kept:
        longest = max(len(ex) for ex in examples)
        raise UserError(f"all {len(examples)} {what} examples are longer than max_seq_len={max_seq_len} "
                        f"tokens (longest: {longest}): raise max_seq_len")
    return kept, len(examples) - len(kept)


def _rng_seed(seed: int, micro_batch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, micro_batch, rank]).generate_state(1)[0])


def _peak_memory_gb() -> float:
    try:
        return mx.get_peak_memory() / 1e9
    except Exception:  # older mlx
        return 0.0


# -- the loop ------------------------------------------------------------------------------
def train(model_spec, data, adapter_path: Union[str, os.PathLike], config: Union[TrainConfig, dict, None] = None,
          *, resume: bool = False, on_step: Optional[Callable[[dict], None]] = None, valid_data=None) -> dict:
    """Fine-tune on chat examples and write an mlx_lm adapter to `adapter_path`.

    model_spec: a model name/path (see models.resolve_model) or a loaded (model, tokenizer);
    a model passed in is given back as it came (adapters removed, weights restored).
    data / valid_data: a JSONL path of {"messages": [...]} or a list of such dicts.
    resume: continue from the newest checkpoint in adapter_path (a fresh start if none).
    on_step: called after every optimizer step with a dict of progress (completed, total,
    loss, lr, tokens_per_sec, text, ...).
    """
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    adapter_dir = Path(adapter_path)
    if adapter_dir.exists() and not adapter_dir.is_dir():
        raise UserError(f"{adapter_dir}: exists and is not a folder; choose another --adapter-path")

    group = world()
    rank, size = group.rank(), group.size()
    model, tokenizer, caller_owns, name = _load(model_spec)
    examples, dropped = _examples(tokenizer, data, config.max_seq_len, "training")
    valid = _examples(tokenizer, valid_data, config.max_seq_len, "validation")[0] if valid_data else None
    data_id = fingerprint(examples)

    restore = snapshot(model) if caller_owns else None
    undo_checkpointing = None
    memory_limit = None
    try:
        info = setup_trainable(model, config)
        config, memory_plan = _fit_memory(model, examples, config, adapter_dir if resume else None, group)
        if config.memory_gb is not None:
            # Above the limit MLX waits for queued work before allocating more: less run-ahead.
            memory_limit = mx.set_memory_limit(int(config.memory_gb * 1e9))
        plan = BatchPlan([len(ex) for ex in examples], batch_tokens=config.batch_tokens, seed=config.seed,
                         pad_multiple=config.pad_multiple, pack=config.pack, pack_len=config.pack_len,
                         grouping=config.length_grouping)
        if config.iters is not None:
            total_steps = config.iters
        else:
            total_steps = max(1, math.ceil((config.epochs or 1.0) * plan.batches_per_epoch / config.grad_accum))
        if config.grad_checkpoint:
            undo_checkpointing = checkpoint_layers(model)
        schedule = make_schedule(config, total_steps)
        optimizer = optim.AdamW(learning_rate=schedule, weight_decay=config.weight_decay)
        optimizer.init(model.trainable_parameters())
        run = _Run(model, optimizer, schedule, config, plan, examples, group)

        state = {"tokens": 0, "target_tokens": 0, "positions": 0, "seconds": 0.0, "losses": [],
                 "val_losses": []}
        start_step, resumed_from = 0, None
        latest = ckpt.latest_checkpoint(adapter_dir) if resume else None
        if latest is not None:
            saved = ckpt.load_checkpoint(latest, model, optimizer)
            _check_resumable(saved, config, data_id, latest)
            start_step, resumed_from = int(saved["step"]), str(latest)
            state.update({k: saved[k] for k in state if k in saved})
        elif not resume and rank == 0:
            ckpt.clear_checkpoints(adapter_dir)

        config_json = adapter_config(model, config, name, info)
        if rank == 0:
            remove_stale_temp_files(adapter_dir)
            save_adapter(model, adapter_dir, config_json)

        def checkpoint_state(step):
            return {**state, "total_steps": total_steps, "data_fingerprint": data_id, "world_size": size,
                    "config": config.resume_signature(), "rng": "derived from (seed, micro-batch, rank)"}

        model.train()
        mx.reset_peak_memory()  # the peak reported is training's (the probe's is in memory_plan)
        t_run = time.perf_counter()
        tokens_this_run = 0
        val_loss = state["val_losses"][-1][1] if state["val_losses"] else None
        for step in range(start_step, total_steps):
            t0 = time.perf_counter()
            loss, n_targets, real, positions, lr, grad_norm = run.step(step)
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                last = ckpt.latest_checkpoint(adapter_dir)
                raise TrainingDiverged(
                    f"training diverged at step {step + 1}: loss {loss}, gradient norm {grad_norm} "
                    f"(learning rate {lr:.3g}); lower lr, add warmup or set max_grad_norm"
                    + (f"; the last good checkpoint is {last}" if last else ""))
            elapsed = time.perf_counter() - t0
            tokens_this_run += real
            state["tokens"] += real
            state["target_tokens"] += n_targets
            state["positions"] += positions
            state["seconds"] += elapsed
            state["losses"].append(round(loss, 6))
            done = step + 1
            if valid is not None and ((config.val_every and done % config.val_every == 0) or done == total_steps):
                val_loss = evaluate_loss(model, valid, config, group)
                state["val_losses"].append([done, val_loss])
                model.train()
            if rank == 0 and ((config.save_every and done % config.save_every == 0) or done == total_steps):
                ckpt.save_checkpoint(adapter_dir, done, model, optimizer, checkpoint_state(done),
                                     keep=config.keep_checkpoints)
                save_adapter(model, adapter_dir, config_json)
            if on_step is not None:
                run_time = time.perf_counter() - t_run
                on_step({"completed": done, "total": total_steps, "loss": loss, "lr": lr,
                         "grad_norm": grad_norm, "tokens": state["tokens"],
                         "tokens_per_sec": tokens_this_run / run_time if run_time > 0 else 0.0,
                         "peak_memory_gb": _peak_memory_gb(), "val_loss": val_loss,
                         "text": f"loss {loss:.3f}"})
            killpoints.reached("train-step", done)

        if start_step >= total_steps and rank == 0:
            save_adapter(model, adapter_dir, config_json)  # already done: make sure the adapter is there
        seconds = time.perf_counter() - t_run
        trainable, total_params = count_parameters(model)
        losses = state["losses"]
        return {
            "adapter_path": str(adapter_dir),
            "final_loss": losses[-1] if losses else None,
            "val_loss": val_loss,
            "steps": total_steps,
            "start_step": start_step,
            "resumed_from": resumed_from,
            "examples": len(examples),
            "dropped_too_long": dropped,
            "epochs": round(total_steps * config.grad_accum / plan.batches_per_epoch, 4),
            "tokens": state["tokens"],
            "target_tokens": state["target_tokens"],
            "padding_fraction": round(1 - state["tokens"] / state["positions"], 4) if state["positions"] else 0.0,
            "seconds": round(seconds, 3),
            "train_seconds_total": round(state["seconds"], 3),
            "tokens_per_sec": round(tokens_this_run / seconds, 1) if seconds > 0 and tokens_this_run else 0.0,
            "peak_memory_gb": round(_peak_memory_gb(), 4),
            "batch_tokens": config.batch_tokens,
            "grad_accum": config.grad_accum,
            "grad_checkpoint": config.grad_checkpoint,
            "chunked_loss": config.chunked_loss and output_head(model) is not None,
            "memory_plan": memory_plan.to_dict() if memory_plan else None,
            "trainable_parameters": trainable,
            "total_parameters": total_params,
            "world_size": size,
            "fine_tune_type": config.fine_tune_type,
            "losses": losses,
            "val_losses": state["val_losses"],
        }
    finally:
        if memory_limit is not None:
            mx.set_memory_limit(memory_limit)
        if undo_checkpointing is not None:
            undo_checkpointing()
        if restore is not None:
            restore()


def _fit_memory(model, examples, config: TrainConfig, resume_dir: Optional[Path], group):
    """(config, MemoryPlan or None): batch tokens, accumulation and checkpointing chosen to fit
    config.memory_gb; a resumed run keeps its checkpoint's choices."""
    if config.memory_gb is None:
        return config, None
    from .memory_budget import plan_memory, saved_plan

    latest = ckpt.latest_checkpoint(resume_dir) if resume_dir is not None else None
    if latest is not None:
        saved = json.loads((latest / "state.json").read_text()).get("config", {})
        return saved_plan(saved, config), None
    memory_plan = plan_memory(model, examples, config)
    if group.size() > 1:  # every rank must train the same way: rank 0's measurement decides
        mine = [memory_plan.batch_tokens, memory_plan.grad_accum, int(memory_plan.grad_checkpoint)]
        chosen = all_sum(mx.array(mine if group.rank() == 0 else [0, 0, 0], mx.float32), group).tolist()
        memory_plan.batch_tokens, memory_plan.grad_accum = int(chosen[0]), int(chosen[1])
        memory_plan.grad_checkpoint = bool(chosen[2])
    return memory_plan.apply(config), memory_plan


def _check_resumable(saved: dict, config: TrainConfig, data_id: str, where: Path) -> None:
    if saved.get("data_fingerprint") != data_id:
        raise UserError(f"{where}: this checkpoint was trained on different data; "
                        "use a new --adapter-path or start over without --resume")
    old = dict(saved.get("config", {}))
    old.setdefault("length_grouping", "epoch")  # checkpoints from before the setting sorted the epoch
    now = config.resume_signature()
    changed = sorted(k for k in set(old) | set(now) if old.get(k) != now.get(k))
    if changed:
        k = changed[0]
        raise UserError(f"{where}: the checkpoint was made with {k}={old.get(k)!r}, not {now.get(k)!r}; "
                        "use the same settings to resume, or a new --adapter-path")


class _Run:
    """One optimizer step: micro-batches -> summed gradients -> all-reduce -> AdamW."""

    def __init__(self, model, optimizer, schedule, config: TrainConfig, plan: BatchPlan, examples, group):
        self.model, self.optimizer, self.schedule, self.config, self.plan = model, optimizer, schedule, config, plan
        self.examples, self.group = examples, group
        value_and_grad = nn.value_and_grad(model, partial(loss_sum, chunked=config.chunked_loss,
                                                          chunk_tokens=config.loss_chunk_tokens))

        def grads(inputs, targets, weights, segments=None, select=None):
            (loss, n), g = value_and_grad(model, inputs, targets, weights, segments, select)
            return loss, n, g

        if config.compile:
            state = [model.state, mx.random.state]
            grads = partial(mx.compile, inputs=state, outputs=state)(grads)
        self.grads = grads

    def step(self, step: int):
        cfg, group = self.config, self.group
        rank, size = group.rank(), group.size()
        total_loss = total_n = acc = None
        real = positions = 0
        for m in range(step * cfg.grad_accum, (step + 1) * cfg.grad_accum):
            mine = shard_rows(self.plan.rows(m), rank, size)
            mx.random.seed(_rng_seed(cfg.seed, m, rank))  # dropout noise is a function of the step
            # A rank with no share of a tiny batch still computes a (zero) gradient to reduce.
            for chunk in self.plan.chunks(mine) or [[]]:
                b = make_batch(self.examples, chunk, pad_multiple=cfg.pad_multiple, packed=cfg.pack,
                               width=self.plan.pack_len if cfg.pack else None)
                if chunk:
                    real, positions = real + b.real_tokens, positions + b.positions
                loss, n, g = self.grads(*batch_arrays(b, cfg.pack))
                if acc is None:
                    total_loss, total_n, acc = loss, n, g
                else:
                    total_loss, total_n = total_loss + loss, total_n + n
                    acc = tree_map(mx.add, acc, g)
                mx.eval(total_loss, total_n, acc)
                blas_governor.tick()  # between micro-batches: MLX's stream is idle here
        acc = all_sum_tree(acc, group)
        sums = all_sum(mx.stack([total_loss, total_n, mx.array(float(real)), mx.array(float(positions))]), group)
        n_targets = max(float(sums[1].item()), 1.0)
        real, positions = int(sums[2].item()), int(sums[3].item())  # all ranks' work
        acc = tree_map(lambda g: g / n_targets, acc)
        norm = mx.sqrt(sum(mx.sum(mx.square(g.astype(mx.float32))) for _, g in tree_flatten(acc)))
        loss_value, norm_value = float(sums[0].item()) / n_targets, float(norm.item())
        lr = float(self.schedule(mx.array(step)).item())  # what this update uses
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            return loss_value, int(n_targets), real, positions, lr, norm_value
        if cfg.max_grad_norm and norm_value > cfg.max_grad_norm:
            acc = tree_map(lambda g: g * (cfg.max_grad_norm / norm_value), acc)
        self.optimizer.update(self.model, acc)
        mx.eval(self.model.parameters(), self.optimizer.state)
        return loss_value, int(n_targets), real, positions, lr, norm_value


def evaluate_loss(model, examples: list[TokenizedExample], config: TrainConfig, group=None) -> float:
    """Mean completion-token cross-entropy over examples (all ranks together)."""
    group = group or world()
    model.eval()
    plan = BatchPlan([len(ex) for ex in examples], batch_tokens=config.batch_tokens, seed=0,
                     pad_multiple=config.pad_multiple, shuffle=False, grouping="epoch")
    total = mx.array(0.0)
    count = mx.array(0.0)
    for rows in plan.epoch(0):
        for chunk in plan.chunks(shard_rows(rows, group.rank(), group.size())):
            b = make_batch(examples, chunk, pad_multiple=config.pad_multiple)
            loss, n = loss_sum(model, *batch_arrays(b, False), chunked=config.chunked_loss,
                               chunk_tokens=config.loss_chunk_tokens)
            total, count = total + loss, count + n
            mx.eval(total, count)
    sums = all_sum(mx.stack([total, count]), group)
    return float(sums[0].item()) / max(float(sums[1].item()), 1.0)
