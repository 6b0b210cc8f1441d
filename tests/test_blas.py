"""The fast-BLAS loader (blas.py): MLX bound to OpenBLAS from pip alone, before mlx.core loads.

Each case runs in a fresh interpreter: which BLAS libmlx binds to is decided once per process.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the loader is Linux-only")

PROBE = """
import json, os, sys, warnings
warnings.simplefilter("always")
{before}
import mlx_selfdistill
from mlx_selfdistill import blas
import mlx.core as mx, numpy as np
a = mx.random.normal((96, 64), key=mx.random.key(0)); b = mx.random.normal((64, 80), key=mx.random.key(1))
with mx.stream(mx.cpu):
    c = a @ b
err = float(np.abs(np.array(c, dtype=np.float64) - np.array(a, dtype=np.float64) @ np.array(b, dtype=np.float64)).max())
maps = open("/proc/self/maps").read()
print(json.dumps({{"state": blas.state().to_dict(), "bound": blas.bound_library(), "err": err,
                  "fix": blas.fix(), "mlx_gfortran": "mlx_cpu.libs/libgfortran" in maps}}))
"""


def probe(before: str = "", **env) -> tuple[dict, str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    full.pop("LD_PRELOAD", None)
    proc = subprocess.run([sys.executable, "-c", PROBE.format(before=before)], capture_output=True, text=True,
                          env=full, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def _have_openblas() -> bool:
    from mlx_selfdistill import blas

    return blas.find_openblas() is not None


needs_openblas = pytest.mark.skipif(not _have_openblas(), reason="ngsolve-openblas is not installed")


@needs_openblas
def test_import_binds_mlx_to_openblas():
    res, _ = probe()
    assert res["state"]["status"] == "loaded", res
    assert "openblas" in res["bound"] and res["bound"] == os.path.realpath(res["state"]["path"])
    assert res["state"]["threads"] >= 1 and "OpenBLAS" in res["state"]["config"]
    assert res["err"] < 1e-3  # MLX's matmul through OpenBLAS is right


@needs_openblas
def test_symlink_folder_supplies_mlx_wheels_gfortran(tmp_path):
    """The way a machine without libgfortran5 loads it: through links to the mlx[cpu] wheel's copy."""
    before = ("from mlx_selfdistill import blas as B; "
              "B.open_library(B.find_openblas(), via='symlinks')")
    res, _ = probe(before, MLX_SELFDISTILL_BLAS="off", XDG_CACHE_HOME=str(tmp_path))
    assert res["mlx_gfortran"], "libgfortran was not taken from the mlx[cpu] wheel"
    assert "openblas" in (res["bound"] or "") and res["err"] < 1e-3
    links = list(tmp_path.glob("mlx-selfdistill/blas/*/libgfortran.so.5"))
    assert links and os.path.islink(links[0])


def test_env_var_turns_it_off():
    res, _ = probe(MLX_SELFDISTILL_BLAS="off")
    assert res["state"]["status"] == "disabled" and res["bound"] is None
    assert "MLX_SELFDISTILL_BLAS" in res["fix"] and res["err"] < 1e-3


def test_mlx_imported_first_warns_once_with_the_fix():
    res, stderr = probe(before="import mlx.core")
    assert res["state"]["status"] == "too-late" and res["bound"] is None
    assert stderr.count("RuntimeWarning") == 1 and "import mlx_selfdistill first" in stderr
    assert "before mlx" in res["fix"]


@needs_openblas
def test_sandbox_workers_do_not_load_openblas():
    """Candidates run in workers started as plain scripts: no OpenBLAS, no BLAS threads there."""
    from mlx_selfdistill import blas
    from mlx_selfdistill.execution import SandboxPool

    assert blas.state().status == "loaded"  # this test process has it...
    with SandboxPool(workers=1, timeout_s=5) as pool:
        maps = open(f"/proc/{pool.workers[0].pid}/maps").read()
    assert "openblas" not in maps and "mlx" not in maps  # ...its worker does not


@needs_openblas
def test_bench_environment_names_the_blas_mlx_computes_with():
    """A CPU bench result records which BLAS ran it (the reference one is ~5x slower)."""
    code = ("import json, mlx_selfdistill\nfrom mlx_selfdistill.platform_info import environment\n"
            "from mlx_selfdistill.report import environment_summary\n"
            "env = environment(); print(json.dumps([env.get('cpu_blas'), environment_summary(env)]))")
    full = {**os.environ, "PYTHONPATH": str(ROOT)}
    full.pop("LD_PRELOAD", None)
    for setting, expected in ((None, "openblas"), ("off", "bundled reference")):
        env = full if setting is None else {**full, "MLX_SELFDISTILL_BLAS": setting}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                              env=env)
        assert proc.returncode == 0, proc.stderr
        blas_file, summary = json.loads(proc.stdout.strip().splitlines()[-1])
        assert expected in blas_file, blas_file
        assert f"BLAS {os.path.basename(blas_file)})" in summary, summary
