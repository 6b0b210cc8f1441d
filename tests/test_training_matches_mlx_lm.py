"""The trainer's loss and LoRA gradients equal mlx_lm's on one fixed batch (issue 24: rule out a
bug before blaming the data). Same LoRA layers (mlx_lm's own linear_to_lora_layers), rank,
scale and completion-only mask; float32 tolerance."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map
from mlx_lm.tuner.trainer import default_loss

from mlx_selfdistill.models import load_model
from mlx_selfdistill.training import TrainConfig
from mlx_selfdistill.training.adapters import setup_trainable
from mlx_selfdistill.training.batching import make_batch
from mlx_selfdistill.training.data import tokenize_example
from mlx_selfdistill.training.trainer import batch_arrays, loss_sum

CONVERSATIONS = [
    [{"role": "user", "content": "Write add."}, {"role": "assistant", "content": "def add(a, b):\n    return a + b"}],
    [{"role": "user", "content": "Write a function that reverses a list, please."},
     {"role": "assistant", "content": "def rev(xs):\n    return xs[::-1]"}],
    [{"role": "user", "content": "Square."}, {"role": "assistant", "content": "def sq(x):\n    out = x * x\n    return out"}],
]


@pytest.fixture(scope="module")
def lora_model():
    model, tokenizer = load_model("tiny")
    setup_trainable(model, TrainConfig(rank=4, scale=20.0, num_layers="all", seed=0))
    # LoRA's B starts at zero, which would leave A's gradient zero: give both real values.
    rng = np.random.default_rng(0)
    model.update(tree_map(lambda w: mx.array(rng.normal(0, 0.02, w.shape).astype(np.float32)),
                          model.trainable_parameters()))
    examples = [tokenize_example(tokenizer, c) for c in CONVERSATIONS]
    assert len({len(e) for e in examples}) == 3 and all(0 < e.prompt_len < len(e) for e in examples)
    return model, examples


def _ours(model, examples, chunked):
    inputs, targets, weights, _, select = batch_arrays(make_batch(examples, [[0], [1], [2]], pad_multiple=8), False)

    def mean_loss(m):
        total, count = loss_sum(m, inputs, targets, weights, select=select, chunked=chunked)
        return total / count

    loss, grads = nn.value_and_grad(model, mean_loss)(model)
    return loss, grads, float(weights.sum())


def _mlx_lm(model, examples, last_target):
    """mlx_lm's default_loss on its own batch layout (right-padded rows, (offset, length) pairs)."""
    width = 1 + 32 * ((max(len(e) for e in examples) + 31) // 32)
    batch = np.zeros((len(examples), width), np.int32)
    for i, e in enumerate(examples):
        batch[i, :len(e)] = e.tokens
    lengths = mx.array([[e.prompt_len, last_target(e)] for e in examples])
    (loss, ntoks), grads = nn.value_and_grad(model, lambda m: default_loss(m, mx.array(batch), lengths))(model)
    return loss, grads, int(ntoks)


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked_loss", "full_logits"])
def test_loss_and_lora_gradients_equal_mlx_lm(lora_model, chunked):
    model, examples = lora_model
    loss, grads, count = _ours(model, examples, chunked)
    # mlx_lm's mask keeps targets offset..length; our examples' last target is token len-1.
    ref_loss, ref_grads, ref_count = _mlx_lm(model, examples, lambda e: len(e) - 1)
    assert count == ref_count == sum(e.num_targets for e in examples)
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-5)
    ours, theirs = dict(tree_flatten(grads)), dict(tree_flatten(ref_grads))
    assert ours.keys() == theirs.keys() and len(ours) > 0
    assert any(k.endswith("lora_a") for k in ours) and any(k.endswith("lora_b") for k in ours)
    for key in ours:
        np.testing.assert_allclose(np.array(ours[key]), np.array(theirs[key]), rtol=2e-4, atol=1e-7, err_msg=key)
        assert float(mx.abs(ours[key]).max()) > 0, key  # a real gradient, not two zeros


def test_mlx_lm_as_shipped_also_trains_one_padding_target_per_row(lora_model):
    """What mlx_lm's own iterate_batches passes (length = number of tokens) selects one target past
    the end: the pad id 0 after the EOS (ml-explore/mlx-lm PR 1697). Ours does not, so the
    two trainers' reported losses differ by that much even on identical data."""
    model, examples = lora_model
    _, _, count = _ours(model, examples, True)
    _, _, shipped = _mlx_lm(model, examples, lambda e: len(e))
    assert shipped == count + len(examples)
