"""Data-parallel training over MLX's own distributed layer (`mx.distributed`).

Launch with `mlx.launch -n 2 --backend ring -- mlx-selfdistill train ...` (one host or
several). Every rank builds the same global batch plan, trains on its share of the
rows, and the summed gradients and token counts are added across ranks before the
update: the result equals one process training on the whole global batch.
"""

from __future__ import annotations

import mlx.core as mx
from mlx.utils import tree_flatten, tree_map


def world():
    """The process group; a group of one when not launched under mlx.launch."""
    return mx.distributed.init()


def all_sum_tree(tree, group):
    """Sum a tree of arrays across ranks in one collective (one flat buffer)."""
    if group.size() == 1:
        return tree
    flat = tree_flatten(tree)
    shapes = [v.shape for _, v in flat]
    sizes = [v.size for _, v in flat]
    buf = mx.concatenate([v.astype(mx.float32).reshape(-1) for _, v in flat])
    buf = mx.distributed.all_sum(buf, group=group, stream=mx.cpu)
    out, at = [], 0
    for (_, v), shape, n in zip(flat, shapes, sizes):
        out.append(buf[at:at + n].reshape(shape).astype(v.dtype))
        at += n
    # Rebuild on the original structure: tree_unflatten would drop empty entries of lists
    # (blocks without adapters) and misalign the tree with the model's.
    leaves = iter(out)
    return tree_map(lambda _: next(leaves), tree)


def all_sum(x, group):
    if group.size() == 1:
        return x
    return mx.distributed.all_sum(x, group=group, stream=mx.cpu)
