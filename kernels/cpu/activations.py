"""Elementwise activations and their derivatives, forward and backward.

Every activation is identified by an integer code (``contract.ACTIVATION_CODES``) so that one
compiled network kernel can serve any mix of layers. Shapes: ``pre`` and ``out`` are (B, F); maxout
reads (B, U·k) pre-activations and writes (B, U).

Formulas (x the pre-activation, y = f(x), alpha the layer's parameter):

- linear: y = x;                     f' = 1
- sigmoid: y = 1 / (1 + e^-x);       f' = y (1 - y)           (computed without overflow)
- tanh: y = tanh x;                  f' = 1 - y²
- relu: y = max(x, 0);               f' = [x > 0]
- leaky_relu: y = x if x > 0 else alpha·x;    f' = 1 or alpha
- elu: y = x if x > 0 else alpha (e^x - 1);   f' = 1 or y + alpha
- softplus: y = max(x, 0) + log1p(e^-|x|);    f' = sigmoid(x)
- gelu (exact): y = x Φ(x), Φ(x) = (1 + erf(x/√2)) / 2;   f' = Φ(x) + x φ(x)
- maxout (k pieces): unit j owns the contiguous columns j·k … j·k + k - 1 of the pre-activation and
  keeps their maximum; the gradient flows to the first column that attains it.

The scalar rules (``activation_value``, ``activation_derivative``, ``stable_sigmoid``) are the
shared ones of :mod:`fastmlp.kernels.rules`; this module holds the CPU loops around them.
"""

from ..config import JIT, JIT_INTERNAL
from ..contract import LEAKY_RELU, LINEAR, MAXOUT, RELU  # noqa: F401 (MAXOUT: callers test it)
from ..jit import njit
from ..rules import activation_derivative, activation_value, stable_sigmoid  # noqa: F401


@njit(**JIT_INTERNAL)
def bias_activation_block(out, pre, b, code, alpha, r0, r1, c0, c1):
    """pre[i, j] += b[j] and out[i, j] = f(pre[i, j]) for rows r0:r1 and columns c0:c1 of the
    (B, F) arrays; ``b`` (F,) may be empty (no bias). The piecewise-linear activations get loops of
    their own so that the compiler vectorizes them; the others share one loop around
    :func:`activation_value`. (Loops run over row views from index 0: an index that might be
    negative would cost a wraparound test per element and stop vectorization.)"""
    has_bias = b.shape[0] > 0
    bias = b[c0:c1]
    zero = pre.dtype.type(0)
    slope = pre.dtype.type(alpha)
    width = c1 - c0
    for i in range(r0, r1):
        p = pre[i, c0:c1]
        o = out[i, c0:c1]
        if code == RELU:
            for j in range(width):
                v = p[j] + bias[j] if has_bias else p[j]
                p[j] = v
                o[j] = v if v > zero else zero
        elif code == LEAKY_RELU:
            for j in range(width):
                v = p[j] + bias[j] if has_bias else p[j]
                p[j] = v
                o[j] = v if v > zero else slope * v
        elif code == LINEAR:
            for j in range(width):
                v = p[j] + bias[j] if has_bias else p[j]
                p[j] = v
                o[j] = v
        else:
            for j in range(width):
                v = p[j] + bias[j] if has_bias else p[j]
                p[j] = v
                o[j] = activation_value(v, code, alpha)


@njit(**JIT)
def bias_activation_forward(out, pre, b, code, alpha):
    """:func:`bias_activation_block` over the whole (B, F) arrays."""
    bias_activation_block(out, pre, b, code, alpha, 0, pre.shape[0], 0, pre.shape[1])


@njit(**JIT)
def activation_forward(out, pre, code, alpha):
    """out[i, j] = f(pre[i, j]); out and pre are (B, F) and may be the same array."""
    bias_activation_block(out, pre, pre[0, :0], code, alpha, 0, pre.shape[0], 0, pre.shape[1])


@njit(**JIT_INTERNAL)
def activation_backward_block(dpre, dout, pre, out, code, alpha, r0, r1, c0, c1):
    """dpre[i, j] = dout[i, j] · f'(pre[i, j]) for rows r0:r1, columns c0:c1 of (B, F) arrays;
    dpre may be dout. Piecewise-linear activations get vectorizable loops of their own."""
    zero = pre.dtype.type(0)
    slope = pre.dtype.type(alpha)
    width = c1 - c0
    for i in range(r0, r1):
        d = dpre[i, c0:c1]
        g = dout[i, c0:c1]
        x = pre[i, c0:c1]
        if code == RELU:
            for j in range(width):
                d[j] = g[j] if x[j] > zero else zero
        elif code == LEAKY_RELU:
            for j in range(width):
                d[j] = g[j] if x[j] > zero else slope * g[j]
        elif code == LINEAR:
            for j in range(width):
                d[j] = g[j]
        else:
            y = out[i, c0:c1]
            for j in range(width):
                d[j] = g[j] * activation_derivative(x[j], y[j], code, alpha)


@njit(**JIT)
def activation_backward(dpre, dout, pre, out, code, alpha):
    """dpre[i, j] = dout[i, j] · f'(pre[i, j]); all (B, F); dpre may be dout."""
    activation_backward_block(dpre, dout, pre, out, code, alpha, 0, pre.shape[0], 0, pre.shape[1])


@njit(**JIT_INTERNAL)
def maxout_forward_block(out, pre, pieces, r0, r1, u0, u1):
    """out[i, j] = max_p pre[i, j·k + p] for rows r0:r1 and units u0:u1; pre (B, U·k), out (B, U)."""
    for i in range(r0, r1):
        for j in range(u0, u1):
            base = j * pieces
            best = pre[i, base]
            for p in range(1, pieces):
                v = pre[i, base + p]
                if v > best:
                    best = v
            out[i, j] = best


@njit(**JIT)
def maxout_forward(out, pre, pieces):
    """out[i, j] = max_p pre[i, j·k + p]; pre is (B, U·k), out is (B, U), k = pieces."""
    maxout_forward_block(out, pre, pieces, 0, out.shape[0], 0, out.shape[1])


@njit(**JIT_INTERNAL)
def maxout_backward_block(dpre, dout, pre, pieces, r0, r1, u0, u1):
    """dpre[i, j·k + p] = dout[i, j] for the first p attaining the max, else 0, for rows r0:r1
    and units u0:u1; shapes as :func:`maxout_forward_block`."""
    for i in range(r0, r1):
        for j in range(u0, u1):
            base = j * pieces
            arg = 0
            best = pre[i, base]
            for p in range(1, pieces):
                v = pre[i, base + p]
                if v > best:
                    best = v
                    arg = p
            for p in range(pieces):
                dpre[i, base + p] = dout[i, j] if p == arg else 0.0


@njit(**JIT)
def maxout_backward(dpre, dout, pre, pieces):
    """dpre[i, j·k + p] = dout[i, j] for the first p attaining the max, else 0; shapes as forward."""
    maxout_backward_block(dpre, dout, pre, pieces, 0, dout.shape[0], 0, dout.shape[1])
