"""Batch normalization over the rows of a (B, F) batch, as torch.nn.BatchNorm1d.

Training forward:  μ = mean_rows x,  σ² = mean_rows (x - μ)²  (biased),
                   x̂ = (x - μ) / sqrt(σ² + eps),  y = γ x̂ + β,
                   running_mean ← (1 - m) running_mean + m μ,
                   running_var  ← (1 - m) running_var  + m σ² B/(B-1).
Evaluation forward: x̂ = (x - running_mean) / sqrt(running_var + eps),  y = γ x̂ + β.
Training backward (through the batch statistics), with dx̂ = dy γ:
                   dx = (1/sqrt(σ²+eps)) (dx̂ - mean_rows dx̂ - x̂ mean_rows(dx̂ x̂)),
                   dγ = Σ_rows dy x̂,  dβ = Σ_rows dy.
Evaluation backward: dx = dy γ / sqrt(running_var + eps); dγ and dβ as above.

Shapes: x, y, x̂, dx, dy (B, F); γ, β, running statistics, mean, invstd, dγ, dβ (F,). ``y`` may be
``x`` and ``dx`` may be ``dy`` (every element is read before it is written).
"""

import math

from numba import njit

from ..config import JIT


@njit(**JIT)
def batchnorm_forward_train(y, xhat, mean, invstd, x, gamma, beta, running_mean, running_var,
                            momentum, eps, update_running):
    """Training forward with batch statistics; updates the running statistics when asked (B ≥ 2)."""
    n, f = x.shape
    for j in range(f):
        mean[j] = 0.0
        invstd[j] = 0.0
    for i in range(n):
        for j in range(f):
            mean[j] += x[i, j]
    for j in range(f):
        mean[j] /= n
    for i in range(n):
        for j in range(f):
            d = x[i, j] - mean[j]
            invstd[j] += d * d
    for j in range(f):
        var = invstd[j] / n
        if update_running:
            running_mean[j] = (1.0 - momentum) * running_mean[j] + momentum * mean[j]
            running_var[j] = (1.0 - momentum) * running_var[j] + momentum * var * n / (n - 1)
        invstd[j] = 1.0 / math.sqrt(var + eps)
    for i in range(n):
        for j in range(f):
            h = (x[i, j] - mean[j]) * invstd[j]
            xhat[i, j] = h
            y[i, j] = gamma[j] * h + beta[j]


@njit(**JIT)
def batchnorm_forward_eval(y, xhat, invstd, x, gamma, beta, running_mean, running_var, eps):
    """Evaluation forward with the running statistics; also leaves x̂ and 1/sqrt(var+eps)."""
    n, f = x.shape
    for j in range(f):
        invstd[j] = 1.0 / math.sqrt(running_var[j] + eps)
    for i in range(n):
        for j in range(f):
            h = (x[i, j] - running_mean[j]) * invstd[j]
            xhat[i, j] = h
            y[i, j] = gamma[j] * h + beta[j]


@njit(**JIT)
def batchnorm_param_grads(dgamma, dbeta, dy, xhat):
    """dγ = Σ_rows dy x̂, dβ = Σ_rows dy."""
    n, f = dy.shape
    for j in range(f):
        dgamma[j] = 0.0
        dbeta[j] = 0.0
    for i in range(n):
        for j in range(f):
            dgamma[j] += dy[i, j] * xhat[i, j]
            dbeta[j] += dy[i, j]


@njit(**JIT)
def batchnorm_backward(dx, dgamma, dbeta, dy, xhat, gamma, invstd):
    """Training backward through the batch statistics (module docstring)."""
    n, f = dy.shape
    batchnorm_param_grads(dgamma, dbeta, dy, xhat)
    for i in range(n):
        for j in range(f):
            # mean_rows dx̂ = γ dβ / B and mean_rows(dx̂ x̂) = γ dγ / B
            dx[i, j] = gamma[j] * invstd[j] * (dy[i, j] - (dbeta[j] + xhat[i, j] * dgamma[j]) / n)


@njit(**JIT)
def batchnorm_backward_eval(dx, dgamma, dbeta, dy, xhat, gamma, invstd):
    """Evaluation backward: the running statistics are constants."""
    n, f = dy.shape
    batchnorm_param_grads(dgamma, dbeta, dy, xhat)
    for i in range(n):
        for j in range(f):
            dx[i, j] = dy[i, j] * gamma[j] * invstd[j]
