"""Write safetensors shards tensor by tensor, straight from numpy, with no whole shard in memory.

`mx.save_safetensors` needs every tensor of a shard alive as an mx.array, and turning a
numpy array into one copies it. When every tensor's shape and dtype are known in advance
(a GGUF's tensor table says them), the shard header can be written first and each tensor
streamed after it as soon as it is produced: peak memory is one tensor.
The format: an 8-byte little-endian header length, a JSON header of dtype/shape/byte
offsets per tensor (padded to 8 bytes), then the raw little-endian data.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16"}


def plan_shards(tensors: Iterable[tuple[str, tuple, np.dtype]], shard_bytes: int) -> list[list[tuple]]:
    """Group (name, shape, dtype) entries, in order, into shards of at most shard_bytes
    (a tensor larger than that gets a shard of its own)."""
    shards, current, size = [], [], 0
    for name, shape, dtype in tensors:
        n = math.prod(shape) * np.dtype(dtype).itemsize
        if current and size + n > shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append((name, tuple(shape), np.dtype(dtype)))
        size += n
    if current:
        shards.append(current)
    return shards


def write_shard(path: str | Path, entries: list[tuple], produce: Callable[[str], np.ndarray],
                metadata: dict | None = None) -> int:
    """Write one shard; produce(name) returns each tensor when its turn comes. Returns bytes written."""
    header, offset = {}, 0
    for name, shape, dtype in entries:
        n = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": _DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, dtype in entries:
            array = np.ascontiguousarray(produce(name), dtype=dtype)
            if array.shape != shape:
                raise ValueError(f"{name}: produced shape {array.shape}, planned {shape}")
            f.write(memoryview(array).cast("B"))
            del array
    return offset
