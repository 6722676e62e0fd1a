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

from ..config import JIT, JIT_INTERNAL
from ..jit import njit


@njit(**JIT_INTERNAL)
def _normalize_block(y, xhat, x, center, inv, g, bt, r0, r1, c0, c1):
    """x̂ = (x - center) · inv and y = g x̂ + bt on rows r0:r1, columns c0:c1 of x, x̂ and y;
    center, inv, g and bt are the (c1 - c0,) views of those columns."""
    width = c1 - c0
    for i in range(r0, r1):
        xi = x[i, c0:c1]
        hi = xhat[i, c0:c1]
        yi = y[i, c0:c1]
        for j in range(width):
            h = (xi[j] - center[j]) * inv[j]
            hi[j] = h
            yi[j] = g[j] * h + bt[j]


@njit(**JIT_INTERNAL)
def batchnorm_forward_train_cols(y, xhat, mean, invstd, x, gamma, beta, running_mean, running_var,
                                 momentum, eps, update_running, c0, c1):
    """Training forward with batch statistics for columns c0:c1 (every row); updates their
    running statistics when asked (B ≥ 2). Columns are independent, so threads may each take a
    block of them. (Loops run over views from index 0, which keeps them vectorizable.)"""
    n = x.shape[0]
    width = c1 - c0
    mu = mean[c0:c1]
    inv = invstd[c0:c1]
    g = gamma[c0:c1]
    bt = beta[c0:c1]
    for j in range(width):
        mu[j] = 0.0
        inv[j] = 0.0
    for i in range(n):
        xi = x[i, c0:c1]
        for j in range(width):
            mu[j] += xi[j]
    for j in range(width):
        mu[j] /= n
    for i in range(n):
        xi = x[i, c0:c1]
        for j in range(width):
            d = xi[j] - mu[j]
            inv[j] += d * d
    rm = running_mean[c0:c1]
    rv = running_var[c0:c1]
    for j in range(width):
        var = inv[j] / n
        if update_running:
            rm[j] = (1.0 - momentum) * rm[j] + momentum * mu[j]
            rv[j] = (1.0 - momentum) * rv[j] + momentum * var * n / (n - 1)
        inv[j] = 1.0 / math.sqrt(var + eps)
    _normalize_block(y, xhat, x, mu, inv, g, bt, 0, n, c0, c1)


@njit(**JIT)
def batchnorm_forward_train(y, xhat, mean, invstd, x, gamma, beta, running_mean, running_var,
                            momentum, eps, update_running):
    """Training forward with batch statistics; updates the running statistics when asked (B ≥ 2)."""
    batchnorm_forward_train_cols(y, xhat, mean, invstd, x, gamma, beta, running_mean, running_var,
                                 momentum, eps, update_running, 0, x.shape[1])


@njit(**JIT_INTERNAL)
def batchnorm_forward_eval_block(y, xhat, invstd, x, gamma, beta, running_mean, running_var, eps,
                                 r0, r1, c0, c1):
    """Evaluation forward for rows r0:r1, columns c0:c1, with the running statistics; also leaves
    x̂ and 1/sqrt(var+eps) (columns c0:c1)."""
    width = c1 - c0
    inv = invstd[c0:c1]
    rm = running_mean[c0:c1]
    rv = running_var[c0:c1]
    g = gamma[c0:c1]
    bt = beta[c0:c1]
    for j in range(width):
        inv[j] = 1.0 / math.sqrt(rv[j] + eps)
    _normalize_block(y, xhat, x, rm, inv, g, bt, r0, r1, c0, c1)


@njit(**JIT)
def batchnorm_forward_eval(y, xhat, invstd, x, gamma, beta, running_mean, running_var, eps):
    """Evaluation forward with the running statistics; also leaves x̂ and 1/sqrt(var+eps)."""
    batchnorm_forward_eval_block(y, xhat, invstd, x, gamma, beta, running_mean, running_var, eps,
                                 0, x.shape[0], 0, x.shape[1])


@njit(**JIT_INTERNAL)
def batchnorm_param_grads_cols(dgamma, dbeta, dy, xhat, c0, c1):
    """dγ = Σ_rows dy x̂, dβ = Σ_rows dy for columns c0:c1."""
    width = c1 - c0
    dg = dgamma[c0:c1]
    dbt = dbeta[c0:c1]
    for j in range(width):
        dg[j] = 0.0
        dbt[j] = 0.0
    for i in range(dy.shape[0]):
        di = dy[i, c0:c1]
        hi = xhat[i, c0:c1]
        for j in range(width):
            dg[j] += di[j] * hi[j]
            dbt[j] += di[j]


@njit(**JIT)
def batchnorm_param_grads(dgamma, dbeta, dy, xhat):
    """dγ = Σ_rows dy x̂, dβ = Σ_rows dy."""
    batchnorm_param_grads_cols(dgamma, dbeta, dy, xhat, 0, dy.shape[1])


@njit(**JIT_INTERNAL)
def batchnorm_backward_cols(dx, dgamma, dbeta, dy, xhat, gamma, invstd, training, c0, c1):
    """Backward for columns c0:c1: through the batch statistics when ``training`` (module
    docstring), else with the running statistics as constants."""
    n = dy.shape[0]
    width = c1 - c0
    batchnorm_param_grads_cols(dgamma, dbeta, dy, xhat, c0, c1)
    g = gamma[c0:c1]
    inv = invstd[c0:c1]
    dg = dgamma[c0:c1]
    dbt = dbeta[c0:c1]
    for i in range(n):
        di = dy[i, c0:c1]
        xi = dx[i, c0:c1]
        if training:
            hi = xhat[i, c0:c1]
            for j in range(width):
                # mean_rows dx̂ = γ dβ / B and mean_rows(dx̂ x̂) = γ dγ / B
                xi[j] = g[j] * inv[j] * (di[j] - (dbt[j] + hi[j] * dg[j]) / n)
        else:
            for j in range(width):
                xi[j] = di[j] * g[j] * inv[j]


@njit(**JIT)
def batchnorm_backward(dx, dgamma, dbeta, dy, xhat, gamma, invstd):
    """Training backward through the batch statistics (module docstring)."""
    batchnorm_backward_cols(dx, dgamma, dbeta, dy, xhat, gamma, invstd, True, 0, dy.shape[1])


@njit(**JIT)
def batchnorm_backward_eval(dx, dgamma, dbeta, dy, xhat, gamma, invstd):
    """Evaluation backward: the running statistics are constants."""
    batchnorm_backward_cols(dx, dgamma, dbeta, dy, xhat, gamma, invstd, False, 0, dy.shape[1])
