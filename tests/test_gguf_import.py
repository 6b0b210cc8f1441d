"""GGUF -> MLX conversion on tiny GGUF files the tests write themselves (see gguf_files.py)."""

import json
import os
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

from gguf_files import tiny_model, write_gguf

from mlx_selfdistill.errors import UserError
from mlx_selfdistill.models import gguf as gguf_mod
from mlx_selfdistill.models import load_model, resolve_model
from mlx_selfdistill.models.gguf import GGUFFile
from mlx_selfdistill.models.gguf_convert import cached_model_folder, convert
from mlx_selfdistill.models.precision import TensorPlan, plan_tensor

TOKENS = mx.array([[5, 77, 200, 13, 99, 257, 31, 64]])

# Relative logit error allowed per storage type, against the float32 source model.
TOLERANCE = {"F32": 1e-5, "F16": 5e-3, "Q8_0": 2e-2, "Q5_0": 0.12, "Q4_1": 0.3, "Q4_0": 0.3}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_SELFDISTILL_GGUF_CACHE", str(tmp_path / "cache"))


def logits(model) -> np.ndarray:
    return np.array(model(TOKENS).astype(mx.float32))


def rel_err(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def converted(tmp_path, arch, qtype="F32", tie=True, **kw):
    from mlx_lm import load

    source, config = tiny_model(arch, tie=tie)
    path = write_gguf(tmp_path / f"{arch}-{qtype}.gguf", source, config, arch, qtype, **kw)
    out = tmp_path / f"{arch}-{qtype}-mlx"
    convert(GGUFFile(path), out, cpu=True, progress=False)
    model, tokenizer = load(str(out))  # plain mlx_lm reads the folder
    return source, model, tokenizer, out


@pytest.mark.parametrize("arch,tie", [("llama", True), ("qwen2", False), ("qwen3", True), ("gemma3", False)])
def test_float32_gguf_converts_back_to_the_same_logits(tmp_path, arch, tie):
    source, model, _, out = converted(tmp_path, arch, tie=tie)
    assert rel_err(logits(model), logits(source)) < TOLERANCE["F32"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == {"gemma3": "gemma3_text"}.get(arch, arch)
    assert config["tie_word_embeddings"] is tie
    assert config["num_key_value_heads"] == 2 and config["rope_theta"] == 10000.0


def round_tripped(model, qtype):
    """The model with each 2-D weight quantized and dequantized by the gguf package itself."""
    import gguf
    from gguf.quants import dequantize, quantize
    from mlx.utils import tree_flatten, tree_unflatten

    qt = gguf.GGMLQuantizationType[qtype]
    params = []
    for name, v in tree_flatten(model.parameters()):
        if v.ndim == 2:
            w = np.array(v, dtype=np.float32)
            v = mx.array(dequantize(quantize(w, qt), qt).reshape(w.shape))
        params.append((name, v))
    model.update(tree_unflatten(params))
    return model


@pytest.mark.parametrize("qtype", ["F16", "Q8_0", "Q5_0", "Q4_1", "Q4_0"])
def test_quantized_llama_gguf_matches_the_float_source_within_tolerance(tmp_path, qtype):
    source, model, _, _ = converted(tmp_path, "llama", qtype)
    float_logits, got = logits(source), logits(model)
    err = rel_err(got, float_logits)
    assert 0 < err < TOLERANCE[qtype], (qtype, err)  # > 0: the weights really went through qtype
    # Exactly what the gguf package's own dequantization gives: nothing lost in between.
    assert rel_err(got, logits(round_tripped(source, qtype))) < 1e-5


def test_llama_unpermutation_is_needed(tmp_path, monkeypatch):
    monkeypatch.setattr(gguf_mod, "PERMUTED_QK", set())  # skip the un-permutation
    source, model, _, _ = converted(tmp_path, "llama")
    assert rel_err(logits(model), logits(source)) > 1e-2


def test_unpermuted_file_from_a_non_llama_writer_is_not_touched(tmp_path):
    # qwen2 files are stored as Hugging Face has them: no permutation to undo.
    source, model, _, _ = converted(tmp_path, "qwen2", permute=False)
    assert rel_err(logits(model), logits(source)) < TOLERANCE["F32"]


def test_tokenizer_and_chat_template_come_from_the_metadata(tmp_path):
    _, _, tokenizer, out = converted(tmp_path, "qwen2")
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                         tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids[0] == 258 and tokenizer.decode(ids) == text  # <|im_start|> stays one token
    assert tokenizer.eos_token == "<|im_end|>"
    saved = json.loads((out / "tokenizer_config.json").read_text())
    assert saved["chat_template"].startswith("{% for m in messages %}")


def test_k_quant_tensors_dequantize_like_the_gguf_package(tmp_path):
    # gguf.quants cannot quantize K-quants, so the test writes Q6_K blocks from random bytes
    # (with a small finite fp16 scale) and checks the byte -> weight shape handling.
    import gguf
    from gguf.quants import dequantize

    qt = gguf.GGMLQuantizationType.Q6_K
    block, size = gguf.GGML_QUANT_SIZES[qt]
    raw = np.random.default_rng(0).integers(0, 256, size=(3, 2, size), dtype=np.uint8)
    raw[..., size - 2:] = [0x00, 0x1C]  # Q6_K ends each block with its fp16 scale d
    raw = raw.reshape(3, 2 * size)  # 3 rows of 2 blocks = 3 x 512 weights
    source, config = tiny_model("llama")
    path = write_gguf(tmp_path / "k.gguf", source, config, "llama", extra_tensors={"probe.weight": (raw, qt)})
    got = GGUFFile(path).dequantized("probe.weight")
    want = dequantize(raw, qt)
    assert got.shape == (3, 2 * block) and np.isfinite(want).all() and np.abs(want).max() > 0
    np.testing.assert_array_equal(got, want)
