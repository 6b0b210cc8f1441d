"""One-row matrix products at the memory's speed: batch-1 decode on the CPU backend.

MLX's CPU matmul always calls `cblas_sgemm`. At batch 1 every layer's product has one row,
and OpenBLAS's x86-64 sgemm runs that shape at 7-14 GB/s of weights where its own `sgemv`
reads them at 17-28 (`one_row_matmul` in benchmarks/results/engine_speed.json); OpenBLAS
forwards gemm to gemv only in builds for other CPUs. Batch-1 decode reads every weight once
per token, so this is most of what a user chatting with the model waits for.

So blas.py loads a small shim (assets/one_row_gemm.c) into the global symbol scope *before*
OpenBLAS: libmlx then binds its `cblas_sgemm`, which sends one-row and one-column row-major
products to OpenBLAS's `cblas_sgemv` and everything else to OpenBLAS's `cblas_sgemm`. The shim
is compiled once per source with the system C compiler ($CC, cc, gcc or clang) into the
user's cache; without a compiler nothing changes but the speed, and `doctor` says so.

gemv sums in another order than gemm, so a row's bits would depend on whether it shares its
product with other rows. The sampling engine, whose samples must not depend on which other
rows share the batch (resume, `--max-batch`), runs inside `batch_invariant()`, where every
product goes to sgemm as before.

Setting: MLX_SELFDISTILL_GEMV=0|off|no|false leaves every product to sgemm.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import stat
import subprocess
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator, Optional

ENV = "MLX_SELFDISTILL_GEMV"
OFF = ("0", "off", "no", "false", "none")
SOURCE = "one_row_gemm.c"

_shim: Optional[ctypes.CDLL] = None
_status = "not-loaded"  # active | disabled | no-compiler | failed | not-loaded
_detail = ""


def source_text() -> str:
    return resources.files("mlx_selfdistill").joinpath("assets", SOURCE).read_text()


def compiler() -> Optional[list[str]]:
    """The C compiler command: $CC, else the first of cc, gcc, clang on PATH."""
    if os.environ.get("CC"):
        return os.environ["CC"].split()
    found = next((path for path in map(shutil.which, ("cc", "gcc", "clang")) if path), None)
    return [found] if found else None


def _private_folder(root: Path) -> Optional[Path]:
    """`root`/gemv, made if needed: a library is loaded from it, so it and its parent (whoever
    may write there could swap the folder) must be real folders of this user that nobody else
    may write. Ours but open to others (a 002 umask): closed here. Another's: None."""
    folder = root / "gemv"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in (root, folder):
            st = path.lstat()
            if st.st_uid != os.getuid() or not stat.S_ISDIR(st.st_mode):
                return None
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
    except OSError:
        return None
    return folder


def build(cache_roots: list[Path]) -> Path:
    """The compiled shim, from the cache when this source was built before. Raises OSError."""
    cc = compiler()
    if cc is None:
        raise FileNotFoundError("no C compiler (set CC, or install cc, gcc or clang)")
    text = source_text()
    # a home shared between machines may hold another CPU's build: the key names the machine
    key = hashlib.sha256("\0".join([text, platform.machine(), *cc]).encode()).hexdigest()[:16]
    folder = next((f for f in map(_private_folder, cache_roots) if f is not None), None)
    if folder is None:
        raise OSError(f"no private folder for the compiled shim (tried {', '.join(map(str, cache_roots))})")
    lib = folder / f"one_row_gemm-{key}.so"
    if lib.exists():
        return lib
    src, tmp = folder / f".{key}.{os.getpid()}.c", folder / f".{key}.{os.getpid()}.so"
    src.write_text(text)
    try:
        try:
            proc = subprocess.run([*cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(src)],
                                  capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            raise FileNotFoundError(f"C compiler {cc[0]!r} not found (set CC, or install cc, gcc or clang)") from None
        if proc.returncode != 0:
            said = (proc.stderr or proc.stdout).strip().splitlines()
            raise OSError(f"{cc[0]} failed: {said[-1] if said else f'exit status {proc.returncode}'}")
        os.replace(tmp, lib)  # atomic: another process may be loading it
        for old in folder.glob("one_row_gemm-*.so"):  # earlier sources' builds (mapped copies live on)
            if old != lib:
                old.unlink(missing_ok=True)
    finally:
        for f in (src, tmp):
            if f.exists():
                f.unlink()
    return lib


def preload(cache_roots: list[Path]) -> None:
    """Compile (once) and open the shim RTLD_GLOBAL; call before opening OpenBLAS so that
    libmlx finds the shim's `cblas_sgemm` first. Never raises."""
    global _shim, _status, _detail
    if os.environ.get(ENV, "").strip().lower() in OFF:
        _status, _detail = "disabled", f"{ENV}={os.environ[ENV]}"
        return
    try:
        _shim = ctypes.CDLL(str(build(cache_roots)), mode=ctypes.RTLD_GLOBAL)
    except FileNotFoundError as exc:
        _status, _detail = "no-compiler", str(exc)
    except (OSError, subprocess.SubprocessError) as exc:
        _status, _detail = "failed", str(exc)


def bind(blas_handle) -> None:
    """Point the preloaded shim at the BLAS that blas.py opened. Never raises."""
    global _status, _detail
    if _shim is None:
        return
    try:
        gemm, gemv = blas_handle.cblas_sgemm, blas_handle.cblas_sgemv
    except AttributeError as exc:  # a user-chosen library without them: take the shim out
        unload()
        _status, _detail = "failed", f"the BLAS lacks {exc}"
        return
    as_pointer = ctypes.c_void_p
    _shim.one_row_gemm_bind(ctypes.cast(gemm, as_pointer), ctypes.cast(gemv, as_pointer))
    _shim.one_row_gemm_forwarded.restype = ctypes.c_long
    _status, _detail = "active", ""


def unload() -> None:
    """Close the shim before anything binds to it (its products would have no target)."""
    global _shim
    if _shim is not None:
        import _ctypes

        _ctypes.dlclose(_shim._handle)
        _shim = None


def library_path() -> Optional[str]:
    return os.path.realpath(_shim._name) if _shim is not None else None


def forwarded() -> int:
    """How many products the shim sent to sgemv in this process (0 when it is not active)."""
    return int(_shim.one_row_gemm_forwarded()) if _status == "active" else 0


@contextmanager
def batch_invariant() -> Iterator[None]:
    """Every product goes to sgemm while inside: a row's bits do not depend on the number of
    rows in its product. Nests; a no-op when the shim is not active."""
    if _status != "active":
        yield
        return
    _shim.one_row_gemm_pause(1)
    try:
        yield
    finally:
        import mlx.core as mx

        mx.synchronize()  # products queued inside finish inside
        _shim.one_row_gemm_pause(-1)


def state() -> dict:
    return {"status": _status, "detail": _detail, "library": library_path()}
