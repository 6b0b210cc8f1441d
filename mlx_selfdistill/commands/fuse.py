"""`mlx-selfdistill fuse`: fold an adapter into its base model, as a standalone model folder."""

from __future__ import annotations

import click

from ._common import console, out, print_json, table


@click.command()
@click.option("--model", "model_spec", default="tiny", show_default=True,
              help="The base model the adapter was trained on.")
# --adapter as in export/eval/bench; --adapter-path and --save-path are mlx_lm.fuse's names, kept as aliases.
@click.option("--adapter", "--adapter-path", "adapter_path", required=True, type=click.Path(file_okay=False),
              help="Adapter folder.")
@click.option("--out", "--save-path", "save_path", required=True, type=click.Path(file_okay=False),
              help="Output model folder.")
@click.option("--dequantize", is_flag=True, help="Save a float model even if the base is quantized.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def fuse(model_spec, adapter_path, save_path, dequantize, as_json):
    """Merge a LoRA/DoRA adapter into a standalone model folder."""
    from ..training import fuse_adapter

    with console.status("fusing"):
        result = fuse_adapter(model_spec, adapter_path, save_path, dequantize=dequantize)
    if as_json:
        print_json(result)
        return
    out.print(table("fuse", ["", "value"], [[k, v] for k, v in result.items()]))
