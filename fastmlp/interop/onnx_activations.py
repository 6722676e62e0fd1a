"""The activations of :mod:`fastmlp.kernels.cpu.activations` as ONNX subgraphs.

Each builder takes a :class:`~fastmlp.interop._onnx_graph.GraphBuilder`, the name of a (n, F)
pre-activation tensor and the :class:`fastmlp.Dense` layer, and returns the name of the (n, U)
activation (U = F except for maxout, U = F / k). They compute what fastmlp computes:

- linear: y = x (no node);  relu: Relu;  tanh: Tanh.
- sigmoid: y = 1/(1 + e^-x) for x ≥ 0 and e^x/(1 + e^x) otherwise, which neither overflows nor
  loses tiny values.
- leaky_relu: y = x if x > 0 else alpha·x;  elu: y = x if x > 0 else alpha·(e^x - 1). ONNX's
  float attributes are float32, so float32 graphs use LeakyRelu(alpha) and Elu(alpha) while
  float64 graphs compute them with alpha as a float64 constant (and e^x - 1 as an accurate
  expm1).
- softplus, stably: y = max(x, 0) + log1p(e^-|x|), with log1p(u) = log(1 + u)·u / ((1 + u) - 1)
  (u where 1 + u rounds to 1), so neither large |x| overflows nor small e^-|x| is lost
  (ONNX's Softplus is defined as log(e^x + 1), which overflows).
- gelu, exact: y = x Φ(x), Φ(x) = (1 + erf(x/√2)) / 2. float32 graphs use the Erf op. ONNX
  Runtime has no float64 Erf kernel, so float64 graphs evaluate Φ(x) = erfc(-x/√2) / 2 from
  elementary ops with the Chebyshev expansion in :data:`ERFC_CHEBYSHEV` (relative error about
  1e-15, up to 1e-13 where erfc underflows towards 1e-300).
- maxout (k pieces): unit j keeps the max of pre-activation columns j·k … j·k + k - 1:
  Reshape (n, U·k) → (n, U, k), then ReduceMax over the last axis.
"""

from __future__ import annotations

import math

import numpy as np

# Chebyshev coefficients c_0 … c_29 of  f(y) = log(erfcx(z) / t),  t = 2 / (2 + z),  y = 2t - 1,
# z >= 0 (erfcx(z) = e^{z²} erfc(z)), so that  erfc(z) = t·exp(-z² + c_0/2 + Σ_{k≥1} c_k T_k(y)).
# Computed with mpmath at 50 digits from an 80-point Chebyshev–Gauss quadrature; |c_k| < 1e-18
# for k ≥ 30 (the form of J. L. Schonfelder's 1978 expansions of erfc).
ERFC_CHEBYSHEV = (
    -1.3026537197817094, 0.64196979235649026, 0.019476473204185836, -0.0095615147868086316,
    -0.00094659534448203687, 0.00036683949785276145, 4.2523324806907772e-5,
    -2.0278578112534243e-5, -1.6242900046470255e-6, 1.3036558355805232e-6,
    1.5626441722066143e-8, -8.5238095914926543e-8, 6.5290544390988515e-9,
    5.0593434955514689e-9, -9.9136415649303309e-10, -2.2736512229318359e-10,
    9.6467911020155268e-11, 2.3940380830391147e-12, -6.8860275264975534e-12,
    8.9448792730907257e-13, 3.1309213993429581e-13, -1.1270822361367252e-13,
    3.8109052551892321e-16, 7.106097613609237e-15, -1.5230282014571043e-15,
    -9.457494571291234e-17, 1.210237189224279e-16, -2.816663087747177e-17,
    5.0030055594459017e-20, 2.3281042579529253e-18,
)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def _linear(g, x, layer):
    return x


def _relu(g, x, layer):
    return g.op("Relu", x)


def _leaky_relu(g, x, layer):
    if g.float_dtype == np.float32:
        return g.op("LeakyRelu", x, alpha=layer.alpha)
    slope = g.op("Mul", x, g.scalar(layer.alpha))
    return g.op("Where", g.op("Greater", x, g.scalar(0.0)), x, slope)


def expm1(g, x):
    """e^x - 1, accurate also for small |x| (Kahan's formula (u - 1)·x / log u, u = e^x; x where
    u rounds to 1, -1 where u - 1 rounds to -1)."""
    u = g.op("Exp", x)
    u_minus_1 = g.op("Sub", u, g.scalar(1.0))
    corrected = g.op("Div", g.op("Mul", u_minus_1, x), g.op("Log", u))
    near_zero = g.op("Where", g.op("Equal", u, g.scalar(1.0)), x, corrected)
    return g.op("Where", g.op("Equal", u_minus_1, g.scalar(-1.0)), u_minus_1, near_zero)


def _elu(g, x, layer):
    if g.float_dtype == np.float32:
        return g.op("Elu", x, alpha=layer.alpha)
    negative = g.op("Mul", expm1(g, x), g.scalar(layer.alpha))
    return g.op("Where", g.op("Greater", x, g.scalar(0.0)), x, negative)


def sigmoid(g, x, output=None):
    """σ(x) as fastmlp computes it: 1/(1 + e) for x ≥ 0 and e/(1 + e) otherwise, e = e^-|x|,
    so tiny values keep their relative accuracy (ONNX Runtime's Sigmoid flushes them to 0).
    ``output`` names the result (see ``GraphBuilder.op``)."""
    e = g.op("Exp", g.op("Neg", g.op("Abs", x)))
    one_plus_e = g.op("Add", e, g.scalar(1.0))
    positive = g.op("Div", g.scalar(1.0), one_plus_e)
    negative = g.op("Div", e, one_plus_e)
    return g.op("Where", g.op("GreaterOrEqual", x, g.scalar(0.0)), positive, negative,
                output=output)


def _sigmoid(g, x, layer):
    return sigmoid(g, x)


def _tanh(g, x, layer):
    return g.op("Tanh", x)


def log1p(g, u):
    """log(1 + u) for u ≥ 0, accurate also where 1 + u rounds to 1 (Goldberg's formula)."""
    v = g.op("Add", u, g.scalar(1.0))
    v_minus_1 = g.op("Sub", v, g.scalar(1.0))
    corrected = g.op("Div", g.op("Mul", g.op("Log", v), u), v_minus_1)
    return g.op("Where", g.op("Equal", v_minus_1, g.scalar(0.0)), u, corrected)


def _softplus(g, x, layer):
    tail = log1p(g, g.op("Exp", g.op("Neg", g.op("Abs", x))))
    return g.op("Add", g.op("Relu", x), tail)


def erfc_of_nonnegative(g, z):
    """erfc(z) for z ≥ 0 from :data:`ERFC_CHEBYSHEV`, summed with Clenshaw's recurrence
    b_k = c_k + 2y·b_{k+1} - b_{k+2}, f = c_0/2 + y·b_1 - b_2."""
    t = g.op("Div", g.scalar(2.0), g.op("Add", z, g.scalar(2.0)))
    two_y = g.op("Sub", g.op("Mul", t, g.scalar(4.0)), g.scalar(2.0))
    coefficients = ERFC_CHEBYSHEV
    b_next, b_next2 = g.scalar(coefficients[-1]), None
    for c in coefficients[-2:0:-1]:
        b = g.op("Mul", two_y, b_next)
        if b_next2 is not None:
            b = g.op("Sub", b, b_next2)
        b = g.op("Add", b, g.scalar(c))
        b_next, b_next2 = b, b_next
    y_b1 = g.op("Mul", g.op("Mul", two_y, b_next), g.scalar(0.5))
    f = g.op("Sub", g.op("Add", y_b1, g.scalar(0.5 * coefficients[0])), b_next2)
    exponent = g.op("Sub", f, g.op("Mul", z, z))
    return g.op("Mul", t, g.op("Exp", exponent))


def _gelu(g, x, layer):
    if g.float_dtype == np.float32:
        erf = g.op("Erf", g.op("Mul", x, g.scalar(_INV_SQRT2)))
        return g.op("Mul", g.op("Mul", x, g.scalar(0.5)), g.op("Add", erf, g.scalar(1.0)))
    # Φ(x) = erfc(|x|/√2)/2 for x < 0 and 1 - erfc(|x|/√2)/2 otherwise
    half_erfc = g.op("Mul", erfc_of_nonnegative(g, g.op("Mul", g.op("Abs", x),
                                                             g.scalar(_INV_SQRT2))),
                     g.scalar(0.5))
    cdf = g.op("Where", g.op("Less", x, g.scalar(0.0)), half_erfc,
               g.op("Sub", g.scalar(1.0), half_erfc))
    return g.op("Mul", x, cdf)


def _maxout(g, x, layer):
    pieces = g.op("Reshape", x, g.int64s([0, layer.units, layer.pieces], "maxout_shape"))
    if g.opset >= 18:
        return g.op("ReduceMax", pieces, g.int64s([2], "maxout_axes"), keepdims=0)
    return g.op("ReduceMax", pieces, axes=[2], keepdims=0)


ACTIVATION_GRAPHS = {
    "linear": _linear, "sigmoid": _sigmoid, "tanh": _tanh, "relu": _relu,
    "leaky_relu": _leaky_relu, "elu": _elu, "softplus": _softplus, "gelu": _gelu,
    "maxout": _maxout,
}


def add_activation(g, x, layer):
    """The activation of ``layer`` applied to the (n, layer.width) tensor ``x``; returns the name of
    the (n, layer.units) result."""
    try:
        build = ACTIVATION_GRAPHS[layer.activation]
    except KeyError:
        raise ValueError(f"activation {layer.activation!r} has no ONNX export") from None
    return build(g, x, layer)
