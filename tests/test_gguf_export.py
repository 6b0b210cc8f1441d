"""GGUF export: tiny random llama / qwen2 / qwen3 models written with the project's exporter
and read back with ggml's own reader (`gguf.GGUFReader`)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the gguf package is needed to export GGUF files")

from mlx_selfdistill.errors import UserError  # noqa: E402
from mlx_selfdistill.export import export_gguf  # noqa: E402
from mlx_selfdistill.export.gguf_vocab import pre_tokenizer_name  # noqa: E402
from mlx_selfdistill.models import DEFAULT_MODEL, load_model  # noqa: E402
from mlx_selfdistill.models.gguf import unpermute_qk  # noqa: E402

from conftest import ROOT, make_random_adapter  # noqa: E402

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

BASE = {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 96, "num_attention_heads": 4,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "max_position_embeddings": 256,
        "rope_theta": 50000.0, "torch_dtype": "float32", "eos_token_id": 2}
CONFIGS = {
    # untied head, and more embedding rows than tokens (as Qwen pads its vocabulary)
    "llama": {**BASE, "model_type": "llama", "vocab_size": 520, "tie_word_embeddings": False},
    "qwen2": {**BASE, "model_type": "qwen2", "vocab_size": 512, "tie_word_embeddings": True},
    "qwen3": {**BASE, "model_type": "qwen3", "vocab_size": 512, "tie_word_embeddings": True, "head_dim": 32},
}


def make_model(folder, model_type, seed=0):
    """A random float32 mlx_lm model folder with the embedded model's tokenizer."""
    import importlib

    import mlx.core as mx
    from mlx.utils import tree_flatten

    config = CONFIGS[model_type]
    module = importlib.import_module(f"mlx_lm.models.{model_type}")
    mx.random.seed(seed)
    model = module.Model(module.ModelArgs.from_dict(config))
    # Random norms too, so a swapped or dropped norm cannot go unnoticed.
    params = {k: (v + 0.1 * mx.random.normal(v.shape)) if "norm" in k else v
              for k, v in tree_flatten(model.parameters())}
    folder.mkdir(parents=True)
    mx.save_safetensors(str(folder / "model.safetensors"), params)
    (folder / "config.json").write_text(json.dumps(config))
    for name in TOKENIZER_FILES:
        shutil.copy(DEFAULT_MODEL / name, folder / name)
    if model_type != "llama":  # give the qwen models Qwen2's own pre-tokenizer
        tok = json.loads((folder / "tokenizer.json").read_text())
        tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
        (folder / "tokenizer.json").write_text(json.dumps(tok))
    return folder, {k: np.array(v) for k, v in params.items()}


@pytest.fixture(autouse=True)
def gguf_cache(tmp_path, monkeypatch):
    """The importer's cache of converted GGUFs, per test."""
    monkeypatch.setenv("MLX_SELFDISTILL_GGUF_CACHE", str(tmp_path / "gguf-cache"))


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def model(request, tmp_path_factory):
    return (request.param, *make_model(tmp_path_factory.mktemp("models") / request.param, request.param))


def field(reader, key):
    return reader.fields[key].contents()


def tensors(reader):
    return {t.name: t for t in reader.tensors}


def as_source(model_type, name, w):
    """A GGUF tensor back in mlx_lm's row order."""
    cfg = CONFIGS[model_type]
    if model_type == "llama" and ".attn_q." in name:
        return unpermute_qk(w, cfg["num_attention_heads"])
    if model_type == "llama" and ".attn_k." in name:
        return unpermute_qk(w, cfg["num_key_value_heads"])
    return w


def read_back(t):
    data = gguf.quants.dequantize(t.data, t.tensor_type)
    return np.asarray(data, dtype=np.float32).reshape(tuple(int(d) for d in reversed(t.shape)))


def test_metadata_is_what_llama_cpp_reads(model, tmp_path):
    model_type, folder, _ = model
    cfg = CONFIGS[model_type]
    out = tmp_path / "m.gguf"
    result = export_gguf(folder, out, out_type="f16")
    r = gguf.GGUFReader(out)
    arch = field(r, "general.architecture")
    assert arch == model_type == result["architecture"]
    assert field(r, "general.name") == model_type
    assert field(r, f"{arch}.context_length") == 256
    assert field(r, f"{arch}.embedding_length") == 64
    assert field(r, f"{arch}.block_count") == 2
    assert field(r, f"{arch}.feed_forward_length") == 96
    assert field(r, f"{arch}.attention.head_count") == 4
    assert field(r, f"{arch}.attention.head_count_kv") == 2
    assert field(r, f"{arch}.rope.freq_base") == 50000.0
    assert field(r, f"{arch}.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    assert field(r, "general.file_type") == gguf.LlamaFileType.MOSTLY_F16
    if model_type == "qwen3":
        assert field(r, f"{arch}.attention.key_length") == field(r, f"{arch}.attention.value_length") == 32

    tok = json.loads((folder / "tokenizer.json").read_text())
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    assert field(r, "tokenizer.ggml.model") == "gpt2"
    assert field(r, "tokenizer.ggml.pre") == ("smollm" if model_type == "llama" else "qwen2")
    assert len(tokens) == len(types) == cfg["vocab_size"]
    for text, i in tok["model"]["vocab"].items():
        assert tokens[i] == text
    assert tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] and types[:3] == [3, 3, 3]
    assert types[100] == gguf.TokenType.NORMAL
    if cfg["vocab_size"] > 512:  # embedding rows without a token: named, marked unused
        assert tokens[512:] == [f"[PAD{i}]" for i in range(512, 520)]
        assert set(types[512:]) == {gguf.TokenType.UNUSED}
    assert field(r, "tokenizer.ggml.merges")[:2] == tok["model"]["merges"][:2] or \
        field(r, "tokenizer.ggml.merges")[:2] == [" ".join(m) for m in tok["model"]["merges"][:2]]
    assert field(r, "tokenizer.ggml.eos_token_id") == 2
    assert field(r, "tokenizer.ggml.padding_token_id") == 0
    assert field(r, "tokenizer.ggml.add_bos_token") is False
    assert field(r, "tokenizer.chat_template") == tok_config["chat_template"]


def test_tensors_keep_the_weights_in_llama_cpp_layout(model, tmp_path):
    model_type, folder, params = model
    out = tmp_path / "m.gguf"
    export_gguf(folder, out, out_type="f32")
    t = tensors(gguf.GGUFReader(out))
    names = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == model_type), 2)
    expected = {names.get_name(k, try_suffixes=(".weight", ".bias")) for k in params}
    if CONFIGS[model_type]["tie_word_embeddings"]:
        assert "output.weight" not in t  # llama.cpp falls back to token_embd
    else:
        assert "output.weight" in t
    assert set(t) == expected
    if model_type == "qwen2":
        assert {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"} <= set(t)
    if model_type == "qwen3":
        assert {"blk.0.attn_q_norm.weight", "blk.0.attn_k_norm.weight"} <= set(t)
    for mlx_name, source in params.items():
        name = names.get_name(mlx_name, try_suffixes=(".weight", ".bias"))
        got = read_back(t[name])
        assert got.shape == source.shape, name
        stored_as_is = np.array_equal(got, source)
        assert np.array_equal(as_source(model_type, name, got), source), name
        if model_type == "llama" and (".attn_q." in name or ".attn_k." in name):
            assert not stored_as_is, f"{name}: llama q/k rows must be reordered for llama.cpp's rope"


def test_q8_0_quantizes_matrices_and_keeps_vectors_f32(model, tmp_path):
    model_type, folder, params = model
    out = tmp_path / "m.gguf"
    export_gguf(folder, out, out_type="q8_0")
    r = gguf.GGUFReader(out)
    assert field(r, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0
    for t in r.tensors:
        if len(t.shape) == 1:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32, t.name
        else:
            assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0, t.name
    w = read_back(tensors(r)["blk.1.ffn_down.weight"])
    source = params["model.layers.1.mlp.down_proj.weight"]
    err = np.abs(w - source).max()
    # about half a quantization step (the block scale itself is stored as f16)
    assert 0 < err <= np.abs(source).max() / 127 * 0.6


def test_adapter_is_fused_into_the_exported_weights(tmp_path):
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load

    from mlx_selfdistill.training.fuse import fuse_in_memory


    adapter = make_random_adapter(tmp_path / "adapter")
    out = tmp_path / "fused.gguf"
    result = export_gguf("tiny", out, adapter=adapter, out_type="f32")
    assert result["fused_layers"] > 0
    model, _ = load(str(DEFAULT_MODEL), adapter_path=str(adapter))
    fuse_in_memory(model)
    fused = dict(tree_flatten(model.parameters()))
    base, _ = load(str(DEFAULT_MODEL))
    base = dict(tree_flatten(base.parameters()))
    t = tensors(gguf.GGUFReader(out))
    changed = 0
    for layer in range(4):
        mlx_name = f"model.layers.{layer}.self_attn.v_proj.weight"
        got = read_back(t[f"blk.{layer}.attn_v.weight"])
        assert np.allclose(got, np.array(fused[mlx_name].astype(mx.float32)), atol=1e-6)
        changed += not np.allclose(got, np.array(base[mlx_name]))
    assert changed == 2  # the adapter covers the last 2 of 4 blocks


def test_pre_tokenizer_names():
    byte_level = {"type": "ByteLevel", "use_regex": True}
    assert pre_tokenizer_name({"pre_tokenizer": byte_level}) == "gpt-2"
    seq = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    assert pre_tokenizer_name({"pre_tokenizer": seq}) == "smollm"
    split = {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}},
                                                   {"type": "ByteLevel", "use_regex": False}]}
    assert pre_tokenizer_name({"pre_tokenizer": split}) == "qwen2"
    assert pre_tokenizer_name({"pre_tokenizer": {"type": "Whitespace"}}) == "default"


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        export_gguf("tiny", tmp_path / "missing" / "m.gguf")
    with pytest.raises(UserError, match="choose one of"):
        export_gguf("tiny", tmp_path / "m.gguf", out_type="q4_k")
    with pytest.raises(UserError, match="not an adapter folder"):
        export_gguf("tiny", tmp_path / "m.gguf", adapter=tmp_path)
    odd = tmp_path / "odd"
    shutil.copytree(DEFAULT_MODEL, odd)
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(UserError, match="cannot be exported"):
        export_gguf(odd, tmp_path / "m.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*tmp*"))


def test_cli_exports_and_fails_in_one_line(tmp_path):
    env_cmd = [sys.executable, "-m", "mlx_selfdistill.cli", "export"]
    out = tmp_path / "tiny.gguf"
    ok = subprocess.run(env_cmd + ["--gguf", str(out), "--type", "q8_0", "--json"], capture_output=True,
                        text=True, cwd=ROOT, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads(ok.stdout)["type"] == "q8_0" and out.stat().st_size > 0
    bad = subprocess.run(env_cmd + ["--gguf", str(tmp_path / "x.gguf"), "--type", "q3"], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert bad.returncode != 0
    errors = [line for line in bad.stderr.splitlines() if line.strip()]
    assert errors == ["error: --type 'q3': choose one of f16, q8_0, bf16, f32, q4_0, q4_1, q5_0, q5_1"]
    from mlx_selfdistill.commands.export import TYPES
    from mlx_selfdistill.export import OUT_TYPES

    assert TYPES == tuple(OUT_TYPES)  # --help lists what the library takes


def test_an_mlx_quantized_model_is_exported_dequantized(tmp_path):
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.utils import dequantize_model, quantize_model, save

    model, tok, config = load(str(DEFAULT_MODEL), return_config=True)
    model, config = quantize_model(model, config, group_size=32, bits=4)
    save(tmp_path / "q4", str(DEFAULT_MODEL), model, tok, config, donate_model=False)
    expected = dict(tree_flatten(dequantize_model(load(str(tmp_path / "q4"))[0]).parameters()))
    out = tmp_path / "m.gguf"
    export_gguf(tmp_path / "q4", out, out_type="f32")
    t = tensors(gguf.GGUFReader(out))
    assert not any("scales" in name for name in t)
    got = read_back(t["blk.2.ffn_up.weight"])
    assert np.array_equal(got, np.array(expected["model.layers.2.mlp.up_proj.weight"].astype(mx.float32)))


# Round trips through the project's own GGUF importer (models.load_model on a .gguf).

PROMPT = "<|im_start|>user\nWrite a Python function `add_12(x)` that returns x plus 12.<|im_end|>\n<|im_start|>assistant\n"


def logits(model, ids):
    import mlx.core as mx

    return np.array(model(mx.array([ids]))[0].astype(mx.float32))


def greedy(model, ids, n=24):
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    steps = generate_step(mx.array(ids), model, max_tokens=n, sampler=lambda lp: mx.argmax(lp, axis=-1))
    return [int(t) for t, _ in steps]


# max |logit difference| allowed, relative to the largest |logit|: f16 rounding vs 8-bit blocks
TOLERANCE = {"f16": 0.01, "q8_0": 0.05}


@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_round_trip_random_models_keep_their_logits(model, out_type, tmp_path):
    model_type, folder, _ = model
    source, tok = load_model(folder)
    out = tmp_path / "m.gguf"
    export_gguf(folder, out, out_type=out_type)
    back, back_tok = load_model(out)
    ids = tok.encode(PROMPT, add_special_tokens=False)
    assert back_tok.encode(PROMPT, add_special_tokens=False) == ids
    a, b = logits(source, ids), logits(back, ids)
    err = np.abs(a - b).max() / np.abs(a).max()
    assert 0 < err < TOLERANCE[out_type], err


@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_round_trip_of_the_tiny_coder_keeps_greedy_tokens(out_type, tmp_path):
    source, tok = load_model("tiny")
    out = tmp_path / "tiny.gguf"
    export_gguf("tiny", out, out_type=out_type)
    back, back_tok = load_model(out)
    ids = tok.encode(PROMPT, add_special_tokens=False)
    assert back_tok.encode(PROMPT, add_special_tokens=False) == ids
    assert back_tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                        tokenize=False) == \
        tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    expected = greedy(source, ids)
    assert greedy(back, ids) == expected and len(set(expected)) > 3
    a, b = logits(source, ids), logits(back, ids)
    assert np.abs(a - b).max() / np.abs(a).max() < TOLERANCE[out_type]


@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_round_trip_with_an_adapter_matches_mlx_lm_running_the_adapter(out_type, tmp_path):
    from mlx_lm import load

    adapter = make_random_adapter(tmp_path / "adapter")
    with_adapter, tok = load(str(DEFAULT_MODEL), adapter_path=str(adapter))  # LoRA layers, unfused
    base, _ = load(str(DEFAULT_MODEL))
    out = tmp_path / "fused.gguf"
    export_gguf("tiny", out, adapter=adapter, out_type=out_type)
    back, _ = load_model(out)
    ids = tok.encode(PROMPT, add_special_tokens=False)
    a, b = logits(with_adapter, ids), logits(back, ids)
    export_err = np.abs(a - b).max() / np.abs(a).max()
    assert export_err < TOLERANCE[out_type]
    # the adapter's own effect dwarfs the export's error: it was fused, not dropped
    assert np.abs(a - logits(base, ids)).max() / np.abs(a).max() > 3 * export_err
    assert greedy(back, ids) == greedy(with_adapter, ids)


def test_a_gguf_model_spec_is_exported_under_its_source_name(tmp_path):
    first = tmp_path / "first.gguf"
    export_gguf("tiny", first, out_type="f16", name="tiny coder, distilled")
    again = tmp_path / "again.gguf"
    export_gguf(first, again, out_type="q8_0")  # --model accepts a GGUF: converted, then exported
    r = gguf.GGUFReader(again)
    assert field(r, "general.name") == "tiny coder, distilled"
    assert field(r, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0
