"""GGUF files through the project's single loading choke point: cache, Ollama, precision."""

import json
import os

import mlx.core as mx
import numpy as np
import pytest

from gguf_files import tiny_model, write_gguf

from mlx_selfdistill.errors import UserError
from mlx_selfdistill.models import load_model, resolve_model
from mlx_selfdistill.models.gguf import GGUFFile
from mlx_selfdistill.models.gguf_convert import cache_root, content_key, convert, file_sha256
from mlx_selfdistill.models.precision import TensorPlan, plan_tensor

TOKENS = mx.array([[5, 77, 200, 13, 99, 257, 31, 64]])


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_SELFDISTILL_GGUF_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def llama_gguf(tmp_path):
    source, config = tiny_model("llama")
    return write_gguf(tmp_path / "tiny.Q8_0.gguf", source, config, "llama", "Q8_0"), source


def test_a_gguf_path_loads_through_load_model_and_is_converted_once(llama_gguf, tmp_path):
    path, source = llama_gguf
    folder = resolve_model(str(path))
    assert folder.startswith(str(tmp_path / "cache"))
    weights = sorted(p for p in os.listdir(folder) if p.endswith(".safetensors"))
    stamp = os.stat(os.path.join(folder, weights[0])).st_mtime_ns
    model, tokenizer = load_model(str(path))
    assert resolve_model(str(path)) == folder  # cached: same folder, not rewritten
    assert os.stat(os.path.join(folder, weights[0])).st_mtime_ns == stamp
    assert not [p for p in os.listdir(cache_root()) if p.startswith(".tmp")]
    got, want = np.array(model(TOKENS)), np.array(source(TOKENS))
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 2e-2
    assert tokenizer.eos_token == "<|im_end|>"


def test_a_killed_conversion_leaves_nothing_that_looks_converted(llama_gguf, tmp_path):
    import subprocess
    import sys

    path, _ = llama_gguf
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "cache" / "model"
    stale = out.parent / f".tmp-{out.name}-{dead.stdout.strip()}"  # what a killed conversion leaves
    stale.mkdir(parents=True)
    (stale / "model-00001.safetensors").write_bytes(b"half")
    convert(GGUFFile(path), out, progress=False)
    assert (out / "config.json").exists() and not stale.exists()
    assert [p.name for p in out.parent.iterdir()] == ["model"]


def test_the_cache_key_is_the_files_sha256_and_follows_its_content(llama_gguf, tmp_path):
    path, _ = llama_gguf
    assert content_key(path) == file_sha256(path)
    source, config = tiny_model("llama", seed=1)
    other = write_gguf(tmp_path / "other.gguf", source, config, "llama", "Q8_0")
    assert os.path.getsize(other) == os.path.getsize(path)  # same size and header shape, other weights
    assert resolve_model(str(other)) != resolve_model(str(path))


def write_ollama_store(root, blob_source, name="tinycoder", tag="latest", namespace="library"):
    """A real-format Ollama store: manifests/<registry>/<ns>/<name>/<tag> -> blobs/sha256-<hex>."""
    digest = file_sha256(blob_source)
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    blob = root / "blobs" / f"sha256-{digest}"
    if not blob.exists():
        os.link(blob_source, blob)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "1" * 64, "size": 10},
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}",
             "size": os.path.getsize(blob_source)},
        ],
    }
    path = root / "manifests" / "registry.ollama.ai" / namespace / name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return digest


def test_ollama_name_resolves_through_the_local_manifests(llama_gguf, tmp_path, monkeypatch):
    from mlx_selfdistill.models.local_stores import resolve_ollama

    path, _ = llama_gguf
    root = tmp_path / "ollama"
    digest = write_ollama_store(root, path, tag="0.1b")
    write_ollama_store(root, path, name="coder", namespace="someone")
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    assert resolve_ollama("ollama:tinycoder:0.1b") == root / "blobs" / f"sha256-{digest}"
    assert resolve_ollama("ollama:someone/coder").name == f"sha256-{digest}"  # tag defaults to latest
    # A blob has no .gguf suffix: resolve_model recognises it by its magic and converts it.
    assert resolve_model("ollama:tinycoder:0.1b") == resolve_model(str(path))
    with pytest.raises(UserError, match="no such Ollama model.*ollama pull tinycoder:latest"):
        resolve_ollama("ollama:tinycoder")
    (root / "blobs" / f"sha256-{digest}").unlink()
    with pytest.raises(UserError, match="blob .* is missing"):
        resolve_ollama("ollama:tinycoder:0.1b")


def test_ollama_default_root_is_the_users_home(monkeypatch, tmp_path):
    from mlx_selfdistill.models.local_stores import ollama_root

    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ollama_root() == tmp_path / ".ollama" / "models"


def test_mixed_bits_are_recorded_per_layer_for_mlx_lm():
    from mlx_selfdistill.models.gguf_convert import quantization_config

    plans = {"model.layers.0.mlp.up_proj.weight": TensorPlan("float16", 4),
             "model.layers.0.mlp.gate_proj.weight": TensorPlan("float16", 4),
             "model.layers.0.mlp.down_proj.weight": TensorPlan("float16", 8),
             "model.norm.weight": TensorPlan("float16")}
    assert quantization_config(plans) == {"group_size": 64, "bits": 4,
                                          "model.layers.0.mlp.down_proj": {"group_size": 64, "bits": 8}}
    assert quantization_config({"model.norm.weight": TensorPlan("float32")}) is None


def test_metal_plan_keeps_the_sources_precision():
    # CPU: everything float32. Metal: 4-bit for <= 5-bit blocks, 8-bit for Q6_K/Q8_0, floats stay float.
    assert plan_tensor("model.layers.0.mlp.up_proj.weight", "Q4_K", (128, 64), cpu=True) == TensorPlan("float32")
    assert plan_tensor("model.layers.0.mlp.up_proj.weight", "Q4_K", (128, 64), cpu=False).bits == 4
    assert plan_tensor("model.layers.0.mlp.up_proj.weight", "Q5_0", (128, 64), cpu=False).bits == 4
    assert plan_tensor("model.layers.0.mlp.down_proj.weight", "Q6_K", (64, 128), cpu=False).bits == 8
    assert plan_tensor("lm_head.weight", "Q8_0", (260, 64), cpu=False).bits == 8
    assert plan_tensor("model.embed_tokens.weight", "BF16", (260, 64), cpu=False) == TensorPlan("bfloat16")
    assert plan_tensor("model.norm.weight", "F32", (64,), cpu=False) == TensorPlan("float16")
    assert plan_tensor("model.layers.0.mlp.up_proj.weight", "Q4_0", (128, 48), cpu=False).bits is None


def test_metal_conversion_requantizes_and_loads_in_plain_mlx_lm(llama_gguf, tmp_path):
    # The Metal path runs on the CPU backend too: quantized matmuls exist on both.
    from mlx_lm import load

    path, source = llama_gguf
    out = tmp_path / "metal"
    convert(GGUFFile(path), out, cpu=False, progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"] == {"group_size": 64, "bits": 8}  # Q8_0 everywhere
    model, _ = load(str(out))
    assert model.model.layers[0].mlp.up_proj.bits == 8  # a QuantizedLinear
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    assert size < 1.5 * os.path.getsize(path)  # near the GGUF's size, not float16's 2x
    got, want = np.array(model(TOKENS).astype(mx.float32)), np.array(source(TOKENS))
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 5e-2
    # A Q4_K_M-like mix (4-bit blocks, 8-bit down_proj) becomes mixed MLX bits that load.
    _, config = tiny_model("llama")
    mixed = write_gguf(tmp_path / "mixed.gguf", source, config, "llama", "Q4_0", mixed={"down_proj": "Q8_0"})
    convert(GGUFFile(mixed), tmp_path / "metal-mixed", cpu=False, progress=False)
    model, _ = load(str(tmp_path / "metal-mixed"))
    assert (model.model.layers[0].mlp.up_proj.bits, model.model.layers[0].mlp.down_proj.bits) == (4, 8)
    got = np.array(model(TOKENS).astype(mx.float32))
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.3


def test_half_precision_models_run_in_float32_on_cpu_unless_kept(tmp_path, monkeypatch, capsys):
    from mlx.utils import tree_flatten
    from mlx_lm.utils import save_model

    from mlx_selfdistill.models import DEFAULT_MODEL

    half = tmp_path / "half"
    model, _ = load_model("tiny")
    capsys.readouterr()
    model.set_dtype(mx.bfloat16)
    save_model(half, model)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (half / name).write_bytes((DEFAULT_MODEL / name).read_bytes())
    loaded, _ = load_model(str(half))
    assert {v.dtype for _, v in tree_flatten(loaded.parameters())} == {mx.float32}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "float32" in err and "--keep-dtype" in err
    monkeypatch.setenv("MLX_SELFDISTILL_KEEP_DTYPE", "1")
    kept, _ = load_model(str(half))
    assert mx.bfloat16 in {v.dtype for _, v in tree_flatten(kept.parameters())}


def test_a_run_config_takes_a_gguf_model(llama_gguf, tmp_path):
    from mlx_selfdistill.config import RunConfig
    from mlx_selfdistill.loop import Run

    path, _ = llama_gguf
    run = Run(RunConfig(name="g", model=str(path)), tmp_path / "runs")
    model, tokenizer = run.load(run.config.model)
    assert tokenizer.eos_token == "<|im_end|>" and any(cache_root().glob("*-float32-v*"))


def test_keep_dtype_flag_reaches_the_loader(monkeypatch):
    from click.testing import CliRunner

    from mlx_selfdistill.cli import cli
    from mlx_selfdistill.models.precision import KEEP_DTYPE_ENV, keep_dtype

    monkeypatch.delenv(KEEP_DTYPE_ENV, raising=False)
    assert not keep_dtype()
    result = CliRunner().invoke(cli, ["--keep-dtype", "presets", "--json"])
    assert result.exit_code == 0, result.output
    assert keep_dtype()
    monkeypatch.delenv(KEEP_DTYPE_ENV)
