"""Dense (fully connected) layer on the GPU (twin of ``kernels/cpu/dense.py``).

Shapes: x (B, I), W (I, F), b (F,), pre (B, F), out (B, U) where F = U for ordinary activations and
F = U·k for maxout with k pieces.

Forward:   pre = x·W + b,          out = f(pre)
Backward:  dpre = dout ⊙ f'(pre),  dW = xᵀ·dpre,  db = Σ_rows dpre,  dx = dpre·Wᵀ

The matrix products are one tiled shared-memory kernel, C (M, N) = op(A)·op(B) with op the identity
or the transpose, compiled per tile geometry (``config.GEMM_TILE`` = BM, BN, BK, TM, TN), dtype,
pair of transposes and epilogue:

- a block owns a BM × BN tile of C and (BM/TM)·(BN/TN) threads; each thread accumulates a TM × TN
  register tile in the arrays' dtype (as BLAS does);
- the K dimension is walked in slices of BK: the block stages op(A)[BM, BK] and op(B)[BK, BN] in
  shared memory, loading along the operand's contiguous axis whatever the transpose (coalesced);
- the epilogue runs on the registers before the only store: plain C = acc, C = acc + b
  (``dense_forward``), or pre = acc + b together with out = f(pre) (``dense_activation_forward``),
  so the forward pass of a layer is a single launch (plus one for maxout's reduction over pieces).

Each thread owns its elements of C, so the weight gradient dW = xᵀ·dpre (a product with A
transposed, K = B the batch) has no write races and no atomics. The backward pass computes
dpre = dout ⊙ f'(pre) and db = Σ_rows dpre in one column-reduction kernel (2-D blocks of
``config.REDUCE_COLS`` columns × ``config.REDUCE_ROWS`` row-threads, tree in shared memory), then
dW and dx with the product kernel: three launches per layer.

With ``config.MATMUL`` set to ``"cublas"`` (or ``"auto"`` and a large enough product) the product
goes to cuBLAS (``cublas.matmul``) instead, and the epilogue becomes one elementwise launch after it
(``bias_activation_kernel``); the results are the same values, rounded the same way (the bias is
added to the product already rounded to the dtype, in both paths).
"""

import functools

import numpy as np
from numba import cuda

from . import _views, config, cublas
from ._reduce import column_block_sum_f64
from .activations import (
    MAXOUT,
    activation_backward,
    activation_derivative,
    activation_value,
    maxout_backward,
    maxout_forward,
)

EPILOGUE_STORE = 0
"""C = op(A)·op(B)."""
EPILOGUE_BIAS = 1
"""C = op(A)·op(B) + b (b broadcast over rows)."""
EPILOGUE_BIAS_ACTIVATION = 2
"""C = op(A)·op(B) + b and out = f(C) (the activation ``code`` with parameter ``alpha``)."""


@functools.lru_cache(maxsize=None)
def gemm_kernel(dtype, trans_a, trans_b, epilogue, tile):
    """The product kernel for one dtype, pair of transposes, epilogue and tile (BM, BN, BK, TM, TN).

    Kernel arguments: ``(c, out, a, b, bias, code, alpha)``; c (M, N) = op(a)·op(b) with
    op(a) (M, K) and op(b) (K, N); ``out`` (M, N) and ``bias`` (N,) are read or written only by the
    epilogues that use them (pass any array of the dtype otherwise). Launch with
    ``grid = (ceil(N / BN), ceil(M / BM))`` and ``block = (BN / TN, BM / TM)``.
    """
    dtype = np.dtype(dtype).type
    bm, bn, bk, tm, tn = (int(v) for v in tile)
    ntx = bn // tn
    nthreads = ntx * (bm // tm)
    trans_a = bool(trans_a)
    trans_b = bool(trans_b)
    epilogue = int(epilogue)
    zero = dtype(0)

    @cuda.jit(**config.CUDA_JIT)
    def gemm(c, out, a, b, bias, code, alpha):
        m = c.shape[0]
        n = c.shape[1]
        if trans_a:
            k_total = a.shape[0]
        else:
            k_total = a.shape[1]
        sa = cuda.shared.array((bk, bm), dtype)  # sa[kk, r] = op(a)[row0 + r, k0 + kk]
        sb = cuda.shared.array((bk, bn), dtype)  # sb[kk, q] = op(b)[k0 + kk, col0 + q]
        acc = cuda.local.array((tm, tn), dtype)
        ra = cuda.local.array(tm, dtype)
        rb = cuda.local.array(tn, dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * ntx + tx
        row0 = cuda.blockIdx.y * bm
        col0 = cuda.blockIdx.x * bn
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = zero
        for k0 in range(0, k_total, bk):
            for e in range(tid, bm * bk, nthreads):
                if trans_a:  # a is (K, M): consecutive threads walk a row of a
                    kk = e // bm
                    r = e - kk * bm
                else:  # a is (M, K): consecutive threads walk a row of a
                    r = e // bk
                    kk = e - r * bk
                gr = row0 + r
                gk = k0 + kk
                v = zero
                if gr < m and gk < k_total:
                    if trans_a:
                        v = a[gk, gr]
                    else:
                        v = a[gr, gk]
                sa[kk, r] = v
            for e in range(tid, bk * bn, nthreads):
                if trans_b:  # b is (N, K)
                    q = e // bk
                    kk = e - q * bk
                else:  # b is (K, N)
                    kk = e // bn
                    q = e - kk * bn
                gq = col0 + q
                gk = k0 + kk
                v = zero
                if gq < n and gk < k_total:
                    if trans_b:
                        v = b[gq, gk]
                    else:
                        v = b[gk, gq]
                sb[kk, q] = v
            cuda.syncthreads()
            for kk in range(bk):
                for i in range(tm):
                    ra[i] = sa[kk, ty * tm + i]
                for j in range(tn):
                    rb[j] = sb[kk, tx * tn + j]
                for i in range(tm):
                    for j in range(tn):
                        acc[i, j] += ra[i] * rb[j]
            cuda.syncthreads()
        for i in range(tm):
            r = row0 + ty * tm + i
            if r < m:
                for j in range(tn):
                    q = col0 + tx * tn + j
                    if q < n:
                        if epilogue == EPILOGUE_STORE:
                            c[r, q] = acc[i, j]
                        else:
                            v = acc[i, j] + bias[q]
                            c[r, q] = v
                            if epilogue == EPILOGUE_BIAS_ACTIVATION:
                                out[r, q] = activation_value(v, code, alpha)

    return gemm


def gemm(c, a, b, trans_a=False, trans_b=False, bias=None, out=None, code=0, alpha=0.0,
         stream=0):
    """c = op(a)·op(b) [+ bias] [and out = f(c)] with the tiled kernel (see the module docstring).

    The epilogue follows the arguments: no ``bias`` stores the product; ``bias`` adds it to every
    row; ``bias`` and ``out`` also write out = f(c) for the activation ``code`` (not maxout).
    c (M, N), a (M, K) or (K, M) when ``trans_a``, b (K, N) or (N, K) when ``trans_b``; device
    arrays of one float dtype.
    """
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    a_rows = a.shape[1] if trans_a else a.shape[0]
    b_shape = (b.shape[1], b.shape[0]) if trans_b else (b.shape[0], b.shape[1])
    if a_rows != m or b_shape != (k, n):
        raise ValueError(f"gemm: shapes c{tuple(c.shape)}, a{tuple(a.shape)}, b{tuple(b.shape)} do "
                         f"not fit trans_a={trans_a}, trans_b={trans_b}")
    if m == 0 or n == 0:
        return
    if bias is None:
        epilogue = EPILOGUE_STORE
        bias = _views.row(c, 0)  # unread: any 1-D array of the dtype
    else:
        epilogue = EPILOGUE_BIAS if out is None else EPILOGUE_BIAS_ACTIVATION
    if out is None:
        out = c
    if _use_cublas(m, n, k):
        cublas.matmul(c, a, b, trans_a, trans_b, stream=stream)
        if epilogue != EPILOGUE_STORE:
            blocks = config.blocks_for(m * n, config.THREADS_PER_BLOCK)
            bias_activation_kernel[blocks, config.THREADS_PER_BLOCK, stream](
                c, out, bias, code, alpha, epilogue == EPILOGUE_BIAS_ACTIVATION)
        return
    tile = tuple(config.GEMM_TILE)
    bm, bn, _, tm, tn = tile
    kernel = gemm_kernel(np.dtype(c.dtype), bool(trans_a), bool(trans_b), epilogue, tile)
    grid = (config.blocks_for(n, bn), config.blocks_for(m, bm))
    kernel[grid, (bn // tn, bm // tm), stream](c, out, a, b, bias, code, alpha)


def _use_cublas(m, n, k):
    """Whether ``config.MATMUL`` sends an (M, N, K) product to cuBLAS."""
    if config.MATMUL == "cublas":
        return True
    return (config.MATMUL == "auto" and m * n * k >= config.CUBLAS_MIN_MACS
            and cublas.cupy_status()[0] is not None)


@cuda.jit(**config.CUDA_JIT)
def bias_activation_kernel(c, out, bias, code, alpha, activate):
    """c[i, j] += bias[j] and, when ``activate``, out[i, j] = f(c[i, j]): the product kernel's
    epilogue after a cuBLAS product. c, out (M, N), bias (N,); one thread per element."""
    m, n = c.shape
    for e in range(cuda.grid(1), m * n, cuda.gridsize(1)):
        i = e // n
        j = e - i * n
        v = c[i, j] + bias[j]
        c[i, j] = v
        if activate:
            out[i, j] = activation_value(v, code, alpha)


@cuda.jit(**config.CUDA_JIT)
def bias_grad_kernel(db, dpre):
    """db[j] = Σ_rows dpre[:, j]; one block per REDUCE_COLS columns, threadIdx.y strides rows."""
    n, f = dpre.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    acc = 0.0
    if j < f:
        for i in range(cuda.threadIdx.y, n, cuda.blockDim.y):
            acc += dpre[i, j]
    total = column_block_sum_f64(acc)
    if j < f and cuda.threadIdx.y == 0:
        db[j] = total


@cuda.jit(**config.CUDA_JIT)
def activation_bias_grad_kernel(dpre, db, dout, pre, out, code, alpha):
    """dpre = dout ⊙ f'(pre) and db = Σ_rows dpre in one pass (blocks as bias_grad_kernel)."""
    n, f = pre.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    acc = 0.0
    if j < f:
        for i in range(cuda.threadIdx.y, n, cuda.blockDim.y):
            g = dout[i, j] * activation_derivative(pre[i, j], out[i, j], code, alpha)
            dpre[i, j] = g
            acc += dpre[i, j]
    total = column_block_sum_f64(acc)
    if j < f and cuda.threadIdx.y == 0:
        db[j] = total


def _column_grid(columns):
    cols, rows = config.REDUCE_COLS, config.REDUCE_ROWS
    return config.blocks_for(columns, cols), (cols, rows)


def dense_forward(pre, x, W, b, stream=0):
    """pre = x·W + b (no activation): one launch. pre (B, F), x (B, I), W (I, F), b (F,)."""
    gemm(pre, x, W, bias=b, stream=stream)


def dense_activation_forward(out, pre, x, W, b, code, alpha, pieces, stream=0):
    """pre = x·W + b and out = f(pre), fused in the product's epilogue (maxout: a second launch
    reduces the pieces). Shapes as in the module docstring."""
    if code == MAXOUT:
        gemm(pre, x, W, bias=b, stream=stream)
        maxout_forward(out, pre, pieces, stream=stream)
        return
    gemm(pre, x, W, bias=b, out=out, code=code, alpha=alpha, stream=stream)


def bias_grad(db, dpre, stream=0):
    """db = Σ_rows dpre; db (F,), dpre (B, F)."""
    grid, block = _column_grid(dpre.shape[1])
    bias_grad_kernel[grid, block, stream](db, dpre)


def dense_backward(dx, dW, db, dpre, x, W, need_dx, stream=0):
    """dW = xᵀ·dpre, db = Σ_rows dpre and, when ``need_dx``, dx = dpre·Wᵀ.

    dx (B, I), dW (I, F), db (F,), dpre (B, F), x (B, I), W (I, F).
    """
    bias_grad(db, dpre, stream=stream)
    gemm(dW, x, dpre, trans_a=True, stream=stream)
    if need_dx:
        gemm(dx, dpre, W, trans_b=True, stream=stream)


def activation_grad_into(dpre, dout, pre, out, code, alpha, pieces, stream=0):
    """dpre = dout ⊙ f'(pre) (or the maxout routing). dpre (B, F), dout/out (B, U), pre (B, F)."""
    if code == MAXOUT:
        maxout_backward(dpre, dout, pre, pieces, stream=stream)
        return
    activation_backward(dpre, dout, pre, out, code, alpha, stream=stream)


def dense_activation_backward(dx, dW, db, dpre, dout, x, W, pre, out, code, alpha, pieces, need_dx,
                              stream=0):
    """Backward of :func:`dense_activation_forward`: dpre with db in one kernel, then dW and
    (optionally) dx."""
    if code == MAXOUT:
        maxout_backward(dpre, dout, pre, pieces, stream=stream)
        dense_backward(dx, dW, db, dpre, x, W, need_dx, stream=stream)
        return
    grid, block = _column_grid(pre.shape[1])
    activation_bias_grad_kernel[grid, block, stream](dpre, db, dout, pre, out, code, alpha)
    gemm(dW, x, dpre, trans_a=True, stream=stream)
    if need_dx:
        gemm(dx, dpre, W, trans_b=True, stream=stream)
