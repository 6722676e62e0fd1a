"""Plain float64 NumPy reference of everything the kernels compute (independent of fastmlp's code)."""

import math

import numpy as np
from scipy.special import erf, logsumexp

BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def sigmoid(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def activation(name, x, alpha=None, pieces=2):
    if name == "linear":
        return x
    if name == "sigmoid":
        return sigmoid(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.maximum(x, 0)
    if name == "leaky_relu":
        return np.where(x > 0, x, (0.01 if alpha is None else alpha) * x)
    if name == "elu":
        a = 1.0 if alpha is None else alpha
        return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))
    if name == "softplus":
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    if name == "gelu":
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))
    if name == "maxout":
        n, f = x.shape
        return x.reshape(n, f // pieces, pieces).max(axis=2)
    raise KeyError(name)


def batchnorm_train(x, gamma, beta, running_mean, running_var):
    """(y, new_running_mean, new_running_var) as torch.nn.BatchNorm1d in training mode."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    y = gamma * (x - mu) / np.sqrt(var + BN_EPS) + beta
    rm = (1 - BN_MOMENTUM) * running_mean + BN_MOMENTUM * mu
    rv = (1 - BN_MOMENTUM) * running_var + BN_MOMENTUM * var * n / (n - 1)
    return y, rm, rv


def batchnorm_eval(x, gamma, beta, running_mean, running_var):
    return gamma * (x - running_mean) / np.sqrt(running_var + BN_EPS) + beta


# SplitMix64 stream, written with Python integers (exact modular arithmetic)
_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _mix(z):
    z = ((z ^ (z >> 30)) * _MIX1) & _M64
    z = ((z ^ (z >> 27)) * _MIX2) & _M64
    return z ^ (z >> 31)


def stream_key(seed, layer, step):
    k = _mix((seed + _GOLDEN) & _M64)
    k = _mix(k ^ ((layer * _MIX1 + 1) & _M64))
    return _mix(k ^ ((step * _MIX2 + _GOLDEN) & _M64))


def uniforms(key, count):
    return np.array([(_mix((key + (c + 1) * _GOLDEN) & _M64) >> 11) / 2.0 ** 53 for c in range(count)])


def dropout_mask(shape, p, seed, layer, step):
    u = uniforms(stream_key(seed, layer, step), shape[0] * shape[1]).reshape(shape)
    return np.where(u >= p, 1.0 / (1.0 - p), 0.0)


def loss(name, z, y):
    """Mean loss of the fastmlp conventions (DESIGN §3)."""
    n = z.shape[0]
    if name == "cross_entropy" and y.ndim == 1:
        return np.mean(logsumexp(z, axis=1) - z[np.arange(n), y])
    if name == "cross_entropy":
        return np.mean(np.sum(y * (logsumexp(z, axis=1)[:, None] - z), axis=1))
    if name == "binary_cross_entropy":
        y = y.reshape(z.shape)
        return np.sum(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))) / n
    if name == "mse":
        return np.mean((z - y.reshape(z.shape)) ** 2)
    if name == "hinge":
        margins = np.maximum(0, z - z[np.arange(n), y][:, None] + 1)
        margins[np.arange(n), y] = 0
        return np.mean(margins.sum(axis=1))
    raise KeyError(name)


def network(model, X, y=None, training=False, step=0, l1=0.0, l2=0.0):
    """(output, loss or None, new buffers) of ``model``'s architecture on float64 copies of its
    parameters, with fastmlp's dropout masks for ``step``."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in model.params.items()}
    buffers = {k: np.asarray(v, dtype=np.float64).copy() for k, v in model.buffers.items()}
    h = np.asarray(X, dtype=np.float64)
    for l, layer in enumerate(model.layers):
        z = h @ p[f"{l}.W"] + p[f"{l}.b"]
        if layer.batchnorm:
            args = (p[f"{l}.gamma"], p[f"{l}.beta"], buffers[f"{l}.running_mean"],
                    buffers[f"{l}.running_var"])
            if training:
                z, buffers[f"{l}.running_mean"], buffers[f"{l}.running_var"] = batchnorm_train(z, *args)
            else:
                z = batchnorm_eval(z, *args)
        h = activation(layer.activation, z, layer.alpha, layer.pieces)
        if training and layer.dropout > 0:
            h = h * dropout_mask(h.shape, layer.dropout, model.seed, l, step)
    value = None
    if y is not None:
        value = loss(model.loss, h, y)
        weights = [p[f"{l}.W"] for l in range(len(model.layers))]
        value += l1 * sum(np.abs(w).sum() for w in weights) + l2 * sum((w ** 2).sum() for w in weights)
    return h, value, buffers
