"""The one-row shim (blas_gemv.py, assets/one_row_gemm.c): libmlx's `cblas_sgemm` sends one-row
and one-column products to OpenBLAS's sgemv, right for every transpose and leading dimension,
and never while the sampling engine runs (its samples must not depend on the rows beside them)."""

import ctypes
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from mlx_selfdistill import blas, blas_gemv

pytestmark = pytest.mark.skipif(blas_gemv.state()["status"] != "active",
                                reason=f"the one-row shim is not active here: {blas_gemv.state()}")

ROW_MAJOR, COL_MAJOR, N, T = 101, 102, 111, 112
P = ctypes.c_void_p


def _sgemm():
    """The `cblas_sgemm` the global scope resolves to: what libmlx bound."""
    fn = ctypes.CDLL(None).cblas_sgemm
    fn.restype = None
    return fn


def _call(order, ta, tb, m, n, k, alpha, beta, pad, c_fill, rng):
    """One sgemm call with leading dimensions `pad` larger than needed; (result, reference)."""
    rows_a, cols_a = (m, k) if ta == N else (k, m)
    rows_b, cols_b = (k, n) if tb == N else (n, k)
    if order == COL_MAJOR:  # column-major storage: leading dimension counts rows
        rows_a, cols_a, rows_b, cols_b = cols_a, rows_a, cols_b, rows_b
    a = rng.standard_normal((rows_a, cols_a + pad)).astype(np.float32)
    b = rng.standard_normal((rows_b, cols_b + pad)).astype(np.float32)
    c_rows, c_cols = (m, n) if order == ROW_MAJOR else (n, m)
    c = np.full((c_rows, c_cols + pad), c_fill, np.float32)
    c0 = c.astype(np.float64)
    _sgemm()(order, ta, tb, m, n, k, ctypes.c_float(alpha), P(a.ctypes.data), a.shape[1], P(b.ctypes.data),
             b.shape[1], ctypes.c_float(beta), P(c.ctypes.data), c.shape[1])
    A, B = a[:, :cols_a].astype(np.float64), b[:, :cols_b].astype(np.float64)
    if order == COL_MAJOR:
        A, B = A.T, B.T
    opA, opB = (A if ta == N else A.T), (B if tb == N else B.T)
    prior = c0[:, :c_cols] if order == ROW_MAJOR else c0[:, :c_cols].T
    want = alpha * opA @ opB + (beta * prior if beta else 0.0)
    got = c[:, :c_cols] if order == ROW_MAJOR else c[:, :c_cols].T
    return got, want


@pytest.mark.parametrize("ta", [N, T])
@pytest.mark.parametrize("tb", [N, T])
@pytest.mark.parametrize("shape", [(1, 37, 23), (29, 1, 23)], ids=["one-row", "one-column"])
@pytest.mark.parametrize("alpha,beta,c_fill", [(1.0, 0.0, np.nan), (0.5, 2.0, 1.5)],
                         ids=["beta0-over-nan", "alpha-beta"])
def test_forwarded_products_equal_the_product(ta, tb, shape, alpha, beta, c_fill):
    before = blas_gemv.forwarded()
    got, want = _call(ROW_MAJOR, ta, tb, *shape, alpha, beta, pad=3, c_fill=c_fill, rng=np.random.default_rng(0))
    assert blas_gemv.forwarded() == before + 1, "a one-row/one-column product did not go to sgemv"
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("order,shape", [(ROW_MAJOR, (4, 6, 5)), (COL_MAJOR, (1, 6, 5)), (ROW_MAJOR, (1, 6, 0))],
                         ids=["two-rows", "column-major", "k=0"])
def test_other_products_stay_on_sgemm(order, shape):
    before = blas_gemv.forwarded()
    got, want = _call(order, N, T, *shape, 1.0, 0.5, pad=2, c_fill=1.0, rng=np.random.default_rng(1))
    assert blas_gemv.forwarded() == before
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_mlx_one_row_matmul_uses_gemv_except_when_batch_invariant():
    import mlx.core as mx

    w = mx.random.normal((300, 200), key=mx.random.key(0))
    x = mx.random.normal((3, 200), key=mx.random.key(1))
    before = blas_gemv.forwarded()
    one = x[:1] @ w.T
    mx.eval(one)
    assert blas_gemv.forwarded() > before
    np.testing.assert_allclose(np.array(one), np.array(x[:1]) @ np.array(w).T, rtol=1e-4, atol=1e-4)
    with blas_gemv.batch_invariant():
        before = blas_gemv.forwarded()
        alone, three = x[:1] @ w.T, x @ w.T
        mx.eval(alone, three)
        assert blas_gemv.forwarded() == before
    # inside, a row's bits are the same whether it is multiplied alone or with others
    assert np.array_equal(np.array(alone)[0], np.array(three)[0])


@pytest.fixture(scope="module")
def tiny():
    from mlx_selfdistill.models import load_model

    return load_model("tiny")


def test_the_engine_never_forwards_and_bench_decode_does(tiny):
    """Batch-1 sampling (max_batch=1) stays on sgemm; bench's batch-1 decode goes to sgemv."""
    from mlx_selfdistill.bench import measure_speed
    from mlx_selfdistill.sampling.engine import Request, SamplingEngine
    from mlx_selfdistill.sampling.samplers import SamplingParams

    model, tokenizer = tiny
    prompt = tokenizer.encode("def add(a, b):")
    engine = SamplingEngine(model, tokenizer, SamplingParams(temperature=0.8, seed=3), max_tokens=12, max_batch=1)
    before = blas_gemv.forwarded()
    done = list(engine.run([Request(prompt, [0, 1], [11, 12])]))
    assert len(done) == 2 and blas_gemv.forwarded() == before
    measure_speed(model, prompt, 4)
    assert blas_gemv.forwarded() > before


def test_private_folder_closes_ours_and_refuses_others(tmp_path):
    root = tmp_path / "blas"
    (root / "gemv").mkdir(parents=True)
    for path in (root, root / "gemv"):
        path.chmod(0o777)  # ours, made under a 002 umask or opened since: closed to others
    assert blas_gemv._private_folder(root) == root / "gemv"
    assert all(not p.stat().st_mode & 0o022 for p in (root, root / "gemv"))
    (tmp_path / "link").symlink_to(root)
    assert blas_gemv._private_folder(tmp_path / "link") is None  # the parent is a link
    if os.getuid() == 0:  # another user's folder (only root can make one here)
        os.chown(root / "gemv", 65534, 65534)
        assert blas_gemv._private_folder(root) is None


PROBE = """
import json
import mlx_selfdistill
from mlx_selfdistill import blas, blas_gemv
import mlx.core as mx, numpy as np
x = mx.random.normal((1, 64), key=mx.random.key(0)); w = mx.random.normal((48, 64), key=mx.random.key(1))
err = float(np.abs(np.array(x @ w.T) - np.array(x) @ np.array(w).T).max())
print(json.dumps({"gemv": blas_gemv.state(), "bound": blas.bound_library(), "blas": blas.state().path, "err": err}))
"""


def _probe(tmp_path, **env) -> dict:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path), **env}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=full, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("env,status", [({"MLX_SELFDISTILL_GEMV": "off"}, "disabled"),
                                        ({"CC": "/nonexistent/cc"}, "no-compiler"),
                                        ({"CC": "false"}, "failed"),
                                        ({}, "active")])
def test_without_the_shim_mlx_still_binds_openblas(tmp_path, env, status):
    stale = tmp_path / "mlx-selfdistill" / "blas" / "gemv" / "one_row_gemm-0000000000000000.so"
    stale.parent.mkdir(parents=True, mode=0o700)
    stale.write_bytes(b"an earlier source's build")
    res = _probe(tmp_path, **env)
    assert res["gemv"]["status"] == status, res
    # doctor's library is OpenBLAS either way: the shim hands it every product
    assert res["bound"] == os.path.realpath(res["blas"]) and res["err"] < 1e-3
    built = list((tmp_path / "mlx-selfdistill" / "blas" / "gemv").glob("one_row_gemm-*.so"))
    if status == "active":
        assert len(built) == 1 and built[0] != stale  # built, and the earlier build removed
    else:
        assert built == [stale]
