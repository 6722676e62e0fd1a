"""Dense layer kernels (kernels/cpu/dense.py) against float64 NumPy products."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import erfc, expit

from fastmlp.kernels.contract import ACTIVATION_CODES, MAXOUT
from fastmlp.kernels.cpu.dense import (
    activation_grad_into,
    dense_activation_backward,
    dense_activation_forward,
    dense_backward,
    dense_forward,
)

DTYPES = (np.float32, np.float64)
B, I, U = 7, 5, 3  # batch, inputs, units: deliberately non-square
# (name, alpha, pieces)
CASES = (("linear", 0.0, 1), ("sigmoid", 0.0, 1), ("tanh", 0.0, 1), ("relu", 0.0, 1),
         ("leaky_relu", 0.1, 1), ("elu", 1.0, 1), ("softplus", 0.0, 1), ("gelu", 0.0, 1),
         ("maxout", 0.0, 2), ("maxout", 0.0, 3))
CASE_IDS = [f"{name}-{pieces}" if name == "maxout" else name for name, _, pieces in CASES]


def tolerance(dtype):
    if dtype == np.float64:
        return dict(rtol=1e-12, atol=1e-13)
    return dict(rtol=1e-5, atol=1e-5)


def act_reference(name, pre, alpha, pieces):
    """(f(pre), a function dout -> dpre) in float64."""
    x = np.asarray(pre, dtype=np.float64)
    if name == "maxout":
        n, f = x.shape
        grouped = x.reshape(n, f // pieces, pieces)
        arg = grouped.argmax(axis=2)
        onehot = np.arange(pieces) == arg[..., None]
        return grouped.max(axis=2), lambda dout: (onehot * dout[..., None]).reshape(n, f)
    if name == "linear":
        value, deriv = x, np.ones_like(x)
    elif name == "sigmoid":
        value, deriv = expit(x), expit(x) * expit(-x)
    elif name == "tanh":
        value, deriv = np.tanh(x), 1.0 / np.cosh(x) ** 2
    elif name == "relu":
        value, deriv = np.maximum(x, 0.0), (x > 0).astype(float)
    elif name == "leaky_relu":
        value, deriv = np.where(x > 0, x, alpha * x), np.where(x > 0, 1.0, alpha)
    elif name == "elu":
        value = np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))
        deriv = np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))
    elif name == "softplus":
        value, deriv = np.logaddexp(0.0, x), expit(x)
    elif name == "gelu":
        cdf = 0.5 * erfc(-x / math.sqrt(2.0))
        value, deriv = x * cdf, cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    else:
        raise KeyError(name)
    return value, lambda dout: dout * deriv


def make(dtype, pieces=1, seed=0):
    rng = np.random.default_rng(seed)
    f = U * pieces
    x = rng.normal(size=(B, I)).astype(dtype)
    W = rng.normal(scale=0.7, size=(I, f)).astype(dtype)
    b = rng.normal(scale=0.5, size=f).astype(dtype)
    dout = rng.normal(size=(B, U)).astype(dtype)
    return x, W, b, dout


def f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward(dtype):
    x, W, b, _ = make(dtype)
    pre = np.full((B, U), np.nan, dtype=dtype)
    dense_forward(pre, x, W, b)
    x64, W64, b64 = f64(x, W, b)
    assert_allclose(pre, x64 @ W64 + b64, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward_wide_and_tall(dtype):
    rng = np.random.default_rng(1)
    for n, i, f in ((1, 9, 2), (11, 2, 13), (4, 1, 1)):
        x = rng.normal(size=(n, i)).astype(dtype)
        W = rng.normal(size=(i, f)).astype(dtype)
        b = rng.normal(size=f).astype(dtype)
        pre = np.full((n, f), np.nan, dtype=dtype)
        dense_forward(pre, x, W, b)
        x64, W64, b64 = f64(x, W, b)
        assert_allclose(pre, x64 @ W64 + b64, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,alpha,pieces", CASES, ids=CASE_IDS)
def test_dense_activation_forward(name, alpha, pieces, dtype):
    x, W, b, _ = make(dtype, pieces)
    pre = np.full((B, U * pieces), np.nan, dtype=dtype)
    out = np.full((B, U), np.nan, dtype=dtype)
    dense_activation_forward(out, pre, x, W, b, ACTIVATION_CODES[name], alpha, pieces)
    x64, W64, b64 = f64(x, W, b)
    pre_ref = x64 @ W64 + b64
    assert_allclose(pre, pre_ref, **tolerance(dtype))
    # the activation of the kernel's own pre-activation (maxout picks exactly one of them)
    out_ref, _ = act_reference(name, pre, alpha, pieces)
    assert_allclose(out, out_ref, **tolerance(dtype))
    assert_allclose(out, act_reference(name, pre_ref, alpha, pieces)[0], **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("need_dx", (True, False))
def test_dense_backward(need_dx, dtype):
    x, W, _, _ = make(dtype)
    dpre = np.random.default_rng(2).normal(size=(B, U)).astype(dtype)
    sentinel = np.arange(B * I, dtype=dtype).reshape(B, I)
    dx = sentinel.copy()
    dW = np.full((I, U), np.nan, dtype=dtype)
    db = np.full(U, np.nan, dtype=dtype)
    dense_backward(dx, dW, db, dpre, x, W, need_dx)
    x64, W64, dpre64 = f64(x, W, dpre)
    assert_allclose(dW, x64.T @ dpre64, **tolerance(dtype))
    assert_allclose(db, dpre64.sum(axis=0), **tolerance(dtype))
    if need_dx:
        assert_allclose(dx, dpre64 @ W64.T, **tolerance(dtype))
    else:
        assert_array_equal(dx, sentinel)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_backward_overwrites_stale_gradients(dtype):
    x, W, _, _ = make(dtype)
    dpre = np.random.default_rng(3).normal(size=(B, U)).astype(dtype)
    first = [np.zeros((B, I), dtype), np.zeros((I, U), dtype), np.zeros(U, dtype)]
    dense_backward(*first, dpre, x, W, True)
    again = [a + 100 for a in first]
    dense_backward(*again, dpre, x, W, True)
    for a, b in zip(first, again):
        assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("need_dx", (True, False))
@pytest.mark.parametrize("name,alpha,pieces", CASES, ids=CASE_IDS)
def test_dense_activation_backward(name, alpha, pieces, need_dx, dtype):
    x, W, b, dout = make(dtype, pieces, seed=4)
    code = ACTIVATION_CODES[name]
    f = U * pieces
    pre = np.empty((B, f), dtype=dtype)
    out = np.empty((B, U), dtype=dtype)
    dense_activation_forward(out, pre, x, W, b, code, alpha, pieces)
    sentinel = np.full((B, I), -3.0, dtype=dtype)
    dx = sentinel.copy()
    dW = np.full((I, f), np.nan, dtype=dtype)
    db = np.full(f, np.nan, dtype=dtype)
    dpre = np.full((B, f), np.nan, dtype=dtype)
    dense_activation_backward(dx, dW, db, dpre, dout, x, W, pre, out, code, alpha, pieces, need_dx)

    x64, W64, dout64 = f64(x, W, dout)
    _, grad = act_reference(name, pre, alpha, pieces)  # routing/derivative at the kernel's pre
    dpre_ref = grad(dout64)
    assert_allclose(dpre, dpre_ref, **tolerance(dtype))
    assert_allclose(dW, x64.T @ dpre_ref, **tolerance(dtype))
    assert_allclose(db, dpre_ref.sum(axis=0), **tolerance(dtype))
    if need_dx:
        assert_allclose(dx, dpre_ref @ W64.T, **tolerance(dtype))
    else:
        assert_array_equal(dx, sentinel)


@pytest.mark.parametrize("name,alpha,pieces", CASES, ids=CASE_IDS)
def test_dense_activation_backward_matches_central_differences(name, alpha, pieces):
    """Gradient of L = Σ dout ⊙ f(x·W + b) with respect to x, W and b, in float64."""
    x, W, b, dout = make(np.float64, pieces, seed=5)
    code = ACTIVATION_CODES[name]
    f = U * pieces

    def loss(x_, W_, b_):
        pre_ = np.empty((B, f))
        out_ = np.empty((B, U))
        dense_activation_forward(out_, pre_, x_, W_, b_, code, alpha, pieces)
        return float(np.sum(dout * out_))

    pre = np.empty((B, f))
    out = np.empty((B, U))
    dense_activation_forward(out, pre, x, W, b, code, alpha, pieces)
    assert np.min(np.abs(pre)) > 1e-4  # no pre-activation at a relu kink
    if name == "maxout":
        gaps = np.diff(np.sort(pre.reshape(B, U, pieces), axis=2), axis=2)
        assert np.min(gaps) > 1e-4  # no near-tie between pieces
    dx, dW, db = np.empty((B, I)), np.empty((I, f)), np.empty(f)
    dense_activation_backward(dx, dW, db, np.empty((B, f)), dout, x, W, pre, out, code, alpha, pieces,
                              True)
    h = 1e-6
    for param, grad in ((x, dx), (W, dW), (b, db)):
        numeric = np.zeros_like(param)
        for idx in np.ndindex(param.shape):
            old = param[idx]
            param[idx] = old + h
            up = loss(x, W, b)
            param[idx] = old - h
            down = loss(x, W, b)
            param[idx] = old
            numeric[idx] = (up - down) / (2 * h)
        assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_grad_into_in_place(dtype):
    """dpre may be dout for the elementwise activations (F = U)."""
    x, W, b, dout = make(dtype, seed=6)
    code = ACTIVATION_CODES["tanh"]
    pre = np.empty((B, U), dtype=dtype)
    out = np.empty((B, U), dtype=dtype)
    dense_activation_forward(out, pre, x, W, b, code, 0.0, 1)
    expected = np.empty_like(pre)
    activation_grad_into(expected, dout, pre, out, code, 0.0, 1)
    d = dout.copy()
    activation_grad_into(d, d, pre, out, code, 0.0, 1)
    assert_array_equal(d, expected)
    assert MAXOUT == ACTIVATION_CODES["maxout"]
