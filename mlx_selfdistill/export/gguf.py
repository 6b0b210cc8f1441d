"""Write an MLX model folder (plus an optional LoRA adapter, fused in memory) as one GGUF file.

`mlx_lm.fuse --export-gguf` writes fp16 llama/mistral only and no tokenizer; a distilled
Qwen coder could not leave MLX. This writes llama, qwen2 and qwen3 models in F16, BF16, Q8_0,
Q4_0, Q4_1, Q5_0, Q5_1 or F32 with the metadata llama.cpp, Ollama and LM Studio need to run them unaided:
hyperparameters, the tokenizer (tokens, merges, special ids, pre-tokenizer name) and the
chat template.

The file is written as a stream: the header and tensor table first (sizes are known from
the shapes), then one tensor at a time, converted as it is written, so no more than one
encoded tensor is held beyond the model itself. It goes to a temporary name beside the
target and is renamed into place, so a killed export never leaves a file that looks whole.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import gguf
import numpy as np

from ..errors import UserError
from ..progress import Progress
from .gguf_arch import TensorNames, add_hparams, arch_spec, to_llama_cpp_rows
from .gguf_types import OUT_TYPES, check_out_type, encode, encoded_nbytes, tensor_type
from .gguf_vocab import add_tokenizer

__all__ = ["OUT_TYPES", "export_gguf"]


def export_gguf(model_spec, out_path, *, adapter=None, out_type: str = "f16", name: str | None = None,
                progress: Progress = None, ollama: str | None = None) -> dict:
    """Export `model_spec` (+ `adapter`) to `out_path` as GGUF; returns a summary dict. With
    `ollama` (a model name), also an Ollama Modelfile beside it (export/ollama.py)."""
    started = time.perf_counter()
    out_type = check_out_type(out_type)
    if ollama is not None:
        from .ollama import check_name

        check_name(ollama)  # before the export's minutes
    out = Path(out_path).expanduser()
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: no such directory; create it or choose another --gguf path")
    if out.is_dir():
        raise UserError(f"{out}: is a directory; --gguf takes a file name like model.gguf")
    folder = model_folder(model_spec)
    spec = arch_spec(_read_config(folder))  # before loading: an unsupported model fails fast
    model, fused = load_float_model(folder, adapter)

    from mlx.utils import tree_flatten

    params = dict(tree_flatten(model.parameters()))
    plan = tensor_plan(params, spec, out_type)
    n_vocab = int(params["model.embed_tokens.weight"].shape[0])

    writer = gguf.GGUFWriter(path=None, arch=spec.arch)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name or model_title(folder))
    add_hparams(writer, spec, n_vocab)
    writer.add_file_type(int(OUT_TYPES[out_type][1]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    vocab = add_tokenizer(writer, folder, n_vocab)
    for gguf_name, _, shape, qtype in plan:
        writer.add_tensor_info(gguf_name, shape, np.dtype(np.float32), encoded_nbytes(shape, qtype), raw_dtype=qtype)

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    report = _stage(progress, total=len(plan))
    try:
        writer.write_header_to_file(tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for gguf_name, mlx_name, _, qtype in plan:
            w = to_llama_cpp_rows(spec, gguf_name, _as_float32(params[mlx_name]))
            writer.write_tensor_data(encode(w, qtype))
            report(advance=1, text=gguf_name)
        writer.close()
        os.replace(tmp, out)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    result = {"gguf": str(out), "model": str(folder), "adapter": str(adapter) if adapter else None,
              "architecture": spec.arch, "type": out_type, "tensors": len(plan),
              "tied_embeddings": spec.tied, "fused_layers": fused, "bytes": out.stat().st_size,
              "pre_tokenizer": vocab["pre_tokenizer"], "vocab": vocab["tokens"],
              "chat_template": vocab["chat_template"]}
    if ollama is not None:
        from .ollama import write_modelfile

        result.update(write_modelfile(out, folder, ollama))
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def tensor_plan(params: dict, spec, out_type: str) -> list[tuple]:
    """(gguf name, mlx name, shape, ggml type) per tensor to write, in the model's order."""
    names = TensorNames(spec)
    plan = []
    for mlx_name, value in params.items():
        if spec.tied and mlx_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd for the output when output.weight is absent
        shape = tuple(value.shape)
        gguf_name = names(mlx_name)
        plan.append((gguf_name, mlx_name, shape, tensor_type(out_type, shape, gguf_name)))
    return plan


def model_folder(model_spec) -> Path:
    """The local folder holding config.json and the tokenizer files."""
    from ..models import resolve_model

    resolved = Path(resolve_model(model_spec))
    if resolved.is_dir():
        return resolved
    try:  # a hub id already in the local cache (no downloads here)
        from mlx_lm.utils import hf_repo_to_path

        return Path(hf_repo_to_path(str(model_spec)))
    except Exception as exc:
        raise UserError(f"model {model_spec!r}: not a local folder nor a cached hub model; "
                        "download it first (or pass its folder)") from exc


def model_title(folder: Path) -> str:
    """The folder's name, or for a folder converted from a GGUF (a cache key) the source's name."""
    try:
        return json.loads((folder / "gguf_source.json").read_text(encoding="utf-8"))["general.name"]
    except (OSError, ValueError, KeyError):
        return folder.name


def _read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{folder / 'config.json'}: unreadable ({exc.__class__.__name__})") from exc


def load_float_model(folder: Path, adapter) -> tuple[object, int]:
    """(model with any adapter folded in and any MLX quantization undone, fused layer count)."""
    from mlx_lm.utils import dequantize_model, load

    from ..models import check_adapter
    from ..training.fuse import fuse_in_memory

    adapter_path = check_adapter(adapter)
    try:
        model, _, config = load(str(folder), adapter_path=adapter_path, lazy=True, return_config=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        what = f"{folder} with adapter {adapter_path}" if adapter_path else str(folder)
        raise UserError(f"could not load {what}: {first}") from exc
    fused = fuse_in_memory(model, dequantize=True)
    if config.get("quantization"):
        model = dequantize_model(model)
    return model, fused


def _as_float32(value) -> np.ndarray:
    import mlx.core as mx

    return np.asarray(value.astype(mx.float32))


def _stage(progress: Progress, total: int):
    if progress is None:
        return lambda **_: None
    progress("export", {"where": "gguf", "total": total, "advance": 0})
    return lambda **info: progress("export", {"where": "gguf", **info})
