"""A fast CPU BLAS for MLX on Linux from `pip install` alone.

The `mlx[cpu]` wheel links the reference BLAS (float32 matmul ~3-5 GFLOP/s here). libmlx
binds its `cblas_*` symbols when it is loaded, and the process's global symbol scope is
searched first: an optimized BLAS opened with RTLD_GLOBAL *before the first
`import mlx.core`* is the one MLX uses (~40 GFLOP/s on this 2-core machine). Opened after
that it changes nothing, so `import mlx_selfdistill` (the package's `__init__`) calls
`load()` before anything can import MLX, and warns once when MLX was there first.

The library is `ngsolve-openblas` from the registry: OpenBLAS built with DYNAMIC_ARCH (one
build for every x86-64 CPU, plain `cblas_*` names). Not `cmeel-openblas`: its kernels are
AVX-512 only and die with SIGILL on AVX2 CPUs (this machine's AMD EPYC); not
`scipy-openblas32`: its symbols are prefixed. OpenBLAS needs `libgfortran.so.5`, which a
machine without the distribution's packages lacks; the `mlx[cpu]` wheel ships one under a
hashed name. When the direct load fails, OpenBLAS is opened through a folder of symlinks in
the user's cache: its `$ORIGIN` run path then names that folder, where `libgfortran.so.5`
(and the `libquadmath` it needs) point at MLX's own copies. Nothing is copied or patched.

Settings (environment, read once at import):
  MLX_SELFDISTILL_BLAS=0|off|no|false   leave MLX on its bundled BLAS
  MLX_SELFDISTILL_BLAS=/path/libblas.so load that library instead
  MLX_SELFDISTILL_GEMV=0|off|no|false   no one-row shim (blas_gemv.py): every product to sgemm
  OPENBLAS_NUM_THREADS                  fixed BLAS threads (default: start at DEFAULT_THREADS,
                                        then blas_governor follows the free cores)

The sandbox workers never import this package (they run `worker.py` as a plain script),
so candidates run without OpenBLAS or its threads.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from . import blas_gemv

ENV = "MLX_SELFDISTILL_BLAS"
OFF = ("0", "off", "no", "false", "none")
THREAD_ENVS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
# Start on one thread: measured by benchmarks/blas_threads.py (results/blas_threads.json) on 2
# shared cores, OpenBLAS on 2 threads beside MLX's own thread sampled 28x and trained 5.6x
# slower than on 1 (its threads spin waiting for cores that other processes hold), while 1
# thread is 4x (sampling) and 11x (training) the reference BLAS. blas_governor raises it when
# cores are free. OPENBLAS_NUM_THREADS fixes it.
DEFAULT_THREADS: Optional[int] = 1


@dataclass
class BlasState:
    status: str  # loaded | disabled | too-late | unavailable | failed | not-linux
    path: Optional[str] = None  # the library MLX is bound to, when we loaded one
    via: Optional[str] = None  # direct | symlinks (libgfortran from the mlx[cpu] wheel)
    threads: Optional[int] = None
    config: Optional[str] = None  # openblas_get_config(): version, DYNAMIC_ARCH, core
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


_state: Optional[BlasState] = None
_handle = None


def state() -> BlasState:
    """What `load()` did in this process (loading now if it has not run)."""
    return _state if _state is not None else load()


def _site_dirs() -> list[Path]:
    return [Path(p) for p in sys.path if p and os.path.isdir(p)]


def find_openblas() -> Optional[Path]:
    """ngsolve-openblas's library, found without importing its package (which would load it
    and print to stderr on failure)."""
    for d in _site_dirs():
        hits = sorted(glob.glob(str(d / "ngsolve_openblas" / "libopenblas*.so*")))
        if hits:
            return Path(hits[0])
    return None


def _mlx_runtime_libs() -> dict[str, Path]:
    """The Fortran runtime that the mlx[cpu] wheel bundles (auditwheel-renamed), by the name
    OpenBLAS and libgfortran ask for."""
    for d in _site_dirs():
        libs = d / "mlx_cpu.libs"
        gfortran = sorted(libs.glob("libgfortran*.so.5*"))
        if gfortran:
            found = {"libgfortran.so.5": gfortran[0]}
            for q in libs.glob("libquadmath*.so*"):
                found[q.name] = q  # libgfortran needs it under its hashed name
            return found
    return {}


def _cache_dirs() -> list[Path]:
    import tempfile

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [Path(base) / "mlx-selfdistill" / "blas",  # a read-only home falls back to /tmp
            Path(tempfile.gettempdir()) / f"mlx-selfdistill-blas-{os.getuid()}"]


def _symlink_folder(lib: Path, runtime: dict[str, Path]) -> Path:
    """A folder named after the library's real path holding links to it and to its runtime."""
    import hashlib

    key = hashlib.sha256("\0".join([str(lib.resolve())] + [str(p) for p in runtime.values()]).encode())
    for root in _cache_dirs():
        folder = root / key.hexdigest()[:16]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            break
        except OSError:
            continue
    else:
        raise OSError(f"no writable folder for the BLAS links (tried {', '.join(map(str, _cache_dirs()))})")
    for name, target in [(lib.name, lib), *runtime.items()]:
        link = folder / name
        if os.path.realpath(link) != os.path.realpath(target):
            tmp = folder / f".{name}.{os.getpid()}"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.replace(tmp, link)  # atomic: another process may be loading through it
    return folder / lib.name


def open_library(lib: Path, via: str = "auto") -> tuple[object, str]:
    """(handle, how): the library opened RTLD_GLOBAL directly, or through the symlink folder
    when the system lacks libgfortran.so.5 (via="symlinks" forces that way)."""
    if via != "symlinks":
        try:
            return ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL), "direct"
        except OSError as exc:
            if "libgfortran" not in str(exc):
                raise
    runtime = _mlx_runtime_libs()
    if not runtime:
        raise OSError(f"{lib} needs libgfortran.so.5, and neither the system nor the mlx[cpu] wheel has one")
    return ctypes.CDLL(str(_symlink_folder(lib, runtime)), mode=ctypes.RTLD_GLOBAL), "symlinks"


def threads_chosen_by_user() -> Optional[str]:
    """The environment setting that fixes the BLAS threads (OpenBLAS read it when it
    loaded), or None."""
    return next((f"{k}={os.environ[k]}" for k in THREAD_ENVS if os.environ.get(k)), None)


def _threads_wanted() -> Optional[int]:
    return None if threads_chosen_by_user() else DEFAULT_THREADS


def set_threads(n: int) -> None:
    """Set the loaded OpenBLAS's threads; call only while MLX's stream is idle."""
    if _handle is None:
        raise RuntimeError("no OpenBLAS is loaded in this process")
    _handle.openblas_set_num_threads(ctypes.c_int(n))


def _configure(handle) -> tuple[Optional[int], Optional[str]]:
    threads = config = None
    want = _threads_wanted()
    try:
        if want is not None:
            handle.openblas_set_num_threads(ctypes.c_int(want))
        threads = int(handle.openblas_get_num_threads())
        handle.openblas_get_config.restype = ctypes.c_char_p
        config = handle.openblas_get_config().decode(errors="replace")
    except AttributeError:  # a user-chosen BLAS that is not OpenBLAS
        pass
    return threads, config


def load() -> BlasState:
    """Bind MLX's CPU backend to the fast BLAS, once per process. Never raises."""
    global _state, _handle
    if _state is not None:
        return _state
    setting = os.environ.get(ENV, "").strip()
    if not sys.platform.startswith("linux"):
        _state = BlasState("not-linux", detail="MLX uses Accelerate (macOS) or its own backend here")
    elif setting.lower() in OFF:
        _state = BlasState("disabled", detail=f"{ENV}={setting}")
    elif "mlx.core" in sys.modules:
        _state = BlasState("too-late", detail="mlx.core was imported before mlx_selfdistill")
        _warn_too_late()
    else:
        lib = Path(setting) if setting and setting.lower() != "auto" else find_openblas()
        if lib is None:
            _state = BlasState("unavailable", detail="ngsolve-openblas is not installed")
        else:
            blas_gemv.preload(_cache_dirs())  # first in the global scope: libmlx binds its sgemm
            try:
                _handle, via = open_library(lib)
                threads, config = _configure(_handle)
                _state = BlasState("loaded", path=str(lib), via=via, threads=threads, config=config)
                blas_gemv.bind(_handle)
            except OSError as exc:
                blas_gemv.unload()
                _state = BlasState("failed", path=str(lib), detail=str(exc))
    return _state


def _warn_too_late() -> None:
    import warnings

    warnings.warn("mlx was imported before mlx_selfdistill, so MLX keeps its slow reference BLAS: "
                  "import mlx_selfdistill first (or set MLX_SELFDISTILL_BLAS=off to silence this)",
                  RuntimeWarning, stacklevel=4)


def fix() -> Optional[str]:
    """One line telling the user how to get the fast BLAS, from what load() found."""
    s = state()
    return {
        "disabled": f"unset {ENV} (it turns the fast BLAS off)",
        "too-late": "import mlx_selfdistill before mlx (the BLAS must load before mlx.core)",
        "unavailable": "pip install ngsolve-openblas (a Linux dependency of mlx-selfdistill)",
        "failed": f"{s.detail}; set {ENV}=/path/to/libopenblas.so to use another OpenBLAS",
    }.get(s.status)


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def bound_library(symbol: str = "cblas_sgemm") -> Optional[str]:
    """The file whose `symbol` the global scope resolves to: the BLAS libmlx binds to when it
    loads after it. None when no global library has it (MLX then uses its bundled BLAS)."""
    if not sys.platform.startswith("linux"):
        return None
    process = ctypes.CDLL(None)  # dlopen(NULL): the global scope, in load order
    try:
        address = ctypes.cast(getattr(process, symbol), ctypes.c_void_p)
    except AttributeError:
        return None
    info = _DlInfo()
    if not process.dladdr(address, ctypes.byref(info)) or not info.dli_fname:
        return None
    found = os.path.realpath(info.dli_fname.decode())
    if found == blas_gemv.library_path() and _state is not None and _state.path:
        return os.path.realpath(_state.path)  # the shim hands every product to this library
    return found
