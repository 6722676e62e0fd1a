"""Dense (fully connected) layer with the activation fused around the matrix products.

Shapes: x (B, I), W (I, F), b (F,), pre (B, F), out (B, U) where F = U for ordinary activations and
F = U·k for maxout with k pieces. Matrix products go through BLAS (:func:`.blas.gemm`) or, for
the layers :func:`.tiles.suits_tiles` picks by the shape of W, the register tiles; the bias,
the activation and its derivative are applied in the same pass over the product. The ``*_block``
products compute one rectangle of their result, so threads can share a product without copies.

Forward:   pre = x·W + b,          out = f(pre)
Backward:  dpre = dout ⊙ f'(pre),  dW = xᵀ·dpre,  db = Σ_rows dpre,  dx = dpre·Wᵀ
"""

from ..config import JIT, JIT_INTERNAL
from ..jit import njit
from .activations import (
    MAXOUT,
    activation_backward,
    bias_activation_forward,
    maxout_backward,
    maxout_forward,
)
from .blas import gemm
from .tiles import suits_tiles, tiled_gemm


@njit(**JIT_INTERNAL)
def _layer_product(C, A, B, W, trans_a, trans_b):
    """C = op(A)·op(B), one block of a product of the layer whose weights are W (I, F): register
    tiles when :func:`.tiles.suits_tiles` (W's shape and dtype alone decide, so every block of a
    product, however the threads cut it, and every batch size take the same path), else BLAS."""
    if suits_tiles(W):
        tiled_gemm(C, A, B, trans_a, trans_b, False)
    else:
        gemm(C, A, B, trans_a, trans_b, False)


@njit(**JIT_INTERNAL)
def forward_product_block(pre, x, W, r0, r1, c0, c1):
    """pre[r0:r1, c0:c1] = x[r0:r1]·W[:, c0:c1]. pre (B, F), x (B, I), W (I, F)."""
    _layer_product(pre[r0:r1, c0:c1], x[r0:r1], W[:, c0:c1], W, False, False)


@njit(**JIT_INTERNAL)
def weight_grad_block(dW, x, dpre, i0, i1, c0, c1):
    """dW[i0:i1, c0:c1] = x[:, i0:i1]ᵀ·dpre[:, c0:c1]. dW (I, F), x (B, I), dpre (B, F)."""
    _layer_product(dW[i0:i1, c0:c1], x[:, i0:i1], dpre[:, c0:c1], dW, True, False)


@njit(**JIT_INTERNAL)
def input_grad_block(dx, dpre, W, r0, r1, i0, i1):
    """dx[r0:r1, i0:i1] = dpre[r0:r1]·W[i0:i1]ᵀ. dx (B, I), dpre (B, F), W (I, F)."""
    _layer_product(dx[r0:r1, i0:i1], dpre[r0:r1], W[i0:i1], W, False, True)


@njit(**JIT_INTERNAL)
def bias_grad_cols(db, dpre, c0, c1):
    """db[c0:c1] = Σ_rows dpre[:, c0:c1]. db (F,), dpre (B, F)."""
    width = c1 - c0
    d = db[c0:c1]
    for j in range(width):
        d[j] = 0.0
    for i in range(dpre.shape[0]):
        row = dpre[i, c0:c1]
        for j in range(width):
            d[j] += row[j]


@njit(**JIT)
def dense_forward(pre, x, W, b):
    """pre = x·W + b (no activation). pre (B, F), x (B, I), W (I, F), b (F,)."""
    n, f = pre.shape
    forward_product_block(pre, x, W, 0, n, 0, f)
    for i in range(n):
        for j in range(f):
            pre[i, j] += b[j]


@njit(**JIT)
def dense_activation_forward(out, pre, x, W, b, code, alpha, pieces):
    """pre = x·W + b and out = f(pre) in one pass after the product; see the module docstring."""
    if code == MAXOUT:
        dense_forward(pre, x, W, b)
        maxout_forward(out, pre, pieces)
        return
    forward_product_block(pre, x, W, 0, pre.shape[0], 0, pre.shape[1])
    bias_activation_forward(out, pre, b, code, alpha)


@njit(**JIT)
def dense_backward(dx, dW, db, dpre, x, W, need_dx):
    """dW = xᵀ·dpre, db = Σ_rows dpre and, when ``need_dx``, dx = dpre·Wᵀ.

    dx (B, I), dW (I, F), db (F,), dpre (B, F), x (B, I), W (I, F). The weight gradient is one
    product, so no two writers ever touch the same element.
    """
    n, f = dpre.shape
    weight_grad_block(dW, x, dpre, 0, x.shape[1], 0, f)
    bias_grad_cols(db, dpre, 0, f)
    if need_dx:
        input_grad_block(dx, dpre, W, 0, n, 0, x.shape[1])


@njit(**JIT)
def activation_grad_into(dpre, dout, pre, out, code, alpha, pieces):
    """dpre = dout ⊙ f'(pre) (or the maxout routing). dpre (B, F), dout/out (B, U), pre (B, F)."""
    if code == MAXOUT:
        maxout_backward(dpre, dout, pre, pieces)
        return
    activation_backward(dpre, dout, pre, out, code, alpha)


@njit(**JIT)
def dense_activation_backward(dx, dW, db, dpre, dout, x, W, pre, out, code, alpha, pieces, need_dx):
    """Backward of :func:`dense_activation_forward`: dpre, then dW, db and (optionally) dx."""
    activation_grad_into(dpre, dout, pre, out, code, alpha, pieces)
    dense_backward(dx, dW, db, dpre, x, W, need_dx)
