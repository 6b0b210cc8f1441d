"""Cross-entropy over a large vocabulary without ever holding the [tokens x vocab] logits.

With a 152k-token vocabulary the logits are the largest tensor of a training step
(2048 tokens x 151,936 x 4 bytes = 1.2 GB a copy, and autodiff keeps several: the
logits, their float32 cast, the softmax of the backward pass). Here the final norm's
output is projected onto the vocabulary a chunk of tokens at a time, and each chunk's
logits live only long enough to give their logsumexp and target logit. A custom vjp
recomputes each chunk's logits in the backward pass and turns them straight into the
gradient (softmax - one-hot), so the backward pass never holds more than a chunk either.
The recomputation costs one more output projection per step; the memory it saves is
what lets the batch grow.

The head is the model's own: `lm_head` (float or quantized), or the tied input embedding
(`embed_tokens.as_linear`, float or quantized, as in QLoRA). A trainable head (full
fine-tuning) gets its gradient too; a frozen one (LoRA) is a constant of the function.
Models whose logits are not simply head(final norm) (soft-capping, scaled logits,
unknown architectures) get `None` from `output_head` and keep the plain loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import mlx.core as mx
import mlx.nn as nn

# Architectures of mlx_lm whose Model.__call__ is exactly head(self.model(inputs, cache)).
PLAIN_HEAD_MODELS = {"llama", "qwen2", "qwen3", "mistral"}
# Float32 logits per chunk: 64 MB is ~110 tokens of a 152k vocabulary, the whole batch of a small one.
CHUNK_BYTES = 64 * 2 ** 20


@dataclass
class OutputHead:
    """The vocabulary projection of a model, as a matrix [vocab, hidden] (maybe quantized)."""

    weight: mx.array
    scales: Optional[mx.array] = None  # set when quantized
    biases: Optional[mx.array] = None
    group_size: int = 64
    bits: int = 4
    mode: str = "affine"
    trainable: bool = False

    @property
    def quantized(self) -> bool:
        return self.scales is not None

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]

    def project(self, h: mx.array, weight: Optional[mx.array] = None) -> mx.array:
        """h [n, hidden] -> logits [n, vocab]."""
        w = self.weight if weight is None else weight
        if self.quantized:
            return mx.quantized_matmul(h, w, scales=self.scales, biases=self.biases, transpose=True,
                                       group_size=self.group_size, bits=self.bits, mode=self.mode)
        return h @ w.T

    def back(self, g: mx.array, weight: Optional[mx.array] = None) -> mx.array:
        """The gradient through the projection: g [n, vocab] -> [n, hidden]."""
        w = self.weight if weight is None else weight
        if self.quantized:
            return mx.quantized_matmul(g, w, scales=self.scales, biases=self.biases, transpose=False,
                                       group_size=self.group_size, bits=self.bits, mode=self.mode)
        return g @ w


def _trainable_names(model) -> set[str]:
    from mlx.utils import tree_flatten

    return {k for k, _ in tree_flatten(model.trainable_parameters())}


def output_head(model) -> Optional[OutputHead]:
    """The model's vocabulary projection, or None when its logits are not plain head(hidden)."""
    if getattr(model, "model_type", None) not in PLAIN_HEAD_MODELS or not hasattr(model, "model"):
        return None
    args = getattr(model, "args", None)
    tied = getattr(args, "tie_word_embeddings", False)
    if tied:
        layer, name = model.model.embed_tokens, "model.embed_tokens"
        kinds = (nn.Embedding, nn.QuantizedEmbedding)
    else:
        layer, name = getattr(model, "lm_head", None), "lm_head"
        kinds = (nn.Linear, nn.QuantizedLinear)
    # An exact type check: a LoRA-wrapped or biased head is not a plain matrix.
    if type(layer) not in kinds or "bias" in layer:
        return None
    trainable = f"{name}.weight" in _trainable_names(model)
    if isinstance(layer, (nn.QuantizedEmbedding, nn.QuantizedLinear)):
        return OutputHead(layer["weight"], layer["scales"], layer.get("biases"), layer.group_size, layer.bits,
                          getattr(layer, "mode", "affine"), trainable=False)
    return OutputHead(layer.weight, trainable=trainable)


def default_chunk_tokens(vocab_size: int) -> int:
    return max(16, CHUNK_BYTES // (4 * vocab_size))


def _chunk_sum(logits: mx.array, targets: mx.array, weights: mx.array) -> mx.array:
    lse = mx.logsumexp(logits, axis=-1)
    target_logit = mx.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    return ((lse - target_logit) * weights).sum()


def chunked_cross_entropy(h: mx.array, targets: mx.array, weights: mx.array, head: OutputHead,
                          chunk_tokens: Optional[int] = None) -> mx.array:
    """sum_i weights[i] * CE(head(h[i]), targets[i]) for h [n, hidden], chunk by chunk.

    Equals `(nn.losses.cross_entropy(head(h).astype(float32), targets) * weights).sum()`
    within float32 rounding, with peak memory set by `chunk_tokens` rather than n.
    """
    n = h.shape[0]
    c = chunk_tokens or default_chunk_tokens(head.vocab_size)
    spans = [(s, min(s + c, n)) for s in range(0, n, c)]

    def forward(h, weight):
        total = None
        for a, b in spans:
            hc = h[a:b] if total is None else mx.depends(h[a:b], total)  # one chunk's logits at a time
            logits = head.project(hc, weight).astype(mx.float32)
            part = _chunk_sum(logits, targets[a:b], weights[a:b])
            total = part if total is None else total + part
        return mx.array(0.0, mx.float32) if total is None else total

    def backward(h, weight, cotangent):
        scale = weights.astype(mx.float32) * cotangent
        parts, d_weight, previous = [], None, None
        for a, b in spans:
            hc = h[a:b]
            if previous is not None:
                # Chunk k's logits wait for chunk k-1's gradient (the same in the forward).
                # The CPU backend still allocates a few tasks ahead of the computation
                # (up to ~10 in flight, fewer once mx.set_memory_limit is reached), so a
                # few chunks may coexist: the bound is set by the chunk, not the batch.
                hc = mx.depends(hc, previous)
            logits = head.project(hc, weight).astype(mx.float32)
            g = mx.softmax(logits, axis=-1)
            t = targets[a:b, None]
            g = mx.put_along_axis(g, t, mx.take_along_axis(g, t, axis=-1) - 1.0, axis=-1)
            g = (g * scale[a:b, None]).astype(h.dtype)
            dh = head.back(g, weight)
            parts.append(dh)
            if weight is not None:
                dw = g.T @ hc
                d_weight = dw if d_weight is None else d_weight + dw
                previous = d_weight
            else:
                previous = dh
        return mx.concatenate(parts, axis=0) if parts else mx.zeros_like(h), d_weight

    if head.trainable:
        @mx.custom_function
        def loss(h, weight):
            return forward(h, weight)

        @loss.vjp
        def loss_vjp(primals, cotangent, output):
            return backward(*primals, cotangent)

        return loss(h, head.weight)

    @mx.custom_function
    def loss_frozen(h):
        return forward(h, None)

    @loss_frozen.vjp
    def loss_frozen_vjp(h, cotangent, output):  # one primal: given and returned bare
        return backward(h, None, cotangent)[0]

    return loss_frozen(h)
