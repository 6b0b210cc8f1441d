"""Facts about the machine a result was measured on, and the `doctor` diagnosis.

`environment()` is what a bench report records (chip, memory, OS, MLX version and
backend). `diagnose()` adds the checks a user wants before a long run: is the CPU
BLAS the slow reference one, which energy meters work here, is the default model there.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "tiny-coder"

# Shared-library names of optimized BLAS implementations (as they appear in /proc/self/maps).
_FAST_BLAS = re.compile(r"(openblas|libmkl|libblis|flexiblas|accelerate|armpl)", re.I)
# numpy's private OpenBLAS (64-bit-suffixed symbols): loaded beside MLX, never used by it.
_NOT_MLX_BLAS = re.compile(r"scipy_openblas|numpy\.libs|/numpy/", re.I)
# Below this float32 matmul speed the CPU BLAS is almost surely the reference one.
SLOW_BLAS_GFLOPS = 10.0


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def chip_name() -> str | None:
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                 capture_output=True, text=True, timeout=5)
            return out.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None
    return cpuinfo_model_name()


def cpuinfo_model_name(path: str | Path = "/proc/cpuinfo") -> str | None:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    # x86 says "model name" (its "model" is a number); ARM boards say "Model" or "Hardware"
    for key in ("model name", "Model", "Hardware"):
        if fields.get(key):
            return fields[key]
    return None


def memory_total_bytes() -> int | None:
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True,
                                 text=True, timeout=5)
            return int(out.stdout.strip())
        except (OSError, subprocess.SubprocessError, ValueError):
            return None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def mlx_backend() -> dict:
    """MLX version and the backend it will compute on: Metal, CUDA or CPU."""
    try:
        import mlx.core as mx
    except ImportError as exc:
        return {"mlx_version": None, "backend": None, "error": f"mlx not importable: {exc}"}
    if mx.metal.is_available():
        backend = "Metal"
    elif hasattr(mx, "cuda") and mx.cuda.is_available():
        backend = "CUDA"
    else:
        backend = "CPU"
    return {"mlx_version": getattr(mx, "__version__", None) or _version("mlx"),
            "backend": backend, "default_device": str(mx.default_device())}


def blas_fix() -> str:
    """How to get the fast BLAS, from what the loader (blas.py) found in this process."""
    from . import blas

    return blas.fix() or "pip install ngsolve-openblas, then import mlx_selfdistill before mlx"


def loaded_blas_libraries(maps_path: str | Path = "/proc/self/maps") -> list[str]:
    """Paths of BLAS/LAPACK-like shared libraries mapped into this process (Linux)."""
    try:
        text = Path(maps_path).read_text()
    except OSError:
        return []
    libs = []
    for line in text.splitlines():
        path = line.split()[-1] if line.split() else ""
        if path.startswith("/") and re.search(r"(blas|lapack|mkl|blis|armpl)", path, re.I):
            if path not in libs:
                libs.append(path)
    return libs


def matmul_gflops(size: int = 512, repeats: int = 3) -> float:
    """float32 matmul throughput on MLX's CPU device (the BLAS path)."""
    import mlx.core as mx

    a = mx.random.normal((size, size), key=mx.random.key(0))
    b = mx.random.normal((size, size), key=mx.random.key(1))
    with mx.stream(mx.cpu):
        mx.eval(a @ b)  # warm-up: loads the BLAS, allocates
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            mx.eval(a @ b)
            best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best / 1e9


def blas_check(maps_path: str | Path = "/proc/self/maps", gflops: float | None = None) -> dict:
    """Is the CPU BLAS the slow reference one? On macOS MLX uses Accelerate: fine.

    On Linux the measured GFLOP/s decides; /proc/self/maps only names the library
    (an optimized one mapped into the process, like numpy's own OpenBLAS, is not proof
    that MLX's matmul uses it). For this process (the default maps) the library is the one
    whose `cblas_sgemm` libmlx resolved, when blas.py loaded it.
    """
    from . import blas, blas_gemv

    if gflops is None:
        gflops = matmul_gflops()
    loader = blas.state().to_dict()
    if sys.platform == "darwin":
        return {"status": "ok", "library": "Accelerate", "gflops": gflops, "fix": None, "loader": loader}
    libs = loaded_blas_libraries(maps_path)
    fast = [p for p in libs if _FAST_BLAS.search(p) and not _NOT_MLX_BLAS.search(p)]
    slow = gflops < SLOW_BLAS_GFLOPS
    this_process = str(maps_path) == "/proc/self/maps"
    bound = blas.bound_library() if loader["status"] == "loaded" and this_process else None
    if bound:
        library = bound  # blas.py loaded it before mlx.core: the cblas_* libmlx resolved
    elif fast:
        library = fast[0]
    elif libs:
        library = next((p for p in libs if "blas" in p.lower()), libs[0])
    else:
        library = None
    return {
        "status": "slow-reference-blas" if slow else "ok",
        "library": library,
        "optimized": bool(fast or bound),
        "gflops": gflops,
        "fix": blas_fix() if slow else None,
        "loader": loader,
        "threads": blas_threads(),
        "one_row_gemv": blas_gemv.state(),
    }


def blas_threads() -> dict:
    """How the BLAS threads are chosen: "auto" (blas_governor follows the free cores) or
    "fixed" (by the user's environment, or no OpenBLAS to govern)."""
    from . import blas, blas_governor

    return {**blas_governor.summary(), "fixed_by": blas.threads_chosen_by_user()}


def environment() -> dict:
    """What a result was measured on: recorded in every bench report."""
    mem = memory_total_bytes()
    info = {
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "chip": chip_name(),
        "cpu_cores": os.cpu_count(),
        "memory_total_bytes": mem,
        "memory_total_gb": round(mem / 2**30, 1) if mem else None,
        "python": platform.python_version(),
        "mlx_lm_version": _version("mlx-lm"),
        "mlx_selfdistill_version": _version("mlx-selfdistill"),
    }
    info.update(mlx_backend())
    if info.get("backend") == "CPU" and sys.platform.startswith("linux"):
        info["cpu_blas"] = cpu_blas()
        from . import blas_gemv

        info["one_row_gemv"] = blas_gemv.state()["status"]  # batch-1 decode's speed depends on it
    return info


def cpu_blas() -> str:
    """The BLAS MLX's CPU matmuls go to (Linux): a pip OpenBLAS runs them ~5x faster than MLX's
    bundled reference one, so a CPU result means little without it."""
    from .blas import bound_library

    return bound_library() or "MLX's bundled reference BLAS"


def default_model_status(path: Path = DEFAULT_MODEL_DIR) -> dict:
    needed = ["config.json", "model.safetensors", "tokenizer.json"]
    exists = path.is_dir()
    missing = [n for n in needed if not (path / n).exists()] if exists else needed
    return {"path": str(path), "exists": exists and not missing, "missing": missing}


def diagnose(run_blas_check: bool = True, rows_model: str | None = None, run_rows_check: bool = True) -> dict:
    """Everything `mlx-selfdistill doctor` reports, as a plain dict. `rows_model`: the model
    whose decode rows are probed (default: the embedded tiny model; cached per machine)."""
    from .energy import available_meters
    from .metrics import memory_bandwidth_gbs

    env = environment()
    bandwidth, note = memory_bandwidth_gbs(env["chip"], env["cpu_cores"])
    meters = [m.to_dict() for m in available_meters()]
    usable = [m["name"] for m in meters if m["available"]]
    return {
        "environment": env,
        "memory_bandwidth_gbs": bandwidth,
        "memory_bandwidth_note": note,
        "blas": blas_check() if run_blas_check else None,
        "energy_meters": meters,
        "energy_meter": usable[0] if usable else "none",
        "default_model": default_model_status(),
        "decode_rows": _rows(rows_model) if run_rows_check else None,
    }


def _rows(model_spec: str | None) -> list[dict] | dict:
    from .errors import UserError
    from .sampling.rows import rows_report

    try:
        return rows_report(model_spec)
    except (UserError, OSError) as exc:
        return {"error": str(exc)}
