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


import numpy as np
from numba import cuda

from .. import rules
from ..contract import (
    BINARY_CROSS_ENTROPY,
    CROSS_ENTROPY,
    CROSS_ENTROPY_PROBS,
    HINGE,
    MSE,
)
from . import config
from ._reduce import block_sum_f64, finish_sum, partials_for
from ._simulator import device_rule

loss_row = device_rule(rules.loss_row)

__all__ = ["CROSS_ENTROPY", "CROSS_ENTROPY_PROBS", "BINARY_CROSS_ENTROPY", "MSE", "HINGE",
           "partials_size", "cross_entropy_forward_backward",
           "cross_entropy_probs_forward_backward", "binary_cross_entropy_forward_backward",
           "mse_forward_backward", "hinge_forward_backward", "loss_forward_backward"]


@cuda.jit(**config.CUDA_JIT)
def loss_kernel(dz, z, labels, targets, code, partials):
    """Row i (one thread): its loss term and row of dz by the shared rule
    :func:`fastmlp.kernels.rules.loss_row`; block partial sums of the terms."""
    i = cuda.grid(1)
    row = 0.0
    if i < z.shape[0]:
        row = loss_row(dz, z, labels, targets, code, i, z.shape[0])
    total = block_sum_f64(row)
    if cuda.threadIdx.x == 0:
        partials[cuda.blockIdx.x] = total


def partials_size(rows):
    """Entries of the per-block workspace a loss over ``rows`` rows needs (current geometry)."""
    return config.blocks_for(rows, config.THREADS_PER_BLOCK)


def loss_forward_backward(dz, z, labels, targets, code, out=None, accumulate=False, partials=None,
                          stream=0):
    """The mean loss of the batch and dz; ``labels`` (B,) is used by the label losses, ``targets``
    (B, C) by the others (the unused one may be an empty device array). Returns the mean as a host
    float, or writes it to ``out`` (see the module docstring)."""
    n, c = z.shape
    tpb = config.THREADS_PER_BLOCK
    blocks = config.blocks_for(n, tpb)
    partials = partials_for(partials, blocks, np.float64)
    loss_kernel[blocks, tpb, stream](dz, z, labels, targets, code, partials)
    return finish_sum(out, partials, n * c if code == MSE else n, accumulate, stream)


def _no_labels():
    return cuda.device_array(0, dtype=np.int64)


def cross_entropy_forward_backward(dz, z, labels, out=None, accumulate=False, partials=None,
                                   stream=0):
    """Mean log-sum-exp cross-entropy for integer labels; see the module docstring."""
    return loss_forward_backward(dz, z, labels, z[:0], CROSS_ENTROPY, out, accumulate, partials,
                                 stream)


def cross_entropy_probs_forward_backward(dz, z, targets, out=None, accumulate=False, partials=None,
                                         stream=0):
    """Mean cross-entropy against probability rows; see the module docstring."""
    return loss_forward_backward(dz, z, _no_labels(), targets, CROSS_ENTROPY_PROBS, out,
                                 accumulate, partials, stream)


def binary_cross_entropy_forward_backward(dz, z, targets, out=None, accumulate=False,
                                          partials=None, stream=0):
    """Binary cross-entropy from logits, summed over outputs, mean over the batch."""
    return loss_forward_backward(dz, z, _no_labels(), targets, BINARY_CROSS_ENTROPY, out,
                                 accumulate, partials, stream)


def mse_forward_backward(dz, z, targets, out=None, accumulate=False, partials=None, stream=0):
    """Mean squared error over all elements."""
    return loss_forward_backward(dz, z, _no_labels(), targets, MSE, out, accumulate, partials,
                                 stream)


def hinge_forward_backward(dz, z, labels, out=None, accumulate=False, partials=None, stream=0):
    """Multiclass hinge loss with margin 1 (seed 004); see the module docstring."""
    return loss_forward_backward(dz, z, labels, z[:0], HINGE, out, accumulate, partials, stream)
