"""Block reductions shared by the CUDA kernels, and the launch helpers of scalar results.

Every reduction is deterministic: a block sums its threads' values with a tree in shared memory
(no atomics on floating-point values), writes one partial sum per block, and a single-block kernel
sums the partials in a fixed order. Scalar results therefore do not depend on scheduling and are
the same from run to run.

- ``block_sum_f64`` / ``block_sum_i64``: sum over the threads of a 1-D block (blockDim.x a power of
  two); every thread receives the total.
- ``column_block_sum_f64`` / ``column_block_sum2_f64``: for a 2-D block of blockDim.x columns ×
  blockDim.y rows (a power of two), the sum over threadIdx.y of each column's value(s).
- ``finish_sum``: out[0] = Σ partials / divisor, or out[0] += that when accumulating.
"""

import numpy as np
from numba import cuda, float64, int64

from . import config
from ._simulator import install as _install_simulator_fix
from ._views import prefix
from .config import MAX_THREADS

_install_simulator_fix()  # thread-safe shared arrays and module swap on the CUDA simulator


@cuda.jit(device=True)
def block_sum_f64(value):
    """Σ value over the threads of a 1-D block (float64); returned to every thread."""
    s = cuda.shared.array(MAX_THREADS, float64)
    tid = cuda.threadIdx.x
    s[tid] = value
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if tid < stride:
            s[tid] += s[tid + stride]
        cuda.syncthreads()
        stride //= 2
    total = s[0]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def block_sum_i64(value):
    """Σ value over the threads of a 1-D block (int64); returned to every thread."""
    s = cuda.shared.array(MAX_THREADS, int64)
    tid = cuda.threadIdx.x
    s[tid] = value
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if tid < stride:
            s[tid] += s[tid + stride]
        cuda.syncthreads()
        stride //= 2
    total = s[0]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def column_block_sum_f64(value):
    """Σ over threadIdx.y of value, per threadIdx.x (a 2-D block); returned to every thread."""
    s = cuda.shared.array(MAX_THREADS, float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    w = cuda.blockDim.x
    s[ty * w + tx] = value
    cuda.syncthreads()
    stride = cuda.blockDim.y // 2
    while stride > 0:
        if ty < stride:
            s[ty * w + tx] += s[(ty + stride) * w + tx]
        cuda.syncthreads()
        stride //= 2
    total = s[tx]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def column_block_sum2_f64(a, b):
    """(Σ a, Σ b) over threadIdx.y, per threadIdx.x, in one tree; returned to every thread."""
    sa = cuda.shared.array(MAX_THREADS, float64)
    sb = cuda.shared.array(MAX_THREADS, float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    w = cuda.blockDim.x
    sa[ty * w + tx] = a
    sb[ty * w + tx] = b
    cuda.syncthreads()
    stride = cuda.blockDim.y // 2
    while stride > 0:
        if ty < stride:
            sa[ty * w + tx] += sa[(ty + stride) * w + tx]
            sb[ty * w + tx] += sb[(ty + stride) * w + tx]
        cuda.syncthreads()
        stride //= 2
    ta = sa[tx]
    tb = sb[tx]
    cuda.syncthreads()
    return ta, tb


@cuda.jit(**config.CUDA_JIT)
def finish_sum_f64_kernel(out, partials, divisor, accumulate):
    """out[0] = Σ partials / divisor (out[0] += … when accumulate); one block, fixed order."""
    tid = cuda.threadIdx.x
    acc = 0.0
    for k in range(tid, partials.shape[0], cuda.blockDim.x):
        acc += partials[k]
    total = block_sum_f64(acc)
    if tid == 0:
        if accumulate:
            out[0] += total / divisor
        else:
            out[0] = total / divisor


@cuda.jit(**config.CUDA_JIT)
def finish_sum_i64_kernel(out, partials, accumulate):
    """out[0] = Σ partials (out[0] += … when accumulate); integers, one block."""
    tid = cuda.threadIdx.x
    acc = 0
    for k in range(tid, partials.shape[0], cuda.blockDim.x):
        acc += partials[k]
    total = block_sum_i64(acc)
    if tid == 0:
        if accumulate:
            out[0] += total
        else:
            out[0] = total


def partials_for(partials, blocks, dtype):
    """A device array of ``blocks`` per-block partial sums: a prefix of ``partials`` when given."""
    if partials is None:
        return cuda.device_array(blocks, dtype=dtype)
    if partials.shape[0] < blocks:
        raise ValueError(f"partials holds {partials.shape[0]} entries; {blocks} blocks need more")
    return prefix(partials, blocks)


def finish_sum(out, partials, divisor, accumulate, stream):
    """Reduce float64 partials into out[0]; returns the host float when ``out`` is None."""
    wanted = out is None
    if wanted:
        out = cuda.device_array(1, dtype=np.float64)
        accumulate = False
    finish_sum_f64_kernel[1, config.THREADS_PER_BLOCK, stream](out, partials, float(divisor),
                                                               bool(accumulate))
    if wanted:
        return float(out.copy_to_host(stream=stream)[0])
    return None


def finish_count(out, partials, accumulate, stream):
    """Reduce int64 partials into out[0]; returns the host int when ``out`` is None."""
    wanted = out is None
    if wanted:
        out = cuda.device_array(1, dtype=np.int64)
        accumulate = False
    finish_sum_i64_kernel[1, config.THREADS_PER_BLOCK, stream](out, partials, bool(accumulate))
    if wanted:
        return int(out.copy_to_host(stream=stream)[0])
    return None
