"""Matrix products on row-major blocks, straight into the BLAS that SciPy ships.

``gemm(C, A, B, trans_a, trans_b, accumulate)`` computes C = op(A)·op(B) (C += op(A)·op(B) when
``accumulate``) where op(X) is X or Xᵀ.
Every operand is a 2-D view whose last axis is contiguous (a C-ordered array or any block
``X[r0:r1, c0:c1]`` of one); the row stride is the leading dimension, so a thread can multiply
its own block of rows or columns of a larger matrix without a copy. Shapes: C (m, n), op(A)
(m, k), op(B) (k, n).

The call goes through Numba's ``numba_xxgemm`` helper (the routine ``np.dot`` uses inside
``@njit`` code), which forwards to ``scipy.linalg.cython_blas``. Row-major C = op(A)·op(B) is the
column-major product Cᵀ = op(B)ᵀ·op(A)ᵀ, so the operands are passed swapped. The kernels call it
from their own threads, one block each, so the BLAS must run single-threaded meanwhile (see
``fastmlp.engines.blas_threads``).
"""

import numpy as np
from numba import types

from ..config import JIT_INTERNAL
from ..jit import njit

_XXGEMM = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char,          # kind ('s' or 'd'), transa, transb
    types.intp, types.intp, types.intp,          # m, n, k (column-major)
    types.voidptr, types.voidptr, types.intp,    # alpha, a, lda
    types.voidptr, types.intp,                   # b, ldb
    types.voidptr, types.voidptr, types.intp))   # beta, c, ldc

_N, _T, _S, _D = ord("n"), ord("t"), ord("s"), ord("d")
# alpha = 1, then beta = 0 or 1: read-only constants, so a call allocates nothing
_SCALARS32 = np.array([1.0, 0.0, 1.0], dtype=np.float32)
_SCALARS64 = np.array([1.0, 0.0, 1.0], dtype=np.float64)


@njit(**JIT_INTERNAL)
def leading_dimension(X):
    """Row stride of the 2-D view X in elements (at least 1, as BLAS requires). Callers pass
    views whose last axis is contiguous."""
    if X.shape[0] > 1:
        return X.strides[0] // X.itemsize
    return max(X.shape[1], 1)


@njit(**JIT_INTERNAL)
def gemm(C, A, B, trans_a, trans_b, accumulate):
    """C = op(A)·op(B), or C += op(A)·op(B) when ``accumulate``; see the module docstring.
    Nothing is done for an empty C."""
    m, n = C.shape
    k = A.shape[0] if trans_a else A.shape[1]
    if m == 0 or n == 0:
        return
    beta = 2 if accumulate else 1
    kind = _S if C.itemsize == 4 else _D
    ta = _T if trans_b else _N
    tb = _T if trans_a else _N
    if C.itemsize == 4:
        _XXGEMM(kind, ta, tb, n, m, k, _SCALARS32.ctypes, B.ctypes, leading_dimension(B),
                A.ctypes, leading_dimension(A), _SCALARS32[beta:].ctypes, C.ctypes,
                leading_dimension(C))
    else:
        _XXGEMM(kind, ta, tb, n, m, k, _SCALARS64.ctypes, B.ctypes, leading_dimension(B),
                A.ctypes, leading_dimension(A), _SCALARS64[beta:].ctypes, C.ctypes,
                leading_dimension(C))
