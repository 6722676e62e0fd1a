"""Batch normalization over the rows of a (B, F) batch on the GPU (twin of
``kernels/cpu/batchnorm.py``, as torch.nn.BatchNorm1d).

Training forward:  μ = mean_rows x,  σ² = mean_rows (x - μ)²  (biased, two passes),
                   x̂ = (x - μ) / sqrt(σ² + eps),  y = γ x̂ + β,
                   running_mean ← (1 - m) running_mean + m μ,
                   running_var  ← (1 - m) running_var  + m σ² B/(B-1).
Evaluation forward: x̂ = (x - running_mean) / sqrt(running_var + eps),  y = γ x̂ + β.
Training backward (through the batch statistics), with dx̂ = dy γ:
                   dx = (1/sqrt(σ²+eps)) (dx̂ - mean_rows dx̂ - x̂ mean_rows(dx̂ x̂)),
                   dγ = Σ_rows dy x̂,  dβ = Σ_rows dy.
Evaluation backward: dx = dy γ / sqrt(running_var + eps); dγ and dβ as above.

Shapes: x, y, x̂, dx, dy (B, F); γ, β, running statistics, mean, invstd, dγ, dβ (F,). ``y`` may be
``x`` and ``dx`` may be ``dy``.

Every kernel is a column reduction: a block owns ``config.REDUCE_COLS`` consecutive columns for all
B rows, its ``config.REDUCE_ROWS`` row-threads stride over the rows (reads along a row are
coalesced) and a tree in shared memory combines them, in float64. Because the block holds whole
columns, it also applies the normalization (or the backward formula) to its columns after the
statistics: each pass is one launch. Per-column statistics are written to their (F,) arrays by the
first row-thread and read back after a barrier, so the elementwise step uses the same stored values
(mean, invstd, dγ, dβ in the arrays' dtype) as the CPU kernels. All reads of an element precede the
barrier that precedes its write, which is what makes ``y is x`` and ``dx is dy`` safe.
"""

import math

from numba import cuda

from . import config
from ._reduce import column_block_sum2_f64, column_block_sum_f64


@cuda.jit(**config.CUDA_JIT)
def batchnorm_forward_train_kernel(y, xhat, mean, invstd, x, gamma, beta, running_mean,
                                   running_var, momentum, eps, update_running):
    """Batch statistics, running statistics and normalization of a block's columns."""
    n, f = x.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    ty = cuda.threadIdx.y
    rows = cuda.blockDim.y
    valid = j < f
    acc = 0.0
    if valid:
        for i in range(ty, n, rows):
            acc += x[i, j]
    mu = column_block_sum_f64(acc) / n
    if valid and ty == 0:
        mean[j] = mu
    cuda.syncthreads()
    acc = 0.0
    if valid:
        m_j = mean[j]
        for i in range(ty, n, rows):
            d = x[i, j] - m_j
            acc += d * d
    var = column_block_sum_f64(acc) / n
    if valid and ty == 0:
        if update_running:
            running_mean[j] = (1.0 - momentum) * running_mean[j] + momentum * mean[j]
            running_var[j] = (1.0 - momentum) * running_var[j] + momentum * var * n / (n - 1)
        invstd[j] = 1.0 / math.sqrt(var + eps)
    cuda.syncthreads()
    if valid:
        m_j = mean[j]
        s_j = invstd[j]
        g_j = gamma[j]
        b_j = beta[j]
        for i in range(ty, n, rows):
            h = (x[i, j] - m_j) * s_j
            xhat[i, j] = h
            y[i, j] = g_j * h + b_j


@cuda.jit(**config.CUDA_JIT)
def batchnorm_forward_eval_kernel(y, xhat, invstd, x, gamma, beta, running_mean, running_var, eps):
    """Normalization of a block's columns with the running statistics."""
    n, f = x.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    ty = cuda.threadIdx.y
    valid = j < f
    if valid and ty == 0:
        invstd[j] = 1.0 / math.sqrt(running_var[j] + eps)
    cuda.syncthreads()
    if valid:
        m_j = running_mean[j]
        s_j = invstd[j]
        g_j = gamma[j]
        b_j = beta[j]
        for i in range(ty, n, cuda.blockDim.y):
            h = (x[i, j] - m_j) * s_j
            xhat[i, j] = h
            y[i, j] = g_j * h + b_j


@cuda.jit(device=True)
def _param_grads(dgamma, dbeta, dy, xhat, j, valid):
    """dγ[j], dβ[j] of a block's columns (written by row-thread 0, visible after the barrier)."""
    n = dy.shape[0]
    ty = cuda.threadIdx.y
    acc_g = 0.0
    acc_b = 0.0
    if valid:
        for i in range(ty, n, cuda.blockDim.y):
            g = dy[i, j]
            acc_g += g * xhat[i, j]
            acc_b += g
    tg, tb = column_block_sum2_f64(acc_g, acc_b)
    if valid and ty == 0:
        dgamma[j] = tg
        dbeta[j] = tb
    cuda.syncthreads()


@cuda.jit(**config.CUDA_JIT)
def batchnorm_param_grads_kernel(dgamma, dbeta, dy, xhat):
    """dγ = Σ_rows dy x̂, dβ = Σ_rows dy for a block's columns."""
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    _param_grads(dgamma, dbeta, dy, xhat, j, j < dy.shape[1])


@cuda.jit(**config.CUDA_JIT)
def batchnorm_backward_kernel(dx, dgamma, dbeta, dy, xhat, gamma, invstd):
    """Training backward of a block's columns: parameter gradients, barrier, then dx."""
    n, f = dy.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    valid = j < f
    _param_grads(dgamma, dbeta, dy, xhat, j, valid)
    if valid:
        scale = gamma[j] * invstd[j]
        dg = dgamma[j]
        db = dbeta[j]
        for i in range(cuda.threadIdx.y, n, cuda.blockDim.y):
            # mean_rows dx̂ = γ dβ / B and mean_rows(dx̂ x̂) = γ dγ / B
            dx[i, j] = scale * (dy[i, j] - (db + xhat[i, j] * dg) / n)


@cuda.jit(**config.CUDA_JIT)
def batchnorm_backward_eval_kernel(dx, dgamma, dbeta, dy, xhat, gamma, invstd):
    """Evaluation backward of a block's columns: the running statistics are constants."""
    n, f = dy.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    valid = j < f
    _param_grads(dgamma, dbeta, dy, xhat, j, valid)
    if valid:
        g_j = gamma[j]
        s_j = invstd[j]
        for i in range(cuda.threadIdx.y, n, cuda.blockDim.y):
            dx[i, j] = dy[i, j] * g_j * s_j


def _column_grid(columns):
    cols, rows = config.REDUCE_COLS, config.REDUCE_ROWS
    return config.blocks_for(columns, cols), (cols, rows)


def batchnorm_forward_train(y, xhat, mean, invstd, x, gamma, beta, running_mean, running_var,
                            momentum, eps, update_running, stream=0):
    """Training forward with batch statistics; updates the running statistics when asked (B ≥ 2).
    One launch; device arrays as in the module docstring."""
    grid, block = _column_grid(x.shape[1])
    batchnorm_forward_train_kernel[grid, block, stream](
        y, xhat, mean, invstd, x, gamma, beta, running_mean, running_var, float(momentum),
        float(eps), bool(update_running))


def batchnorm_forward_eval(y, xhat, invstd, x, gamma, beta, running_mean, running_var, eps,
                           stream=0):
    """Evaluation forward with the running statistics; also leaves x̂ and 1/sqrt(var+eps)."""
    grid, block = _column_grid(x.shape[1])
    batchnorm_forward_eval_kernel[grid, block, stream](y, xhat, invstd, x, gamma, beta,
                                                       running_mean, running_var, float(eps))


def batchnorm_param_grads(dgamma, dbeta, dy, xhat, stream=0):
    """dγ = Σ_rows dy x̂, dβ = Σ_rows dy."""
    grid, block = _column_grid(dy.shape[1])
    batchnorm_param_grads_kernel[grid, block, stream](dgamma, dbeta, dy, xhat)


def batchnorm_backward(dx, dgamma, dbeta, dy, xhat, gamma, invstd, stream=0):
    """Training backward through the batch statistics (module docstring); one launch."""
    grid, block = _column_grid(dy.shape[1])
    batchnorm_backward_kernel[grid, block, stream](dx, dgamma, dbeta, dy, xhat, gamma, invstd)


def batchnorm_backward_eval(dx, dgamma, dbeta, dy, xhat, gamma, invstd, stream=0):
    """Evaluation backward: dx = dy γ invstd, with dγ and dβ."""
    grid, block = _column_grid(dy.shape[1])
    batchnorm_backward_eval_kernel[grid, block, stream](dx, dgamma, dbeta, dy, xhat, gamma, invstd)
