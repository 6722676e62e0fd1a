"""Inverted dropout on a (B, U) batch.

Training: keep ~ Bernoulli(1 - p) per element, mask = keep / (1 - p), out = x ⊙ mask;
backward dx = dout ⊙ mask. Evaluation is the identity (the caller skips the layer).
Element (i, j) draws uniform(key, i·U + j) from :mod:`.random`, so the mask is reproducible.
"""

from numba import njit

from ..config import JIT
from .random import uniform


@njit(**JIT)
def dropout_mask(mask, p, key):
    """mask[i, j] = 1/(1-p) where uniform(key, i·U + j) ≥ p, else 0. mask (B, U), 0 ≤ p < 1."""
    n, u = mask.shape
    scale = 1.0 / (1.0 - p)
    for i in range(n):
        for j in range(u):
            mask[i, j] = scale if uniform(key, i * u + j) >= p else 0.0


@njit(**JIT)
def dropout_forward(out, mask, x, p, key):
    """Draws the mask (see :func:`dropout_mask`) and writes out = x ⊙ mask; out may be x."""
    dropout_mask(mask, p, key)
    n, u = x.shape
    for i in range(n):
        for j in range(u):
            out[i, j] = x[i, j] * mask[i, j]


@njit(**JIT)
def dropout_backward(dx, dout, mask):
    """dx = dout ⊙ mask; all (B, U); dx may be dout."""
    n, u = dout.shape
    for i in range(n):
        for j in range(u):
            dx[i, j] = dout[i, j] * mask[i, j]
