"""Elementwise activations and their derivatives on the GPU (twin of ``cpu/activations.py``).

Same integer codes, formulas and shapes as the CPU module: ``pre`` and ``out`` are (B, F); maxout
reads (B, U·k) pre-activations, unit j owning the contiguous columns j·k … j·k + k - 1, and writes
(B, U); its gradient flows to the first column attaining the maximum.

- linear: y = x;                     f' = 1
- sigmoid: y = 1 / (1 + e^-x);       f' = y (1 - y)           (computed without overflow)
- tanh: y = tanh x;                  f' = 1 - y²
- relu: y = max(x, 0);               f' = [x > 0]
- leaky_relu: y = x if x > 0 else alpha·x;    f' = 1 or alpha
- elu: y = x if x > 0 else alpha (e^x - 1);   f' = 1 or y + alpha
- softplus: y = max(x, 0) + log1p(e^-|x|);    f' = sigmoid(x)
- gelu (exact): y = x Φ(x), Φ(x) = (1 + erf(x/√2)) / 2;   f' = Φ(x) + x φ(x)

``stable_sigmoid``, ``activation_value`` and ``activation_derivative`` are the shared scalar rules of
:mod:`fastmlp.kernels.rules`, compiled as device functions where the kernels call them (the fused
dense kernels too); the kernels below are one thread per element (grid-stride loops over the
flattened (row, column) index, so consecutive threads touch consecutive addresses). Each
``*_kernel`` has a host launcher of the CPU kernel's name taking device arrays (plus an optional
``stream``).
"""

from numba import cuda

from .. import rules
from ..contract import (
    ACTIVATION_CODES,
    ELU,
    GELU,
    LEAKY_RELU,
    LINEAR,
    MAXOUT,
    RELU,
    SIGMOID,
    SOFTPLUS,
    TANH,
)
from . import config
from ._simulator import device_rule

stable_sigmoid = device_rule(rules.stable_sigmoid)
activation_value = device_rule(rules.activation_value)
activation_derivative = device_rule(rules.activation_derivative)

__all__ = ["ACTIVATION_CODES", "LINEAR", "SIGMOID", "TANH", "RELU", "LEAKY_RELU", "ELU", "SOFTPLUS",
           "GELU", "MAXOUT", "stable_sigmoid", "activation_value", "activation_derivative",
           "activation_forward", "activation_backward", "maxout_forward", "maxout_backward"]

@cuda.jit(device=True)
def maxout_argmax(pre, i, base, pieces):
    """Index p (0 ≤ p < k) of the first maximum of pre[i, base … base + k - 1]."""
    arg = 0
    best = pre[i, base]
    for p in range(1, pieces):
        v = pre[i, base + p]
        if v > best:
            best = v
            arg = p
    return arg


@cuda.jit(**config.CUDA_JIT)
def activation_forward_kernel(out, pre, code, alpha):
    """out[i, j] = f(pre[i, j]); one thread per element."""
    n, f = pre.shape
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, n * f, step):
        i = e // f
        j = e - i * f
        out[i, j] = activation_value(pre[i, j], code, alpha)


@cuda.jit(**config.CUDA_JIT)
def activation_backward_kernel(dpre, dout, pre, out, code, alpha):
    """dpre[i, j] = dout[i, j] · f'(pre[i, j]); one thread per element."""
    n, f = pre.shape
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, n * f, step):
        i = e // f
        j = e - i * f
        dpre[i, j] = dout[i, j] * activation_derivative(pre[i, j], out[i, j], code, alpha)


@cuda.jit(**config.CUDA_JIT)
def maxout_forward_kernel(out, pre, pieces):
    """out[i, j] = max_p pre[i, j·k + p]; one thread per output element."""
    n, units = out.shape
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, n * units, step):
        i = e // units
        j = e - i * units
        base = j * pieces
        out[i, j] = pre[i, base + maxout_argmax(pre, i, base, pieces)]


@cuda.jit(**config.CUDA_JIT)
def maxout_backward_kernel(dpre, dout, pre, pieces):
    """dpre[i, j·k + p] = dout[i, j] for the first maximal p, else 0; one thread per unit."""
    n, units = dout.shape
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, n * units, step):
        i = e // units
        j = e - i * units
        base = j * pieces
        arg = maxout_argmax(pre, i, base, pieces)
        g = dout[i, j]
        for p in range(pieces):
            dpre[i, base + p] = g if p == arg else 0.0


def _grid(items):
    tpb = config.THREADS_PER_BLOCK
    return config.blocks_for(items, tpb), tpb


def activation_forward(out, pre, code, alpha, stream=0):
    """out = f(pre) elementwise; out and pre are (B, F) device arrays and may be the same array."""
    blocks, tpb = _grid(pre.shape[0] * pre.shape[1])
    activation_forward_kernel[blocks, tpb, stream](out, pre, code, alpha)


def activation_backward(dpre, dout, pre, out, code, alpha, stream=0):
    """dpre = dout ⊙ f'(pre); all (B, F) device arrays; dpre may be dout."""
    blocks, tpb = _grid(pre.shape[0] * pre.shape[1])
    activation_backward_kernel[blocks, tpb, stream](dpre, dout, pre, out, code, alpha)


def maxout_forward(out, pre, pieces, stream=0):
    """out[i, j] = max_p pre[i, j·k + p]; pre (B, U·k), out (B, U) device arrays, k = pieces."""
    blocks, tpb = _grid(out.shape[0] * out.shape[1])
    maxout_forward_kernel[blocks, tpb, stream](out, pre, pieces)


def maxout_backward(dpre, dout, pre, pieces, stream=0):
    """Routes dout (B, U) to the first maximal piece of each unit in dpre (B, U·k); others get 0."""
    blocks, tpb = _grid(dout.shape[0] * dout.shape[1])
    maxout_backward_kernel[blocks, tpb, stream](dpre, dout, pre, pieces)
