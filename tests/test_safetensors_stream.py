"""The streaming safetensors writer the float32 GGUF conversion uses."""

import mlx.core as mx
import numpy as np
import pytest

from mlx_selfdistill.models.safetensors_stream import plan_shards, write_shard


def test_shards_fill_in_order_and_a_big_tensor_gets_its_own():
    entries = [("a", (10,), np.float32), ("b", (10,), np.float32), ("big", (100,), np.float32), ("c", (5,), np.float16)]
    shards = plan_shards(entries, shard_bytes=80)
    assert [[name for name, _, _ in shard] for shard in shards] == [["a", "b"], ["big"], ["c"]]


def test_written_shard_reads_back_in_mlx_exactly(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"w": rng.standard_normal((3, 5)).astype(np.float32), "n": rng.standard_normal(7).astype(np.float16)}
    entries = [("w", (3, 5), np.dtype(np.float32)), ("n", (7,), np.dtype(np.float16))]
    produced = []
    size = write_shard(tmp_path / "s.safetensors", entries, lambda name: produced.append(name) or arrays[name],
                       metadata={"format": "mlx"})
    assert produced == ["w", "n"] and size == 3 * 5 * 4 + 7 * 2  # each tensor asked for once, in order
    loaded = mx.load(str(tmp_path / "s.safetensors"))
    for name, want in arrays.items():
        assert loaded[name].dtype == {np.float32: mx.float32, np.float16: mx.float16}[want.dtype.type]
        np.testing.assert_array_equal(np.array(loaded[name]), want)
    with pytest.raises(ValueError, match="planned"):
        write_shard(tmp_path / "bad.safetensors", [("w", (5, 3), np.dtype(np.float32))], lambda name: arrays["w"])
