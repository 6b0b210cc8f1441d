"""Convert a GGUF file once into a cached MLX model folder that plain `mlx_lm.load` reads.

The folder is keyed by the file's sha256 (exact: a fine-tune exported with the same name,
size and metadata still gets its own folder). Hashing costs ~1 s per GB, so the digest is
memoized per (path, size, mtime, inode) and a file is hashed once per version.
The cache lives in ~/.cache/mlx-selfdistill/gguf (or $MLX_SELFDISTILL_GGUF_CACHE); a folder
is built under a temporary name and renamed into place, so a killed conversion leaves no
half-written model behind. Tensors are dequantized one at a time into ~1 GB shards: the
float32 (CPU) folder streams each straight to disk (peak: one tensor), the re-quantized
(Metal) one goes through mx.quantize (peak: one shard plus one tensor).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from ..errors import UserError
from .gguf import GGUFFile, check_magic
from .gguf_tokenizer import write_tokenizer
from .precision import TensorPlan, on_cpu_backend, plan_tensor

CACHE_ENV = "MLX_SELFDISTILL_GGUF_CACHE"
SHARD_BYTES = 1 << 30
FORMAT_VERSION = 2  # bump when the folder layout or the conversion changes


def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "mlx-selfdistill", "gguf")
    return Path(root)


def content_key(path: str | os.PathLike) -> str:
    """sha256 of the file, memoized by (real path, size, mtime_ns, inode)."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    memo_dir = cache_root() / "sha256"
    memo = memo_dir / (hashlib.sha256(stamp.encode()).hexdigest()[:32] + ".txt")
    if memo.exists():
        return memo.read_text().strip()
    digest = file_sha256(path)
    memo_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(memo, digest)
    return digest


def file_sha256(path: str | os.PathLike, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def variant(cpu: bool) -> str:
    """The conversion flavour: float32 for the CPU backend, re-quantized MLX for Metal."""
    return "float32" if cpu else "mlxq"


def cached_model_folder(path: str | os.PathLike, *, cpu: bool | None = None, progress: bool = True) -> Path:
    """The MLX folder for this GGUF, converting it on first use."""
    cpu = on_cpu_backend() if cpu is None else cpu
    check_magic(path)  # a wrong file fails before it is hashed
    folder = cache_root() / f"{content_key(path)[:24]}-{variant(cpu)}-v{FORMAT_VERSION}"
    if (folder / "config.json").exists():
        return folder  # no need to parse the header: it took ~30 s for a 150k vocabulary here
    if progress:
        notice(f"{Path(path).name}: first use, converting it once to an MLX model in {folder}")
    convert(GGUFFile(path), folder, cpu=cpu, progress=progress)
    return folder


def convert(gguf: GGUFFile, out: str | os.PathLike, *, cpu: bool = True, progress: bool = True) -> dict:
    """Write an mlx_lm model folder for gguf at out (atomically). Returns a summary."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(out)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    start = time.perf_counter()
    try:
        config = gguf.config()
        plans = _write_weights(gguf, tmp, config, cpu=cpu, progress=progress)
        quantization = quantization_config(plans)
        if quantization:
            config["quantization"] = quantization
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        write_tokenizer(gguf, tmp)
        summary = {
            "source": str(gguf.path),
            "general.name": gguf.name,
            "architecture": gguf.architecture,
            "variant": variant(cpu),
            "seconds": round(time.perf_counter() - start, 2),
        }
        (tmp / "gguf_source.json").write_text(json.dumps(summary, indent=2))
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / "config.json").exists():  # another process did not win the race
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        return summary
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def quantization_config(plans: dict) -> dict | None:
    """mlx_lm's `quantization` entry: the commonest bits, plus each layer that differs
    (newer mlx_lm infers per-layer bits from the shapes; older ones read these entries)."""
    from collections import Counter

    bits = {name[: -len(".weight")]: p.bits for name, p in plans.items() if p.bits}
    if not bits:
        return None
    default = Counter(bits.values()).most_common(1)[0][0]
    config = {"group_size": TensorPlan.GROUP_SIZE, "bits": default}
    config.update({layer: {"group_size": TensorPlan.GROUP_SIZE, "bits": b} for layer, b in bits.items() if b != default})
    return config


def _write_weights(gguf: GGUFFile, folder: Path, config: dict, *, cpu: bool, progress: bool) -> dict:
    """Dequantize tensor by tensor into ~1 GB shards; returns each tensor's plan."""
    if cpu:
        return _write_float32(gguf, folder, progress=progress)
    return _write_requantized(gguf, folder, progress=progress)


def _write_float32(gguf: GGUFFile, folder: Path, *, progress: bool) -> dict:
    """The CPU backend's float32 folder, streamed: one dequantized tensor in memory at a time."""
    import numpy as np

    from .safetensors_stream import plan_shards, write_shard

    sources = {s.mlx_name: s for s in gguf.source_tensors()}
    shapes = gguf.mlx_shapes()
    shards = plan_shards(((name, shapes[name], np.float32) for name in sources), SHARD_BYTES)
    index, written = {}, 0
    with _progress_bar(f"converting {gguf.path.name}", sum(s.nbytes for s in sources.values()), progress) as advance:
        def produce(name):
            w = gguf.dequantized(sources[name].gguf_name)
            advance(sources[name].nbytes)
            return w

        for i, entries in enumerate(shards, 1):
            shard = f"model-{i:05d}.safetensors"
            written += write_shard(folder / shard, entries, produce, metadata={"format": "mlx"})
            index.update({name: shard for name, _, _ in entries})
    _write_index(folder, index, written)
    return {name: TensorPlan("float32") for name in sources}


def _write_index(folder: Path, index: dict, written: int) -> None:
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": written}, "weight_map": index}, indent=2))


def _write_requantized(gguf: GGUFFile, folder: Path, *, progress: bool) -> dict:
    """Metal's folder: each tensor re-quantized to MLX bits per its GGUF type (through mx)."""
    import mlx.core as mx

    sources = gguf.source_tensors()
    total = sum(s.nbytes for s in sources)
    shard, shard_bytes, index, plans, written = {}, 0, {}, {}, 0

    def flush():
        nonlocal shard, shard_bytes
        if shard:
            name = f"model-{len(set(index.values())) + 1:05d}.safetensors"
            mx.save_safetensors(str(folder / name), shard, metadata={"format": "mlx"})
            index.update({k: name for k in shard})
            shard, shard_bytes = {}, 0

    with _progress_bar(f"converting {gguf.path.name}", total, progress) as advance:
        for s in sources:
            w = gguf.dequantized(s.gguf_name)
            plan = plan_tensor(s.mlx_name, s.qtype, w.shape, cpu=False)
            plans[s.mlx_name] = plan
            out = plan.apply(s.mlx_name, mx.array(w))
            del w
            mx.eval(out)
            size = sum(a.nbytes for a in out.values())
            if shard_bytes + size > SHARD_BYTES:
                flush()  # before adding: a shard never holds two big embeddings at once
            shard.update(out)
            shard_bytes += size
            written += size
            advance(s.nbytes)
        flush()
    _write_index(folder, index, written)
    return plans


class _progress_bar:
    """A rich progress bar over source bytes on stderr (silent when progress is False)."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.label, self.total, self.enabled = label, total, enabled
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        from rich.errors import LiveError

        bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                       TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        try:
            bar.start()
        except LiveError:  # a caller's spinner owns the terminal; the first-use line said it
            return lambda n: None
        self.bar = bar
        task = bar.add_task(self.label, total=self.total)
        return lambda n: bar.advance(task, n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def _remove_stale_tmp(out: Path) -> None:
    """Delete the half-written folders of conversions whose process is gone (killed runs)."""
    for tmp in out.parent.glob(f".tmp-{out.name}-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def notice(message: str) -> None:
    """One log line on stderr (the CLI's messages go there too)."""
    print(message, file=sys.stderr, flush=True)


__all__ = ["cache_root", "cached_model_folder", "content_key", "convert", "file_sha256"]


def main(argv=None) -> int:
    """`python -m mlx_selfdistill.models.gguf_convert IN.gguf OUT_DIR`: convert to a chosen folder."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("gguf")
    parser.add_argument("out")
    parser.add_argument("--metal", action="store_true", help="re-quantize for Metal instead of float32")
    args = parser.parse_args(argv)
    try:
        summary = convert(GGUFFile(args.gguf), args.out, cpu=not args.metal)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
