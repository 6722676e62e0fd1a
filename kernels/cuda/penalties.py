"""L1 and L2 penalties on weight matrices on the GPU (twin of ``kernels/cpu/penalties.py``).

value = l1 Σ|W| + l2 Σ W²;  gradient dW += l1 sign(W) + 2 l2 W, with sign(0) = 0.
W and dW are 1-D contiguous device arrays (the caller flattens its matrices).

``penalty_value``: each thread sums l1|w| + l2 w² over a grid-stride slice in float64, blocks reduce
with a shared-memory tree into per-block partials, and one block adds the partials in a fixed
order (deterministic). Results as in :mod:`.losses`: a Python float when ``out`` is None, else
out[0] = value (out[0] += value when ``accumulate``), so the penalties of several weight matrices
can be summed on the device. ``penalty_grad`` is elementwise.
"""

import numpy as np
from numba import cuda

from . import config
from ._reduce import block_sum_f64, finish_sum, partials_for


@cuda.jit(**config.CUDA_JIT)
def penalty_value_kernel(partials, w, l1, l2):
    """partials[block] = Σ over the block's slice of l1 |w| + l2 w² (float64)."""
    acc = 0.0
    start, step = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, w.shape[0], step):
        v = np.float64(w[k])
        acc += l1 * abs(v) + l2 * (v * v)
    total = block_sum_f64(acc)
    if cuda.threadIdx.x == 0:
        partials[cuda.blockIdx.x] = total


@cuda.jit(**config.CUDA_JIT)
def penalty_grad_kernel(dw, w, l1, l2):
    """dw += l1 sign(w) + 2 l2 w, elementwise."""
    two_l2 = 2.0 * l2
    start, step = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, w.shape[0], step):
        v = w[k]
        s = 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)
        dw[k] += l1 * s + two_l2 * v


MAX_PENALTY_BLOCKS = 1024
"""Most blocks ``penalty_value`` launches (threads loop over the rest): bounds its workspace."""


def partials_size(size):
    """Entries of the per-block workspace that ``penalty_value`` over ``size`` weights needs."""
    return min(MAX_PENALTY_BLOCKS, config.blocks_for(size, config.THREADS_PER_BLOCK))


def penalty_value(w, l1, l2, out=None, accumulate=False, partials=None, stream=0):
    """l1 Σ|w| + l2 Σ w², accumulated in float64. w is 1-D; see the module docstring for results."""
    tpb = config.THREADS_PER_BLOCK
    blocks = partials_size(w.shape[0])
    partials = partials_for(partials, blocks, np.float64)
    penalty_value_kernel[blocks, tpb, stream](partials, w, float(l1), float(l2))
    return finish_sum(out, partials, 1.0, accumulate, stream)


def penalty_grad(dw, w, l1, l2, stream=0):
    """dw += l1 sign(w) + 2 l2 w, elementwise over 1-D device arrays."""
    tpb = config.THREADS_PER_BLOCK
    penalty_grad_kernel[config.blocks_for(w.shape[0], tpb), tpb, stream](dw, w, float(l1),
                                                                         float(l2))
