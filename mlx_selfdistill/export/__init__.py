"""Export a model (plus a LoRA adapter, fused on the fly) to formats other runtimes load.

    from mlx_selfdistill.export import export_gguf
    export_gguf("path/to/model", "distilled.gguf", adapter="adapters/", out_type="q8_0")

GGUF is what llama.cpp, Ollama and LM Studio run: a distilled model leaves MLX this way.
"""

from .gguf import OUT_TYPES, export_gguf

__all__ = ["OUT_TYPES", "export_gguf"]
