"""Getting the result out (issue 23): 4- and 5-bit GGUF exports that stay near the downloaded
size, and an Ollama Modelfile whose template sends the model what its chat template would."""

import json
import os
from pathlib import Path

import gguf
import mlx.core as mx
import numpy as np
import pytest

from mlx_selfdistill.errors import UserError
from mlx_selfdistill.export import export_gguf
from mlx_selfdistill.export.ollama import chat_parts, go_template
from mlx_selfdistill.models import DEFAULT_MODEL, load_model

from conftest import main_exit

Q = gguf.GGMLQuantizationType
MODELS = Path(os.environ.get("MLX_SELFDISTILL_TEST_MODELS") or "/root/.cache/mlx-selfdistill/models")
SMOLLM2 = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
# max |logit difference| relative to the largest |logit| on the tiny coder (measured: 0.069 / 0.054 / 0.036)
TOLERANCE = {"q4_0": 0.15, "q4_1": 0.15, "q5_0": 0.1, "q5_1": 0.1}


@pytest.fixture(autouse=True)
def gguf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_SELFDISTILL_GGUF_CACHE", str(tmp_path / "gguf-cache"))


def _logits(model, ids):
    return np.array(model(mx.array([ids]))[0].astype(mx.float32))


@pytest.mark.parametrize("out_type, qtype", [("q4_0", Q.Q4_0), ("q4_1", Q.Q4_1), ("q5_0", Q.Q5_0), ("q5_1", Q.Q5_1)])
def test_low_bit_exports_quantize_the_layers_and_keep_the_vocabulary_at_q8_0(tmp_path, out_type, qtype):
    out = tmp_path / "tiny.gguf"
    export_gguf("tiny", out, out_type=out_type)
    reader = gguf.GGUFReader(out)
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.ffn_down.weight"] == qtype and types["blk.0.attn_q.weight"] == qtype
    assert types["token_embd.weight"] == Q.Q8_0
    assert all(types[t.name] == Q.F32 for t in reader.tensors if len(t.shape) == 1)
    source, tok = load_model("tiny")
    back, _ = load_model(out)  # read back through the project's own GGUF import
    ids = tok.encode("def add(a, b):\n    return", add_special_tokens=False)
    a, b = _logits(source, ids), _logits(back, ids)
    err = np.abs(a - b).max() / np.abs(a).max()
    assert 0.012 < err < TOLERANCE[out_type]  # quantized (q8_0 is ~0.011 here), and still the same model
    assert (a.argmax(-1) == b.argmax(-1)).mean() == 1.0


@pytest.mark.slow
@pytest.mark.skipif(not SMOLLM2.exists(), reason=f"SmolLM2 GGUF absent from {MODELS} "
                    "(python benchmarks/fetch_models.py --only smollm2; $MLX_SELFDISTILL_TEST_MODELS)")
def test_a_q4_export_of_smollm2_stays_near_the_downloaded_size(tmp_path):
    """The issue: the 98 MB SmolLM2 came back as 271 MB (f16)."""
    result = export_gguf(str(SMOLLM2), tmp_path / "smol.gguf", out_type="q4_1")
    assert result["bytes"] < 1.1 * SMOLLM2.stat().st_size


def _tiny_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(DEFAULT_MODEL))


def _gguf_tokenizer(path):
    from mlx_selfdistill.models import resolve_model
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(str(path)))


@pytest.mark.parametrize("system", [None, "Answer in Python only."])
def test_the_template_pieces_rebuild_the_chat_templates_text(system):
    tok = _tiny_tokenizer()
    parts = chat_parts(tok)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "add two"}]
    assert parts.render("add two", system) == tok.apply_chat_template(messages, add_generation_prompt=True,
                                                                      tokenize=False)
    assert parts.stop == ["<|im_end|>"]
    # The Go template lays the same pieces around Ollama's variables, in order.
    template = go_template(parts)
    assert template.index("{{ .System }}") < template.index("{{ .Prompt }}") < template.index("{{ .Response }}")
    assert "{{ .Prompt }}" + parts.reply_prefix + "{{ .Response }}" + parts.reply_suffix in template


@pytest.mark.slow
@pytest.mark.skipif(not SMOLLM2.exists(), reason=f"SmolLM2 GGUF absent from {MODELS}")
def test_a_default_system_prompt_becomes_the_modelfiles_system():
    tok = _gguf_tokenizer(SMOLLM2)
    parts = chat_parts(tok)
    assert parts.default_system.startswith("You are a helpful AI assistant named SmolLM")
    ref = tok.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False)
    assert parts.render("x") == ref


def test_export_ollama_writes_a_modelfile_and_prints_the_create_line(tmp_path, capsys):
    out = tmp_path / "tiny.gguf"
    assert main_exit(["export", "--gguf", str(out), "--type", "q4_0", "--ollama", "tiny-distilled"]) == 0
    printed = capsys.readouterr().out
    modelfile = tmp_path / "tiny.Modelfile"
    assert f"ollama create tiny-distilled -f {modelfile}" in printed
    text = modelfile.read_text()
    assert "FROM ./tiny.gguf\n" in text and 'PARAMETER stop "<|im_end|>"' in text
    assert 'TEMPLATE """' in text and "{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n{{ .Response }}" in text


def test_a_bad_ollama_name_fails_before_exporting(tmp_path):
    with pytest.raises(UserError, match="--ollama 'no spaces'"):
        export_gguf("tiny", tmp_path / "m.gguf", out_type="q4_0", ollama="no spaces")
    assert not list(tmp_path.iterdir())
