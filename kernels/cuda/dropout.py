"""Inverted dropout on a (B, U) batch on the GPU (twin of ``kernels/cpu/dropout.py``).

Training: keep ~ Bernoulli(1 - p) per element, mask = keep / (1 - p), out = x ⊙ mask;
backward dx = dout ⊙ mask. Evaluation is the identity (the caller skips the layer).
Element (i, j) draws uniform(key, i·U + j) from :mod:`.random`, the same counter-based SplitMix64
stream as the CPU kernel, so for the same key the mask is identical to the CPU's, bit for bit.
One thread per element (grid-stride loop over the flattened index, which is also the counter).
"""

import numpy as np
from numba import cuda

from . import config
from .random import uniform


@cuda.jit(device=True)
def _keep_scale(key, counter, p, scale):
    """scale when uniform(key, counter) ≥ p, else 0."""
    return scale if uniform(key, counter) >= p else 0.0


@cuda.jit(**config.CUDA_JIT)
def dropout_mask_kernel(mask, p, key):
    """mask[i, j] = 1/(1-p) where uniform(key, i·U + j) ≥ p, else 0."""
    n, u = mask.shape
    scale = 1.0 / (1.0 - p)
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, n * u, step):
        i = e // u
        j = e - i * u
        mask[i, j] = _keep_scale(key, e, p, scale)


@cuda.jit(**config.CUDA_JIT)
def dropout_forward_kernel(out, mask, x, p, key):
    """The mask of dropout_mask_kernel and out = x ⊙ mask in the same pass."""
    n, u = x.shape
    scale = 1.0 / (1.0 - p)
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, n * u, step):
        i = e // u
        j = e - i * u
        mask[i, j] = _keep_scale(key, e, p, scale)
        out[i, j] = x[i, j] * mask[i, j]


@cuda.jit(**config.CUDA_JIT)
def dropout_backward_kernel(dx, dout, mask):
    """dx = dout ⊙ mask."""
    n, u = dout.shape
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, n * u, step):
        i = e // u
        j = e - i * u
        dx[i, j] = dout[i, j] * mask[i, j]


def _grid(items):
    tpb = config.THREADS_PER_BLOCK
    return config.blocks_for(items, tpb), tpb


def dropout_mask(mask, p, key, stream=0):
    """mask[i, j] = 1/(1-p) where uniform(key, i·U + j) ≥ p, else 0. mask (B, U), 0 ≤ p < 1;
    ``key`` is a stream key (``kernels.cpu.random.stream_key``), passed to the kernel as uint64."""
    blocks, tpb = _grid(mask.shape[0] * mask.shape[1])
    dropout_mask_kernel[blocks, tpb, stream](mask, float(p), np.uint64(key))


def dropout_forward(out, mask, x, p, key, stream=0):
    """Draws the mask (see :func:`dropout_mask`) and writes out = x ⊙ mask; out may be x."""
    blocks, tpb = _grid(x.shape[0] * x.shape[1])
    dropout_forward_kernel[blocks, tpb, stream](out, mask, x, float(p), np.uint64(key))


def dropout_backward(dx, dout, mask, stream=0):
    """dx = dout ⊙ mask; all (B, U); dx may be dout."""
    blocks, tpb = _grid(dout.shape[0] * dout.shape[1])
    dropout_backward_kernel[blocks, tpb, stream](dx, dout, mask)
