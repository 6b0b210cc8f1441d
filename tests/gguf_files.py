"""Tiny GGUF files for the tests, written the way llama.cpp's converter writes them.

A random mlx_lm model (llama, qwen2, qwen3 or gemma3) is saved with gguf.GGUFWriter under
llama.cpp's tensor names, its q/k rows permuted for llama (written out here from
llama.cpp's converter, independently of the project's own un-permutation; Gemma's norms
stored as 1 + w), and quantized
with gguf.quants. A byte-level vocabulary (256 bytes, one merge, 3 special tokens) gives it a tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DIMS = dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
            num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=256)

_LAYER = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}
# Gemma 3's four norms per layer, under llama.cpp's names.
_GEMMA3 = {**_LAYER, "post_attention_layernorm": "post_attention_norm",
           "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm"}
MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3": "gemma3_text"}


def vocabulary() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values()) + ["Ġt"] + SPECIALS


def tiny_model(arch: str, seed: int = 0, tie: bool = True):
    """(model, config) of a random mlx_lm model of the given GGUF architecture."""
    import mlx.core as mx
    from mlx_lm.utils import _get_classes

    config = dict(DIMS, model_type=MODEL_TYPES[arch], vocab_size=len(vocabulary()), tie_word_embeddings=tie)
    if arch in ("qwen3", "gemma3"):
        config["head_dim"] = 16
    if arch == "gemma3":
        config.update(query_pre_attn_scalar=16, sliding_window=4, sliding_window_pattern=2)
    model_cls, args_cls = _get_classes(config)
    mx.random.seed(seed)
    model = model_cls(args_cls.from_dict(config))
    # Norm weights away from 1 so a misplaced norm shows in the logits.
    from mlx.utils import tree_flatten, tree_unflatten

    params = tree_flatten(model.parameters())
    noisy = [(k, v + 0.1 * mx.random.normal(v.shape) if k.endswith("norm.weight") else v) for k, v in params]
    model.update(tree_unflatten(noisy))
    mx.eval(model.parameters())
    return model, config


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf's q/k permutation (interleave each head's two halves)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_name(mlx_name: str, arch: str = "llama") -> str:
    if mlx_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if mlx_name == "model.norm.weight":
        return "output_norm.weight"
    if mlx_name == "lm_head.weight":
        return "output.weight"
    _, _, layer, rest = mlx_name.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{(_GEMMA3 if arch == 'gemma3' else _LAYER)[module]}.{kind}"


def write_gguf(path: Path, model, config: dict, arch: str, qtype: str = "F32", *,
               permute: bool = True, extra_tensors: dict | None = None, mixed: dict | None = None) -> Path:
    """Write model as a GGUF of architecture arch, its 2-D weights stored as qtype
    (or as mixed[part] for names containing part, like llama.cpp's Q4_K_M mixes)."""
    import gguf
    from gguf.quants import quantize
    from mlx.utils import tree_flatten

    qt = gguf.GGMLQuantizationType[qtype]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"tiny-{arch}")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_theta"])
    if "head_dim" in config:
        writer.add_key_length(config["head_dim"])
        writer.add_value_length(config["head_dim"])
    if "sliding_window" in config:
        writer.add_sliding_window(config["sliding_window"])
        writer.add_sliding_window_pattern([True, False])  # layer 0 sliding, layer 1 global
    tokens = vocabulary()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * 257 + [3] * len(SPECIALS))
    writer.add_token_merges(["Ġ t"])
    writer.add_bos_token_id(tokens.index("<|im_start|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_chat_template(CHAT_TEMPLATE)

    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    for name, value in tree_flatten(model.parameters()):
        w = np.array(value, dtype=np.float32)
        if arch == "llama" and permute and ".q_proj." in name:
            w = llama_cpp_permute(w, n_head)
        elif arch == "llama" and permute and ".k_proj." in name:
            w = llama_cpp_permute(w, n_kv)
        if arch == "gemma3" and name.endswith("norm.weight"):
            w = w + 1.0  # llama.cpp stores Gemma's norms as (1 + w)
        wt = next((gguf.GGMLQuantizationType[q] for part, q in (mixed or {}).items() if part in name), qt)
        if w.ndim == 2 and wt != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(gguf_name(name, arch), quantize(w, wt), raw_dtype=wt)
        else:
            writer.add_tensor(gguf_name(name, arch), w)
    for name, (data, raw) in (extra_tensors or {}).items():
        writer.add_tensor(name, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
