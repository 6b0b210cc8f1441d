"""Sampling across machines under `mlx.launch`: each rank samples its share of the
problems into a local shard file; rank 0 gathers every shard over the MLX group and
merges it into the output file.

Shards live next to the output on each rank's own disk, so a killed multi-machine run
resumes from them; nothing assumes a shared filesystem.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import mlx.core as mx
import numpy as np

LAUNCH_ENV = ("MLX_RANK", "OMPI_COMM_WORLD_RANK")


def launched_group():
    """The MLX group when started by mlx.launch (or mpirun) with >1 process, else None."""
    if not any(k in os.environ for k in LAUNCH_ENV):
        return None
    group = mx.distributed.init()
    return group if group.size() > 1 else None


def shard_path(out_path: os.PathLike, rank: int, size: int) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.name}.rank{rank}-of-{size}")


def _all_gather_bytes(payload: bytes, group) -> list[bytes]:
    """Every rank's payload, in rank order (collectives need equal shapes: pad to the longest)."""
    sizes = mx.distributed.all_gather(mx.array([len(payload)], dtype=mx.int64), group=group, stream=mx.cpu)
    sizes = sizes.tolist()
    longest = max(sizes)
    if longest == 0:
        return [b""] * len(sizes)
    buf = mx.array(np.frombuffer(payload.ljust(longest, b"\0"), dtype=np.uint8))
    gathered = mx.distributed.all_gather(buf, group=group, stream=mx.cpu)
    raw = np.asarray(gathered).tobytes()
    return [raw[i * longest: i * longest + n] for i, n in enumerate(sizes)]


def barrier(group) -> None:
    mx.eval(mx.distributed.all_sum(mx.array([1]), group=group, stream=mx.cpu))


def gather_records(records: list[dict], group) -> Optional[list[dict]]:
    """All ranks' records on rank 0 (None on the others)."""
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    parts = _all_gather_bytes(payload, group)
    if group.rank() != 0:
        return None
    out = []
    for part in parts:
        out.extend(json.loads(line) for line in part.decode().splitlines() if line.strip())
    return out
