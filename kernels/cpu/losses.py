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

import math

import numpy as np
from ..jit import njit

from ..config import JIT, JIT_INTERNAL
from .activations import stable_sigmoid

CROSS_ENTROPY = 0
CROSS_ENTROPY_PROBS = 1
BINARY_CROSS_ENTROPY = 2
MSE = 3
HINGE = 4


@njit(inline="always", **JIT)
def _row_logsumexp(z, i):
    c = z.shape[1]
    m = math.inf * -1.0
    for j in range(c):
        v = np.float64(z[i, j])
        if v > m:
            m = v
    s = 0.0
    for j in range(c):
        s += math.exp(np.float64(z[i, j]) - m)
    return m + math.log(s), m, s


@njit(**JIT_INTERNAL)
def cross_entropy_rows(dz, z, labels, r0, r1, n):
    """Σ over rows r0:r1 of logsumexp(z_i) - z_{i,y_i}; dz rows = (softmax(z_i) - onehot(y_i))/n."""
    c = z.shape[1]
    total = 0.0
    for i in range(r0, r1):
        lse, m, s = _row_logsumexp(z, i)
        y = labels[i]
        total += (m - np.float64(z[i, y])) + math.log(s)
        for j in range(c):
            dz[i, j] = (math.exp(np.float64(z[i, j]) - m) / s - (1.0 if j == y else 0.0)) / n
    return total


@njit(**JIT_INTERNAL)
def cross_entropy_probs_rows(dz, z, targets, r0, r1, n):
    """Σ over rows r0:r1 of Σ_c t_ic (logsumexp(z_i) - z_ic); dz rows = (softmax(z_i) Σ_c t_ic -
    t_i)/n."""
    c = z.shape[1]
    total = 0.0
    for i in range(r0, r1):
        lse, m, s = _row_logsumexp(z, i)
        tsum = 0.0
        for j in range(c):
            t = np.float64(targets[i, j])
            tsum += t
            if t != 0.0:
                total += t * ((m - np.float64(z[i, j])) + math.log(s))
        for j in range(c):
            dz[i, j] = (math.exp(np.float64(z[i, j]) - m) / s * tsum - np.float64(targets[i, j])) / n
    return total


@njit(**JIT_INTERNAL)
def binary_cross_entropy_rows(dz, z, targets, r0, r1, n):
    """Σ over rows r0:r1 and outputs of max(z,0) - z t + log1p(e^-|z|); dz rows = (σ(z) - t)/n."""
    c = z.shape[1]
    total = 0.0
    for i in range(r0, r1):
        for j in range(c):
            v = np.float64(z[i, j])
            t = np.float64(targets[i, j])
            total += max(v, 0.0) - v * t + math.log1p(math.exp(-abs(v)))
            dz[i, j] = (stable_sigmoid(v) - t) / n
    return total


@njit(**JIT_INTERNAL)
def mse_rows(dz, z, targets, r0, r1, n):
    """Σ over rows r0:r1 and outputs of (z - t)²; dz rows = 2 (z - t)/(n·C)."""
    c = z.shape[1]
    total = 0.0
    scale = 2.0 / (n * c)
    for i in range(r0, r1):
        for j in range(c):
            d = np.float64(z[i, j]) - np.float64(targets[i, j])
            total += d * d
            dz[i, j] = scale * d
    return total


@njit(**JIT_INTERNAL)
def hinge_rows(dz, z, labels, r0, r1, n):
    """Σ over rows r0:r1 of Σ_{j≠y} max(0, z_j - z_y + 1); dz rows as in the module docstring."""
    c = z.shape[1]
    total = 0.0
    for i in range(r0, r1):
        y = labels[i]
        zy = np.float64(z[i, y])
        positive = 0
        for j in range(c):
            if j == y:
                continue
            margin = np.float64(z[i, j]) - zy + 1.0
            if margin > 0.0:
                total += margin
                positive += 1
                dz[i, j] = 1.0 / n
            else:
                dz[i, j] = 0.0
        dz[i, y] = -positive / n
    return total


@njit(**JIT_INTERNAL)
def loss_rows(dz, z, labels, targets, code, r0, r1, n):
    """Rows r0:r1 of a batch of n rows: the sum of their loss terms (the mean loss is the sum over
    all rows divided by :func:`loss_denominator`) and their rows of dz, the gradient of the mean.
    ``labels`` (B,) serves the label losses, ``targets`` (B, C) the others (the unused one may be
    empty)."""
    if code == CROSS_ENTROPY:
        return cross_entropy_rows(dz, z, labels, r0, r1, n)
    if code == CROSS_ENTROPY_PROBS:
        return cross_entropy_probs_rows(dz, z, targets, r0, r1, n)
    if code == BINARY_CROSS_ENTROPY:
        return binary_cross_entropy_rows(dz, z, targets, r0, r1, n)
    if code == MSE:
        return mse_rows(dz, z, targets, r0, r1, n)
    return hinge_rows(dz, z, labels, r0, r1, n)


@njit(**JIT_INTERNAL)
def loss_denominator(code, n, c):
    """What the summed loss terms of n rows with c outputs are divided by: n·c for mse, else n."""
    return n * c if code == MSE else n


@njit(**JIT)
def cross_entropy_forward_backward(dz, z, labels):
    """Mean log-sum-exp cross-entropy for integer labels; see the module docstring."""
    n = z.shape[0]
    return cross_entropy_rows(dz, z, labels, 0, n, n) / n


@njit(**JIT)
def cross_entropy_probs_forward_backward(dz, z, targets):
    """Mean cross-entropy against probability rows; see the module docstring."""
    n = z.shape[0]
    return cross_entropy_probs_rows(dz, z, targets, 0, n, n) / n


@njit(**JIT)
def binary_cross_entropy_forward_backward(dz, z, targets):
    """Binary cross-entropy from logits, summed over outputs, mean over the batch."""
    n = z.shape[0]
    return binary_cross_entropy_rows(dz, z, targets, 0, n, n) / n


@njit(**JIT)
def mse_forward_backward(dz, z, targets):
    """Mean squared error over all elements."""
    n, c = z.shape
    return mse_rows(dz, z, targets, 0, n, n) / (n * c)


@njit(**JIT)
def hinge_forward_backward(dz, z, labels):
    """Multiclass hinge loss with margin 1 (seed 004); see the module docstring."""
    n = z.shape[0]
    return hinge_rows(dz, z, labels, 0, n, n) / n


@njit(**JIT)
def loss_forward_backward(dz, z, labels, targets, code):
    """Dispatch on the loss code; ``labels`` (B,) is used by the label losses, ``targets`` (B, C)
    by the others (the unused one may be an empty array). Returns the mean loss."""
    n, c = z.shape
    return loss_rows(dz, z, labels, targets, code, 0, n, n) / loss_denominator(code, n, c)
