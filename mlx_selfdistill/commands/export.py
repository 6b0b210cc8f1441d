"""`mlx-selfdistill export`: write a model (and its adapter, fused) as a GGUF for llama.cpp / Ollama / LM Studio."""

from __future__ import annotations

import click

from ._common import out, print_json, table
from ._progress import StageProgress

TYPES = ("f16", "q8_0", "bf16", "f32", "q4_0", "q4_1", "q5_0", "q5_1")  # export.OUT_TYPES, spelled here so --help needs no gguf import


@click.command()
@click.option("--model", "model_spec", default="tiny", show_default=True,
              help="Model folder, GGUF file, ollama:NAME or cached hub id; the base of --adapter.")
@click.option("--adapter", "adapter_path", default=None, type=click.Path(),
              help="LoRA/DoRA adapter folder, folded into the weights on the fly.")
@click.option("--gguf", "gguf_path", required=True, type=click.Path(), help="Output file, e.g. model.gguf.")
@click.option("--type", "out_type", default="f16", show_default=True, metavar="|".join(TYPES),
              help="Encoding of the weight matrices (norms and biases stay f32).")
@click.option("--name", default=None, help="general.name in the file. [default: the model folder's name]")
@click.option("--ollama", "ollama_name", metavar="NAME",
              help="Also write an Ollama Modelfile beside the GGUF (template and stop tokens from the chat "
                   "template) and print the `ollama create NAME` line.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def export(model_spec, adapter_path, gguf_path, out_type, name, ollama_name, as_json):
    """Export a model (+ adapter) to one GGUF file, with its tokenizer and chat template.

    The file runs in llama.cpp, in LM Studio (put it under ~/.lmstudio/models/PUBLISHER/NAME/) and in
    Ollama (--ollama NAME writes the Modelfile)."""
    from ..export import export_gguf

    with StageProgress(json_stdout=as_json) as progress:
        result = export_gguf(model_spec, gguf_path, adapter=adapter_path, out_type=out_type, name=name,
                             progress=progress, ollama=ollama_name)
    if as_json:
        print_json(result)
        return
    out.print(table("export", ["", "value"], [[k, v] for k, v in result.items() if k != "ollama_create"]))
    if "ollama_create" in result:
        out.print(f"Ollama: {result['ollama_create']}", markup=False, soft_wrap=True)
