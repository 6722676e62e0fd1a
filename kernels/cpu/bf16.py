"""bfloat16 operands of matrix products: rounding float32 to bfloat16, and the product of two
bfloat16 matrices accumulated in float32.

bfloat16 values are held as their uint16 bits: the sign, the 8 exponent bits and the top 7
mantissa bits of a float32, i.e. its high half. With u the 32 bits of a float32 x, rounding to
nearest with ties to even (the scalar rule ``rules.bf16_bits``) is

    bf16(x) = (u + 0x7FFF + ((u >> 16) & 1)) >> 16      when x is not NaN,
    bf16(x) = (u >> 16) | 0x0040                          when x is NaN.

Adding 0x7FFF carries into bit 16 exactly when the low half exceeds 0x8000, or equals it and bit
16 (the kept lowest bit) is 1, so a tie goes to the even neighbour. The carry may run on into the
exponent: float32s at or beyond the largest bfloat16 plus half its spacing become ±inf, as
rounding to nearest requires; ±inf, ±0 and subnormals (bfloat16 has float32's exponent range)
need no special case (subnormals are rounded too, where conversion instructions such as
VCVTNEPS2BF16 flush them to zero). A NaN keeps its sign and gets the quiet bit, so a payload held
only in the dropped bits cannot turn it into inf.

``gemm_bf16(C, A, B, trans_a, trans_b, accumulate)`` computes C = op(A)·op(B) (C += … when
``accumulate``), op(X) = X or Xᵀ, with C float32 (m, n), op(A) (m, k) and op(B) (k, n) bfloat16
bits (uint16), through oneDNN's ``dnnl_gemm_bf16bf16f32`` (products of bfloat16 pairs summed in
float32; see :mod:`.onednn`). The conventions are :func:`.blas.gemm`'s: every operand a 2-D view
whose last axis is contiguous, the row stride its leading dimension, so a thread multiplies a block
of larger matrices without a copy. The product runs in the calling thread only, so several
threads may each compute a block of one result at once. It returns oneDNN's status: 0 when done,
:data:`INVALID_ARGUMENTS` for operands of the wrong dtype or shape or with a strided last axis,
:data:`.onednn.UNAVAILABLE` where oneDNN is missing (check :func:`bf16_support` first).
"""

import numpy as np
from numba import types

from ..config import JIT
from ..jit import njit
from ..rules import bf16_bits
from .blas import leading_dimension
from .onednn import (
    BF16_INSTALL_HINT,
    GEMM_SYMBOL,
    OMP_GET_SYMBOL,
    OMP_SET_SYMBOL,
    UNAVAILABLE,
    bf16_support,
)

__all__ = ["round_to_bf16_block", "round_to_bf16_range", "bf16_to_float32_block", "gemm_bf16",
           "bf16_support", "BF16_INSTALL_HINT", "UNAVAILABLE", "INVALID_ARGUMENTS"]

INVALID_ARGUMENTS = 2  # dnnl_invalid_arguments

_GEMM = types.ExternalFunction(GEMM_SYMBOL, types.intc(
    types.char, types.char,                      # transa, transb ('N' or 'T')
    types.int64, types.int64, types.int64,       # M, N, K (row-major)
    types.float32, types.voidptr, types.int64,   # alpha, A, lda
    types.voidptr, types.int64,                  # B, ldb
    types.float32, types.voidptr, types.int64))  # beta, C, ldc
_OMP_GET_MAX_THREADS = types.ExternalFunction(OMP_GET_SYMBOL, types.intc())
_OMP_SET_NUM_THREADS = types.ExternalFunction(OMP_SET_SYMBOL, types.void(types.intc))

_N, _T = ord("N"), ord("T")
_U32 = np.uint32
_SHIFT = np.uint32(16)


@njit(**JIT)
def round_to_bf16_range(out, x, i0, i1):
    """out[i] = bf16(x[i]) for i in i0:i1. out (n,) uint16, x (n,) float32, both contiguous (a
    flat parameter vector, or one row of a block; the loop runs over views from index 0, so it
    vectorizes)."""
    u = x.view(np.uint32)[i0:i1]
    o = out[i0:i1]
    for j in range(i1 - i0):
        o[j] = bf16_bits(u[j])


@njit(**JIT)
def round_to_bf16_block(out, x, r0, r1, c0, c1):
    """out[i, j] = bf16(x[i, j]) for rows r0:r1 and columns c0:c1. out (B, F) uint16,
    x (B, F) float32, both C-contiguous: :func:`round_to_bf16_range` of each row."""
    for i in range(r0, r1):
        round_to_bf16_range(out[i], x[i], c0, c1)


@njit(**JIT)
def bf16_to_float32_block(out, bits, r0, r1, c0, c1):
    """out[i, j] = the float32 whose high half is bits[i, j] and low half 0 (exact) for rows
    r0:r1 and columns c0:c1. out (B, F) float32, bits (B, F) uint16.

    After :func:`round_to_bf16_block` this gives bfloat16 values held as float32. A float32
    product of those equals the bfloat16 product up to the order of the float32 sums (a product
    of two bfloat16 values is exact in float32 short of underflow), which serves products too
    thin for :func:`gemm_bf16` to win (a side of about 10, such as an output layer's)."""
    wide = out.view(np.uint32)
    width = c1 - c0
    for i in range(r0, r1):
        b = bits[i, c0:c1]
        o = wide[i, c0:c1]
        for j in range(width):
            o[j] = _U32(b[j]) << _SHIFT


@njit(inline="always", **JIT)
def _contiguous_rows(X):
    return X.shape[1] <= 1 or X.strides[1] == X.itemsize


@njit(**JIT)
def gemm_bf16(C, A, B, trans_a, trans_b, accumulate):
    """C = op(A)·op(B), or C += op(A)·op(B) when ``accumulate``: C float32 (m, n), A and B
    bfloat16 bits (uint16), op(A) (m, k), op(B) (k, n); see the module docstring. Returns 0 on
    success, else a nonzero status: :data:`INVALID_ARGUMENTS` for a dtype, shape or layout
    outside these conventions (C is then unchanged)."""
    m, n = C.shape
    k = A.shape[0] if trans_a else A.shape[1]
    if C.itemsize != 4 or A.itemsize != 2 or B.itemsize != 2:
        return INVALID_ARGUMENTS
    if (A.shape[1] if trans_a else A.shape[0]) != m:
        return INVALID_ARGUMENTS
    if (B.shape[1] if trans_b else B.shape[0]) != k or (B.shape[0] if trans_b else B.shape[1]) != n:
        return INVALID_ARGUMENTS
    if m == 0 or n == 0:
        return 0
    if k == 0:
        if not accumulate:
            for i in range(m):
                row = C[i]
                for j in range(n):
                    row[j] = 0.0
        return 0
    if not (_contiguous_rows(C) and _contiguous_rows(A) and _contiguous_rows(B)):
        return INVALID_ARGUMENTS
    threads = _OMP_GET_MAX_THREADS()
    if threads != 1:
        _OMP_SET_NUM_THREADS(1)
    status = _GEMM(_T if trans_a else _N, _T if trans_b else _N, m, n, k, np.float32(1.0),
                   A.ctypes, leading_dimension(A), B.ctypes, leading_dimension(B),
                   np.float32(1.0 if accumulate else 0.0), C.ctypes, leading_dimension(C))
    if threads != 1:
        _OMP_SET_NUM_THREADS(threads)
    return status
