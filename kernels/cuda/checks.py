"""Checks of input data that already lives on the GPU (arrays given through
``__cuda_array_interface__``), so that they need not be copied to the host to be validated.

The host twin of these checks is ``fastmlp/_validation.py`` with the target checks of
``fastmlp/losses.py``, on NumPy arrays; these compute the same facts with one reduction each and
return host scalars:

- ``value_summary(values)`` for a (n, c) float array: (number of NaN/inf entries, minimum and
  maximum of the finite entries), float64; min = +inf and max = -inf when no entry is finite;
- ``row_sum_deviation(values)``: max over rows of |Σ_j values[i, j] − 1| (float64 sums), for
  probability rows;
- ``label_range(labels)`` for a 1-D integer array: (minimum, maximum) as Python ints;
- ``to_int64(labels)``: an int64 device copy of a 1-D integer or bool array.

Each reduction runs one thread per element (or row) over a grid-stride loop, keeps its partial
result in registers and merges it with one atomic operation per thread.
"""

import math

import numpy as np
from numba import cuda

from . import config

__all__ = ["value_summary", "row_sum_deviation", "label_range", "to_int64"]

_MAX_BLOCKS = 1024  # enough threads to cover a GPU; each thread then walks several elements


@cuda.jit(**config.CUDA_JIT)
def value_summary_kernel(out, values):
    """out[0] += non-finite entries; out[1] = min(out[1], finite entries); out[2] likewise max."""
    n, c = values.shape
    bad = 0.0
    lo = math.inf
    hi = -math.inf
    for e in range(cuda.grid(1), n * c, cuda.gridsize(1)):
        i = e // c
        v = float(values[i, e - i * c])
        if math.isfinite(v):
            lo = min(lo, v)
            hi = max(hi, v)
        else:
            bad += 1.0
    cuda.atomic.add(out, 0, bad)
    cuda.atomic.min(out, 1, lo)
    cuda.atomic.max(out, 2, hi)


@cuda.jit(**config.CUDA_JIT)
def row_sum_deviation_kernel(out, values):
    """out[0] = max(out[0], |Σ_j values[i, j] − 1|) over the rows i; one thread per row."""
    n, c = values.shape
    worst = 0.0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        s = 0.0
        for j in range(c):
            s += float(values[i, j])
        worst = max(worst, abs(s - 1.0))
    cuda.atomic.max(out, 0, worst)


@cuda.jit(**config.CUDA_JIT)
def label_range_kernel(out, labels):
    """out[0] = min(out[0], labels), out[1] = max(out[1], labels) as int64."""
    lo = out[0]
    hi = out[1]
    for i in range(cuda.grid(1), labels.shape[0], cuda.gridsize(1)):
        v = np.int64(labels[i])
        lo = min(lo, v)
        hi = max(hi, v)
    cuda.atomic.min(out, 0, lo)
    cuda.atomic.max(out, 1, hi)


@cuda.jit(**config.CUDA_JIT)
def to_int64_kernel(dst, src):
    """dst[i] = int64(src[i])."""
    for i in range(cuda.grid(1), src.shape[0], cuda.gridsize(1)):
        dst[i] = np.int64(src[i])


def _grid(n):
    tpb = config.THREADS_PER_BLOCK
    return min(_MAX_BLOCKS, config.blocks_for(n, tpb)), tpb


def value_summary(values, stream=0):
    """(non-finite count, finite min, finite max) of a (n, c) float device array."""
    out = cuda.to_device(np.array([0.0, np.inf, -np.inf]), stream=stream)
    blocks, tpb = _grid(values.shape[0] * values.shape[1])
    value_summary_kernel[blocks, tpb, stream](out, values)
    bad, lo, hi = out.copy_to_host(stream=stream)
    return int(bad), float(lo), float(hi)


def row_sum_deviation(values, stream=0):
    """max_i |Σ_j values[i, j] − 1| of a (n, c) float device array (0 when n = 0)."""
    out = cuda.to_device(np.zeros(1), stream=stream)
    blocks, tpb = _grid(values.shape[0])
    row_sum_deviation_kernel[blocks, tpb, stream](out, values)
    return float(out.copy_to_host(stream=stream)[0])


def label_range(labels, stream=0):
    """(min, max) of a non-empty 1-D integer device array."""
    info = np.iinfo(np.int64)
    out = cuda.to_device(np.array([info.max, info.min], dtype=np.int64), stream=stream)
    blocks, tpb = _grid(labels.shape[0])
    label_range_kernel[blocks, tpb, stream](out, labels)
    lo, hi = out.copy_to_host(stream=stream)
    return int(lo), int(hi)


def to_int64(labels, stream=0):
    """A new int64 device array equal to the 1-D integer/bool device array ``labels``."""
    out = cuda.device_array(labels.shape[0], dtype=np.int64, stream=stream)
    blocks, tpb = _grid(labels.shape[0])
    to_int64_kernel[blocks, tpb, stream](out, labels)
    return out
