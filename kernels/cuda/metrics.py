"""Accuracy and argmax reductions on the network output z (B, C) on the GPU (twin of
``kernels/cpu/metrics.py``).

- label losses (cross_entropy, hinge) and probability rows: a row is correct when argmax z equals
  the label (or argmax of the target row); counts rows.
- binary_cross_entropy: an element is correct when [z > 0] equals [t ≥ 0.5]; counts elements.
- mse has no accuracy (returns 0 of 0).
Ties in argmax go to the first maximum, as numpy.argmax.

One thread per row; blocks sum their rows' counts with a shared-memory tree into per-block partials
(int64) and one block adds the partials. ``count_correct`` returns (correct, counted) like the CPU
kernel when ``out`` is None; with a device array ``out`` (1,) int64 it writes the number correct to
out[0] (adds it when ``accumulate``) and returns only ``counted``, which the host knows from the
shapes, so an epoch's accuracy stays on the device until the epoch ends. ``row_argmax`` writes the
per-row argmax (predicted labels).
"""

import numpy as np
from numba import cuda

from .. import rules
from ..contract import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, CROSS_ENTROPY_PROBS, HINGE
from . import config
from ._reduce import block_sum_i64, finish_count, partials_for
from ._simulator import device_rule

row_argmax_of = device_rule(rules.row_argmax)
row_correct = device_rule(rules.row_correct)


@cuda.jit(**config.CUDA_JIT)
def count_correct_kernel(partials, z, labels, targets, code):
    """partials[block] = number of correct rows (elements for binary_cross_entropy) in the block."""
    i = cuda.grid(1)
    correct = 0
    if i < z.shape[0]:
        correct = row_correct(z, labels, targets, code, i)[0]
    total = block_sum_i64(correct)
    if cuda.threadIdx.x == 0:
        partials[cuda.blockIdx.x] = total


@cuda.jit(**config.CUDA_JIT)
def row_argmax_kernel(idx, z):
    """idx[i] = argmax_j z[i, j] (first maximum)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, z.shape[0], step):
        idx[i] = row_argmax_of(z, i)


def counted_of(z, code):
    """Rows (or elements for binary_cross_entropy) that ``count_correct`` counts; 0 for mse."""
    n, c = z.shape
    if code in (CROSS_ENTROPY, HINGE, CROSS_ENTROPY_PROBS):
        return n
    if code == BINARY_CROSS_ENTROPY:
        return n * c
    return 0


def count_correct(z, labels, targets, code, out=None, accumulate=False, partials=None, stream=0):
    """(number correct, number counted) for one batch, or only the number counted when ``out`` is
    given (see the module docstring). ``labels`` (B,) int64 or ``targets`` (B, C) as the loss uses;
    the unused one may be None or an empty device array."""
    counted = counted_of(z, code)
    tpb = config.THREADS_PER_BLOCK
    if counted == 0:  # nothing to count: out[0] still receives 0 (or keeps its total)
        partials = partials_for(partials, 0, np.int64)
    else:
        blocks = config.blocks_for(z.shape[0], tpb)
        partials = partials_for(partials, blocks, np.int64)
        if labels is None:
            labels = cuda.device_array(0, dtype=np.int64)
        if targets is None:
            targets = cuda.device_array((0, z.shape[1]), dtype=z.dtype)
        count_correct_kernel[blocks, tpb, stream](partials, z, labels, targets, int(code))
    correct = finish_count(out, partials, accumulate, stream)
    if out is None:
        return correct, counted
    return counted


def row_argmax(idx, z, stream=0):
    """idx[i] = argmax_j z[i, j] with ties to the first maximum; idx (B,) int64, z (B, C)."""
    tpb = config.THREADS_PER_BLOCK
    row_argmax_kernel[config.blocks_for(z.shape[0], tpb), tpb, stream](idx, z)
