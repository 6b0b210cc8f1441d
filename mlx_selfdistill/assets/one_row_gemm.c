/* cblas_sgemm for MLX's CPU backend that sends one-row (or one-column) products to sgemv.
 *
 * Why and how it is loaded: mlx_selfdistill/blas_gemv.py. Only row-major calls are rerouted
 * (MLX's); everything else, and everything while paused, goes to the real sgemm unchanged.
 */
#include <stddef.h>

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int,
                         float, float *, int);
typedef void (*sgemv_fn)(int, int, int, int, float, const float *, int, const float *, int, float,
                         float *, int);

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

static sgemm_fn real_sgemm;
static sgemv_fn real_sgemv;
static int paused;      /* > 0: callers that need bits independent of the row count */
static long forwarded;  /* products sent to sgemv, for tests and doctor */

void one_row_gemm_bind(sgemm_fn gemm, sgemv_fn gemv) {
    real_sgemm = gemm;
    real_sgemv = gemv;
}

void one_row_gemm_pause(int delta) { __atomic_add_fetch(&paused, delta, __ATOMIC_SEQ_CST); }

long one_row_gemm_forwarded(void) { return __atomic_load_n(&forwarded, __ATOMIC_SEQ_CST); }

/* With beta == 0, C may be uninitialized memory. OpenBLAS 0.3.33's gemv then writes y without
 * reading it, but a BLAS that scales y by 0 would keep a NaN it happened to hold: clear it. */
static void clear(float *y, int n, int inc) {
    for (int i = 0; i < n; i++) y[(size_t)i * inc] = 0.0f;
}

void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc) {
    int one_row = m == 1, one_col = n == 1 && m > 1;
    if (order != ROW_MAJOR || k < 1 || !(one_row || one_col) ||
        __atomic_load_n(&paused, __ATOMIC_SEQ_CST) > 0) {
        real_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    __atomic_add_fetch(&forwarded, 1, __ATOMIC_RELAXED);
    if (one_row) {
        /* c (1 x n) = a's row (k) times op(b) (k x n): y = op(b)^T x */
        int incx = ta == NO_TRANS ? 1 : lda;
        if (beta == 0.0f) clear(c, n, 1);
        if (tb == NO_TRANS)  /* b is k x n */
            real_sgemv(ROW_MAJOR, TRANS, k, n, alpha, b, ldb, a, incx, beta, c, 1);
        else                 /* b is n x k */
            real_sgemv(ROW_MAJOR, NO_TRANS, n, k, alpha, b, ldb, a, incx, beta, c, 1);
    } else {
        /* c (m x 1, stride ldc) = op(a) (m x k) times b's column (k) */
        int incx = tb == NO_TRANS ? ldb : 1;
        if (beta == 0.0f) clear(c, m, ldc);
        if (ta == NO_TRANS)  /* a is m x k */
            real_sgemv(ROW_MAJOR, NO_TRANS, m, k, alpha, a, lda, b, incx, beta, c, ldc);
        else                 /* a is k x m */
            real_sgemv(ROW_MAJOR, TRANS, k, m, alpha, a, lda, b, incx, beta, c, ldc);
    }
}
