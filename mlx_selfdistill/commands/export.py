"""`mlx-selfdistill export`: write a model (and its adapter, fused) as a GGUF for llama.cpp / Ollama / LM Studio."""

from __future__ import annotations

import click

from ._common import out, print_json, table
from ._progress import StageProgress

TYPES = ("f16", "q8_0", "bf16", "f32")  # export.OUT_TYPES, spelled here so --help needs no gguf import


@click.command()
@click.option("--model", "model_spec", default="tiny", show_default=True,
              help="Model folder, GGUF file, ollama:NAME or cached hub id; the base of --adapter.")
@click.option("--adapter", "adapter_path", default=None, type=click.Path(),
              help="LoRA/DoRA adapter folder, folded into the weights on the fly.")
@click.option("--gguf", "gguf_path", required=True, type=click.Path(), help="Output file, e.g. model.gguf.")
@click.option("--type", "out_type", default="f16", show_default=True, metavar="|".join(TYPES),
              help="Encoding of the weight matrices (norms and biases stay f32).")
@click.option("--name", default=None, help="general.name in the file. [default: the model folder's name]")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def export(model_spec, adapter_path, gguf_path, out_type, name, as_json):
    """Export a model (+ adapter) to one GGUF file, with its tokenizer and chat template."""
    from ..export import export_gguf

    with StageProgress(json_stdout=as_json) as progress:
        result = export_gguf(model_spec, gguf_path, adapter=adapter_path, out_type=out_type, name=name,
                             progress=progress)
    if as_json:
        print_json(result)
        return
    out.print(table("export", ["", "value"], [[k, v] for k, v in result.items()]))
