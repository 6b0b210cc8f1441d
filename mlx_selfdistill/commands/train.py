"""`mlx-selfdistill train`: LoRA / DoRA / full fine-tuning on chat JSONL, resumable."""

from __future__ import annotations

import os

import click
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from ._common import console, out, print_json, table

# Keys of a YAML config that name inputs rather than training settings.
INPUT_KEYS = ("model", "data", "adapter_path", "valid_data", "resume")


@click.command()
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML file of training options (mlx_lm.lora spellings accepted); flags override it.")
@click.option("--model", "model_spec", default=None, help="Local folder, Hugging Face id, GGUF file, ollama:NAME[:TAG], or 'tiny'. [default: tiny]")
@click.option("--data", "data_path", default=None, type=click.Path(), help="Training JSONL of {\"messages\": [...]}.")
@click.option("--valid-data", default=None, type=click.Path(), help="Validation JSONL (loss reported).")
@click.option("--adapter-path", default=None, type=click.Path(file_okay=False),
              help="Folder for adapters.safetensors, adapter_config.json and checkpoints. [default: adapters]")
@click.option("--fine-tune-type", type=click.Choice(["lora", "dora", "full"]), default=None)
@click.option("--rank", type=int, default=None, help="LoRA rank. [default: 8]")
@click.option("--scale", type=float, default=None, help="LoRA scale (mlx_lm's). [default: 20]")
@click.option("--alpha", type=float, default=None, help="LoRA alpha: sets scale = alpha / rank.")
@click.option("--dropout", type=float, default=None, help="LoRA dropout. [default: 0]")
@click.option("--layers", "num_layers", default=None, help="Adapt the last N blocks, or 'all'. [default: all]")
@click.option("--lr", type=float, default=None, help="Peak learning rate. [default: 1e-4]")
@click.option("--warmup", type=int, default=None, help="Linear warmup steps. [default: 0]")
@click.option("--iters", type=int, default=None, help="Optimizer steps (default: one epoch).")
@click.option("--epochs", type=float, default=None, help="Epochs instead of --iters.")
@click.option("--batch-tokens", type=int, default=None,
              help="Tokens per batch; no padded chunk exceeds it. [default: 2048]")
@click.option("--length-grouping", type=click.Choice(["batch", "epoch"]), default=None,
              help="Sort by length inside random batches (unbiased steps), or the whole epoch "
                   "(least padding). [default: batch]")
@click.option("--max-seq-len", type=int, default=None, help="Longer examples are dropped. [default: 2048]")
@click.option("--grad-accum", type=int, default=None, help="Micro-batches per optimizer step. [default: 1]")
@click.option("--grad-checkpoint", is_flag=True, default=None, help="Recompute activations: less memory.")
@click.option("--memory-gb", type=float, default=None,
              help="Memory budget in GB: a short probe picks batch tokens per micro-batch, accumulation "
                   "and checkpointing so each step of --batch-tokens fits.")
@click.option("--full-logits", "chunked_loss", flag_value=False, default=None,
              help="Compute the loss from the full [tokens x vocab] logits (more memory; for comparison).")
@click.option("--pack", is_flag=True, default=None, help="Pack several examples per row (attention kept apart).")
@click.option("--quantize-bits", type=int, default=None, help="QLoRA: quantize the base to N bits first.")
@click.option("--seed", type=int, default=None, help="[default: 0]")
@click.option("--save-every", type=int, default=None, help="Checkpoint every N steps. [default: 100]")
@click.option("--resume", is_flag=True, default=None, help="Continue from the newest checkpoint in --adapter-path.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def train(config_file, model_spec, data_path, valid_data, adapter_path, as_json, resume, **flags):
    """LoRA / DoRA / full fine-tuning on chat examples (completion-only loss)."""
    from ..errors import UserError
    from ..models import load_model, model_name
    from ..training import TrainConfig
    from ..training import train as run_training

    inputs = {}
    if config_file:
        from ..training.config import mlx_lm_aliases, read_config_file

        raw = read_config_file(config_file)
        inputs = {k: raw.pop(k) for k in INPUT_KEYS if k in raw}
        for switch in ("train", "fine_tune"):  # mlx_lm's on/off switches, meaningless here
            raw.pop(switch, None)
        values = mlx_lm_aliases(raw)
    else:
        values = {}
    values.update({k: v for k, v in flags.items() if v is not None})
    config = TrainConfig.from_dict(values, source=config_file or "options")

    model_spec = model_spec or inputs.get("model") or "tiny"
    data_path = data_path or inputs.get("data")
    if not data_path:
        raise UserError("no training data: pass --data train.jsonl (or 'data:' in the config file)")
    if os.path.isdir(data_path) and os.path.isfile(os.path.join(data_path, "train.jsonl")):
        # mlx_lm's layout: a folder with train.jsonl (and valid.jsonl)
        valid_default = os.path.join(data_path, "valid.jsonl")
        valid_data = valid_data or (valid_default if os.path.isfile(valid_default) else None)
        data_path = os.path.join(data_path, "train.jsonl")
    valid_data = valid_data or inputs.get("valid_data")
    adapter_path = adapter_path or inputs.get("adapter_path") or "adapters"
    resume = bool(resume if resume is not None else inputs.get("resume", False))

    from ..training.data import load_examples

    load_examples(data_path)  # a malformed file fails here, before the model loads
    if valid_data:
        load_examples(valid_data)

    import mlx.core as mx

    rank = mx.distributed.init().rank()
    quiet = rank != 0  # under mlx.launch only rank 0 draws
    with console.status(f"loading {model_name(model_spec)}", spinner="dots") if rank == 0 else _null():
        loaded = load_model(model_spec)

    progress = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, transient=False, disable=quiet)
    task = progress.add_task("train", total=None, stats="")

    def on_step(info):
        stats = (f"loss {info['loss']:.4f}  {info['tokens_per_sec']:,.0f} tok/s  "
                 f"mem {info['peak_memory_gb']:.2f} GB")
        if info.get("val_loss") is not None:
            stats += f"  val {info['val_loss']:.4f}"
        progress.update(task, total=info["total"], completed=info["completed"], stats=stats)

    with progress:
        result = run_training(loaded, data_path, adapter_path, config, resume=resume, on_step=on_step,
                              valid_data=valid_data)
    result["model"] = model_name(model_spec)
    if rank != 0:
        return
    if as_json:
        print_json({k: v for k, v in result.items() if k != "losses"})
        return
    rows = [["model", result["model"]], ["adapter", result["adapter_path"]],
            ["fine-tune type", result["fine_tune_type"]],
            ["steps", f"{result['steps']} ({result['epochs']} epochs)" + (
                f", resumed at {result['start_step']}" if result["start_step"] else "")],
            ["examples", f"{result['examples']}" + (
                f" ({result['dropped_too_long']} dropped: longer than max_seq_len)" if result["dropped_too_long"] else "")],
            ["final loss", result["final_loss"]], ["validation loss", result["val_loss"]],
            ["trained tokens", f"{result['tokens']:,} ({result['target_tokens']:,} in the loss)"],
            ["padding", f"{100 * result['padding_fraction']:.1f}%"],
            ["tokens / sec", f"{result['tokens_per_sec']:,.0f}"], ["seconds", result["seconds"]],
            ["peak memory", f"{result['peak_memory_gb']:.2f} GB" + _plan_note(result)],
            ["batch", f"{result['batch_tokens']:,} tokens x {result['grad_accum']} accumulated"
                      + (", checkpointed" if result["grad_checkpoint"] else "")
                      + (", chunked loss" if result["chunked_loss"] else ", full logits")],
            ["trainable parameters", f"{result['trainable_parameters']:,} of {result['total_parameters']:,}"],
            ["processes", result["world_size"]]]
    out.print(table("train", ["", "value"], rows))


def _plan_note(result: dict) -> str:
    plan = result.get("memory_plan")
    if not plan:
        return ""
    return f" (budget {plan['budget_gb']:g} GB, predicted {plan['predicted_peak_gb']:.2f} GB)"


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
