"""The chunked vocabulary loss equals the plain full-logits loss (value and gradients) on
tied, untied and quantized heads, and holds less memory than the full logits."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_selfdistill.models import load_model
from mlx_selfdistill.training import TrainConfig
from mlx_selfdistill.training.adapters import quantize_base, setup_trainable
from mlx_selfdistill.training.chunked_loss import OutputHead, chunked_cross_entropy, output_head
from mlx_selfdistill.training.trainer import loss_sum


def qwen_small(vocab=4096, tied=False, seed=0):
    """A random qwen2-shaped model with a vocabulary much wider than its hidden size."""
    from mlx_lm.models import qwen2

    mx.random.seed(seed)
    args = qwen2.ModelArgs.from_dict({
        "model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "vocab_size": vocab,
        "tie_word_embeddings": tied})
    model = qwen2.Model(args)
    mx.eval(model.parameters())
    return model


def batch(vocab, rows=3, length=40, seed=0):
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, vocab, size=(rows, length)).astype(np.int32)
    targets = rng.integers(0, vocab, size=(rows, length)).astype(np.int32)
    weights = np.zeros((rows, length), np.float32)
    for r in range(rows):  # a prompt, then a completion of varied length, then padding
        weights[r, 10:10 + 8 * (r + 2)] = 1.0
    select = np.flatnonzero(weights.reshape(-1)).astype(np.int32)
    return [mx.array(inputs), mx.array(targets), mx.array(weights), None, mx.array(select)]


def loss_and_grads(model, args, **kw):
    (loss, n), grads = nn.value_and_grad(model, lambda m, *a: loss_sum(m, *a, **kw))(model, *args)
    mx.eval(loss, grads)
    return loss.item(), n.item(), dict(tree_flatten(grads))


def assert_same(model, args, chunk_tokens=7):
    plain = loss_and_grads(model, args, chunked=False)
    chunked = loss_and_grads(model, args, chunked=True, chunk_tokens=chunk_tokens)
    assert output_head(model) is not None
    assert chunked[1] == plain[1] and chunked[0] == pytest.approx(plain[0], rel=1e-5)
    assert chunked[2].keys() == plain[2].keys() and plain[2]
    for k, g in plain[2].items():
        scale = max(mx.abs(g).max().item(), 1e-6)
        assert mx.abs(chunked[2][k] - g).max().item() <= 2e-4 * scale, k
    return plain


@pytest.mark.parametrize("fine_tune_type", ["lora", "full"])
def test_tiny_model_tied_head(fine_tune_type):
    model, _ = load_model("tiny")
    setup_trainable(model, TrainConfig(fine_tune_type=fine_tune_type))
    _, _, grads = assert_same(model, batch(model.args.vocab_size))
    # Full fine-tuning trains the tied embedding through the head as well: its gradient is checked.
    assert ("model.embed_tokens.weight" in grads) == (fine_tune_type == "full")


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("fine_tune_type", ["lora", "full"])
def test_qwen2_shaped_model_with_a_large_vocabulary(tied, fine_tune_type):
    model = qwen_small(vocab=8192, tied=tied)
    setup_trainable(model, TrainConfig(fine_tune_type=fine_tune_type))
    _, _, grads = assert_same(model, batch(8192))
    head = "model.embed_tokens.weight" if tied else "lm_head.weight"
    assert (head in grads) == (fine_tune_type == "full")


@pytest.mark.parametrize("tied", [False, True])
def test_quantized_head_qlora(tied):
    model = qwen_small(vocab=4096, tied=tied)
    quantize_base(model, 4, 64)
    setup_trainable(model, TrainConfig())
    assert output_head(model).quantized
    assert_same(model, batch(4096))


def test_selecting_completion_positions_changes_nothing():
    model = qwen_small(vocab=2048)
    args = batch(2048)
    everything = loss_and_grads(model, args[:4] + [None], chunked=True, chunk_tokens=16)
    selected = loss_and_grads(model, args, chunked=True, chunk_tokens=16)
    assert selected[0] == pytest.approx(everything[0], rel=1e-5)


def test_unsupported_heads_fall_back_to_full_logits():
    model = qwen_small(vocab=512)
    model.model_type = "gemma2"  # soft-capped logits: not head(hidden)
    assert output_head(model) is None
    plain = loss_and_grads(model, batch(512), chunked=False)
    assert loss_and_grads(model, batch(512), chunked=True)[0] == pytest.approx(plain[0], rel=1e-6)


def test_empty_selection_and_uneven_last_chunk():
    mx.random.seed(1)
    h, w = mx.random.normal((10, 8)), mx.random.normal((300, 8))
    t = mx.random.randint(0, 300, (10,))
    ones = mx.ones((10,))
    full = (nn.losses.cross_entropy(h @ w.T, t)).sum()
    assert chunked_cross_entropy(h, t, ones, OutputHead(w), chunk_tokens=3).item() == pytest.approx(full.item(), rel=1e-5)
    assert chunked_cross_entropy(h, t, mx.zeros((10,)), OutputHead(w), chunk_tokens=4).item() == 0.0


def _peak_of_step(model, args, **kw):
    mx.synchronize()
    mx.clear_cache()
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    loss_and_grads(model, args, **kw)
    return mx.get_peak_memory() - base


def test_chunked_loss_holds_less_memory_than_the_full_logits():
    vocab, rows, length = 32768, 4, 128  # full float32 logits: 64 MiB a copy
    model = qwen_small(vocab=vocab)
    setup_trainable(model, TrainConfig())
    args = batch(vocab, rows=rows, length=length)
    args[2] = mx.ones((rows, length))  # every position in the loss: no help from selection
    args[4] = None
    logits_bytes = rows * length * vocab * 4
    plain = _peak_of_step(model, args, chunked=False)
    chunked = _peak_of_step(model, args, chunked=True, chunk_tokens=16)
    assert plain > 2 * logits_bytes  # autodiff holds several copies of the logits
    assert chunked < 0.5 * logits_bytes  # never one whole copy
