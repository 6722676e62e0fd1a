"""Dense (fully connected) layer with the activation fused around the matrix products.

Shapes: x (B, I), W (I, F), b (F,), pre (B, F), out (B, U) where F = U for ordinary activations and
F = U·k for maxout with k pieces. Matrix products go through BLAS (``np.dot`` with an output array);
the bias, the activation and its derivative are applied in the same pass over the product.

Forward:   pre = x·W + b,          out = f(pre)
Backward:  dpre = dout ⊙ f'(pre),  dW = xᵀ·dpre,  db = Σ_rows dpre,  dx = dpre·Wᵀ
"""

import numpy as np
from numba import njit

from ..config import JIT
from .activations import (MAXOUT, activation_backward, bias_activation_forward, maxout_backward,
                          maxout_forward)


@njit(**JIT)
def dense_forward(pre, x, W, b):
    """pre = x·W + b (no activation). pre (B, F), x (B, I), W (I, F), b (F,)."""
    np.dot(x, W, pre)
    n, f = pre.shape
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
    np.dot(x, W, pre)
    bias_activation_forward(out, pre, b, code, alpha)


@njit(**JIT)
def dense_backward(dx, dW, db, dpre, x, W, need_dx):
    """dW = xᵀ·dpre, db = Σ_rows dpre and, when ``need_dx``, dx = dpre·Wᵀ.

    dx (B, I), dW (I, F), db (F,), dpre (B, F), x (B, I), W (I, F). The weight gradient is one
    product, so no two writers ever touch the same element.
    """
    np.dot(x.T, dpre, dW)
    n, f = dpre.shape
    for j in range(f):
        db[j] = 0.0
    for i in range(n):
        for j in range(f):
            db[j] += dpre[i, j]
    if need_dx:
        np.dot(dpre, W.T, dx)


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
