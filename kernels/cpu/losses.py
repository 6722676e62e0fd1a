"""Losses with their gradients. Each kernel returns the mean over the batch of the per-sample loss
(accumulated in float64) and writes the gradient of that mean with respect to the network output.

Shapes: z, dz (B, C); integer labels (B,) int64; targets (B, C).

- cross_entropy (labels):  ℓ_i = logsumexp(z_i) - z_{i,y_i}, the row max subtracted first;
  dz = (softmax(z) - onehot(y)) / B. Finite for any finite logits (±1e4 included).
- cross_entropy (probability rows t):  ℓ_i = Σ_c t_ic (logsumexp(z_i) - z_ic);
  dz = (softmax(z) Σ_c t_ic - t) / B.
- binary_cross_entropy from logits, per element:  max(z,0) - z t + log1p(e^-|z|), summed over the
  C outputs of a sample;  dz = (σ(z) - t) / B.
- mse:  mean over all B·C elements of (z - t)²;  dz = 2 (z - t) / (B·C).
- hinge (multiclass SVM, margin 1):  ℓ_i = Σ_{j≠y_i} max(0, z_ij - z_iy_i + 1);  dz_ij = [margin>0]/B
  for j ≠ y_i and dz_iy_i = -(number of positive margins)/B.
"""

import numpy as np

from ..config import JIT, JIT_INTERNAL
from ..contract import (
    BINARY_CROSS_ENTROPY,
    CROSS_ENTROPY,
    CROSS_ENTROPY_PROBS,
    HINGE,
    MSE,
)
from ..jit import njit
from ..rules import loss_row


@njit(**JIT_INTERNAL)
def loss_rows(dz, z, labels, targets, code, r0, r1, n):
    """Rows r0:r1 of a batch of n rows: the sum of their loss terms (the mean loss is the sum over
    all rows divided by :func:`loss_denominator`) and their rows of dz, the gradient of the mean
    (:func:`fastmlp.kernels.rules.loss_row`). ``labels`` (B,) serves the label losses,
    ``targets`` (B, C) the others (the unused one may be empty)."""
    total = 0.0
    for i in range(r0, r1):
        total += loss_row(dz, z, labels, targets, code, i, n)
    return total


@njit(**JIT_INTERNAL)
def loss_denominator(code, n, c):
    """What the summed loss terms of n rows with c outputs are divided by: n·c for mse, else n."""
    return n * c if code == MSE else n


@njit(**JIT)
def loss_forward_backward(dz, z, labels, targets, code):
    """The mean loss of the batch and its gradient dz (B, C); ``labels`` (B,) is used by the label
    losses, ``targets`` (B, C) by the others (the unused one may be an empty array)."""
    n, c = z.shape
    return loss_rows(dz, z, labels, targets, code, 0, n, n) / loss_denominator(code, n, c)


@njit(**JIT)
def cross_entropy_forward_backward(dz, z, labels):
    """Mean log-sum-exp cross-entropy for integer labels; see the module docstring."""
    return loss_forward_backward(dz, z, labels, z[:0], CROSS_ENTROPY)


@njit(**JIT)
def cross_entropy_probs_forward_backward(dz, z, targets):
    """Mean cross-entropy against probability rows; see the module docstring."""
    return loss_forward_backward(dz, z, np.zeros(0, dtype=np.int64), targets, CROSS_ENTROPY_PROBS)


@njit(**JIT)
def binary_cross_entropy_forward_backward(dz, z, targets):
    """Binary cross-entropy from logits, summed over outputs, mean over the batch."""
    return loss_forward_backward(dz, z, np.zeros(0, dtype=np.int64), targets, BINARY_CROSS_ENTROPY)


@njit(**JIT)
def mse_forward_backward(dz, z, targets):
    """Mean squared error over all elements."""
    return loss_forward_backward(dz, z, np.zeros(0, dtype=np.int64), targets, MSE)


@njit(**JIT)
def hinge_forward_backward(dz, z, labels):
    """Multiclass hinge loss with margin 1 (seed 004); see the module docstring."""
    return loss_forward_backward(dz, z, labels, z[:0], HINGE)
