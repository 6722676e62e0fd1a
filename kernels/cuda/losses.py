"""Losses with their gradients on the GPU (twin of ``kernels/cpu/losses.py``).

Each launcher computes the mean over the batch of the per-sample loss (accumulated in float64) and
writes the gradient of that mean with respect to the network output into ``dz``.

Shapes: z, dz (B, C); integer labels (B,) int64; targets (B, C).

- cross_entropy (labels):  ℓ_i = logsumexp(z_i) - z_{i,y_i}, the row max subtracted first;
  dz = (softmax(z) - onehot(y)) / B. Finite for any finite logits (±1e4 included).
- cross_entropy (probability rows t):  ℓ_i = Σ_c t_ic (logsumexp(z_i) - z_ic);
  dz = (softmax(z) Σ_c t_ic - t) / B.
- binary_cross_entropy from logits, per element:  max(z,0) - z t + log1p(e^-|z|), summed over the
  C outputs of a sample;  dz = (σ(z) - t) / B.
- mse:  mean over all B·C elements of (z - t)²;  dz = 2 (z - t) / (B·C).
- hinge (multiclass SVM, margin 1):  ℓ_i = Σ_{j≠y_i} max(0, z_ij - z_iy_i + 1);
  dz_ij = [margin>0]/B for j ≠ y_i and dz_iy_i = -(number of positive margins)/B.

Parallel layout: one thread per row (its log-sum-exp, its loss and its gradient row, in float64);
each block sums its rows' losses with a tree in shared memory into one partial per block, and a
single-block kernel adds the partials in a fixed order and divides by B (B·C for mse). No atomics:
the loss is the same from run to run.

Launcher results: with ``out=None`` the launcher returns the mean loss as a Python float (one
device-to-host copy, like the CPU kernel's return value). With a device array ``out`` (1,) float64
it writes the mean to out[0] (adds it when ``accumulate``) and returns None, so a training loop can
keep every value on the device. ``partials`` optionally supplies the per-block workspace
(float64, at least ``partials_size(B)`` entries) to avoid an allocation per call.
"""

import math

import numpy as np
from numba import cuda

from ..contract import (
    BINARY_CROSS_ENTROPY,
    CROSS_ENTROPY,
    CROSS_ENTROPY_PROBS,
    HINGE,
    MSE,
)
from . import config
from ._reduce import block_sum_f64, finish_sum, partials_for
from .activations import stable_sigmoid

__all__ = ["CROSS_ENTROPY", "CROSS_ENTROPY_PROBS", "BINARY_CROSS_ENTROPY", "MSE", "HINGE",
           "partials_size", "cross_entropy_forward_backward",
           "cross_entropy_probs_forward_backward", "binary_cross_entropy_forward_backward",
           "mse_forward_backward", "hinge_forward_backward", "loss_forward_backward"]


@cuda.jit(device=True)
def row_logsumexp(z, i):
    """(logsumexp z_i, max z_i, Σ_j exp(z_ij - max)) of row i, in float64."""
    c = z.shape[1]
    m = -math.inf
    for j in range(c):
        v = np.float64(z[i, j])
        if v > m:
            m = v
    s = 0.0
    for j in range(c):
        s += math.exp(np.float64(z[i, j]) - m)
    return m + math.log(s), m, s


@cuda.jit(device=True)
def _store_block_partial(partials, value):
    """partials[blockIdx.x] = Σ value over the block's threads."""
    total = block_sum_f64(value)
    if cuda.threadIdx.x == 0:
        partials[cuda.blockIdx.x] = total


@cuda.jit(**config.CUDA_JIT)
def cross_entropy_kernel(dz, z, labels, partials):
    """Row i: loss lse - z_iy and dz_i = (softmax - onehot)/B; block partial sums of the loss."""
    n, c = z.shape
    i = cuda.grid(1)
    row = 0.0
    if i < n:
        lse, m, s = row_logsumexp(z, i)
        y = labels[i]
        row = (m - np.float64(z[i, y])) + math.log(s)
        for j in range(c):
            dz[i, j] = (math.exp(np.float64(z[i, j]) - m) / s - (1.0 if j == y else 0.0)) / n
    _store_block_partial(partials, row)


@cuda.jit(**config.CUDA_JIT)
def cross_entropy_probs_kernel(dz, z, targets, partials):
    """Row i against the probability row t_i; block partial sums of the loss."""
    n, c = z.shape
    i = cuda.grid(1)
    row = 0.0
    if i < n:
        lse, m, s = row_logsumexp(z, i)
        tsum = 0.0
        for j in range(c):
            t = np.float64(targets[i, j])
            tsum += t
            if t != 0.0:
                row += t * ((m - np.float64(z[i, j])) + math.log(s))
        for j in range(c):
            dz[i, j] = (math.exp(np.float64(z[i, j]) - m) / s * tsum
                        - np.float64(targets[i, j])) / n
    _store_block_partial(partials, row)


@cuda.jit(**config.CUDA_JIT)
def binary_cross_entropy_kernel(dz, z, targets, partials):
    """Row i: Σ_j max(z,0) - z t + log1p(e^-|z|) and dz = (σ(z) - t)/B."""
    n, c = z.shape
    i = cuda.grid(1)
    row = 0.0
    if i < n:
        for j in range(c):
            v = np.float64(z[i, j])
            t = np.float64(targets[i, j])
            # max(v, 0.0) spelled out: numba's built-in CUDA target cannot type max()
            row += (0.0 if 0.0 > v else v) - v * t + math.log1p(math.exp(-abs(v)))
            dz[i, j] = (stable_sigmoid(v) - t) / n
    _store_block_partial(partials, row)


@cuda.jit(**config.CUDA_JIT)
def mse_kernel(dz, z, targets, partials):
    """Row i: Σ_j (z - t)² and dz = 2 (z - t)/(B·C)."""
    n, c = z.shape
    i = cuda.grid(1)
    row = 0.0
    if i < n:
        scale = 2.0 / (n * c)
        for j in range(c):
            d = np.float64(z[i, j]) - np.float64(targets[i, j])
            row += d * d
            dz[i, j] = scale * d
    _store_block_partial(partials, row)


@cuda.jit(**config.CUDA_JIT)
def hinge_kernel(dz, z, labels, partials):
    """Row i: Σ_{j≠y} max(0, z_j - z_y + 1) and its subgradient / B."""
    n, c = z.shape
    i = cuda.grid(1)
    row = 0.0
    if i < n:
        y = labels[i]
        zy = np.float64(z[i, y])
        positive = 0
        for j in range(c):
            if j == y:
                continue
            margin = np.float64(z[i, j]) - zy + 1.0
            if margin > 0.0:
                row += margin
                positive += 1
                dz[i, j] = 1.0 / n
            else:
                dz[i, j] = 0.0
        dz[i, y] = -positive / n
    _store_block_partial(partials, row)


def partials_size(rows):
    """Entries of the per-block workspace a loss over ``rows`` rows needs (current geometry)."""
    return config.blocks_for(rows, config.THREADS_PER_BLOCK)


def _launch(kernel, dz, z, aux, divisor, out, accumulate, partials, stream):
    n = z.shape[0]
    tpb = config.THREADS_PER_BLOCK
    blocks = config.blocks_for(n, tpb)
    partials = partials_for(partials, blocks, np.float64)
    kernel[blocks, tpb, stream](dz, z, aux, partials)
    return finish_sum(out, partials, divisor, accumulate, stream)


def cross_entropy_forward_backward(dz, z, labels, out=None, accumulate=False, partials=None,
                                   stream=0):
    """Mean log-sum-exp cross-entropy for integer labels; see the module docstring."""
    return _launch(cross_entropy_kernel, dz, z, labels, z.shape[0], out, accumulate, partials,
                   stream)


def cross_entropy_probs_forward_backward(dz, z, targets, out=None, accumulate=False, partials=None,
                                         stream=0):
    """Mean cross-entropy against probability rows; see the module docstring."""
    return _launch(cross_entropy_probs_kernel, dz, z, targets, z.shape[0], out, accumulate,
                   partials, stream)


def binary_cross_entropy_forward_backward(dz, z, targets, out=None, accumulate=False,
                                          partials=None, stream=0):
    """Binary cross-entropy from logits, summed over outputs, mean over the batch."""
    return _launch(binary_cross_entropy_kernel, dz, z, targets, z.shape[0], out, accumulate,
                   partials, stream)


def mse_forward_backward(dz, z, targets, out=None, accumulate=False, partials=None, stream=0):
    """Mean squared error over all elements."""
    return _launch(mse_kernel, dz, z, targets, z.shape[0] * z.shape[1], out, accumulate, partials,
                   stream)


def hinge_forward_backward(dz, z, labels, out=None, accumulate=False, partials=None, stream=0):
    """Multiclass hinge loss with margin 1 (seed 004); see the module docstring."""
    return _launch(hinge_kernel, dz, z, labels, z.shape[0], out, accumulate, partials, stream)


def loss_forward_backward(dz, z, labels, targets, code, out=None, accumulate=False, partials=None,
                          stream=0):
    """Dispatch on the loss code; ``labels`` (B,) is used by the label losses, ``targets`` (B, C)
    by the others (the unused one may be None or an empty array)."""
    if code == CROSS_ENTROPY:
        return cross_entropy_forward_backward(dz, z, labels, out, accumulate, partials, stream)
    if code == CROSS_ENTROPY_PROBS:
        return cross_entropy_probs_forward_backward(dz, z, targets, out, accumulate, partials,
                                                    stream)
    if code == BINARY_CROSS_ENTROPY:
        return binary_cross_entropy_forward_backward(dz, z, targets, out, accumulate, partials,
                                                     stream)
    if code == MSE:
        return mse_forward_backward(dz, z, targets, out, accumulate, partials, stream)
    return hinge_forward_backward(dz, z, labels, out, accumulate, partials, stream)
