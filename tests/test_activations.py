"""Elementwise activations and maxout (kernels/cpu/activations.py) against float64 NumPy formulas."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import erfc, expit

from fastmlp.kernels.contract import ACTIVATION_CODES
from fastmlp.kernels.cpu.activations import (
    activation_backward,
    activation_forward,
    maxout_backward,
    maxout_forward,
    stable_sigmoid,
)

DTYPES = (np.float32, np.float64)
# (name, alpha): alpha only matters for leaky_relu and elu
CASES = (("linear", 0.0), ("sigmoid", 0.0), ("tanh", 0.0), ("relu", 0.0), ("leaky_relu", 0.01),
         ("leaky_relu", 0.2), ("elu", 1.0), ("elu", 0.5), ("softplus", 0.0), ("gelu", 0.0))
CASE_IDS = [f"{name}-{alpha}" for name, alpha in CASES]
LARGE = np.array([-1e4, -50.0, 50.0, 1e4])


def tolerance(dtype):
    if dtype == np.float64:
        return dict(rtol=1e-12, atol=1e-14)
    return dict(rtol=2e-6, atol=1e-6)


def sech2(x):
    """1 - tanh² x written without tanh: 4 e^{-2|x|} / (1 + e^{-2|x|})²."""
    e = np.exp(-2.0 * np.abs(x))
    return 4.0 * e / (1.0 + e) ** 2


def reference(name, x, alpha):
    """(f(x), f'(x)) in float64, from formulas independent of the kernel's."""
    x = np.asarray(x, dtype=np.float64)
    if name == "linear":
        return x.copy(), np.ones_like(x)
    if name == "sigmoid":
        return expit(x), expit(x) * expit(-x)
    if name == "tanh":
        return np.tanh(x), sech2(x)
    if name == "relu":
        return np.where(x > 0, x, 0.0), np.where(x > 0, 1.0, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, x, alpha * x), np.where(x > 0, 1.0, alpha)
    if name == "elu":
        neg = np.minimum(x, 0.0)
        return np.where(x > 0, x, alpha * np.expm1(neg)), np.where(x > 0, 1.0, alpha * np.exp(neg))
    if name == "softplus":
        return np.logaddexp(0.0, x), expit(x)
    if name == "gelu":
        cdf = 0.5 * erfc(-x / math.sqrt(2.0))
        return x * cdf, cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    raise KeyError(name)


def grid():
    """(6, 8) pre-activations: small, moderate, zero and large values of both signs."""
    rng = np.random.default_rng(0)
    fixed = np.array([-1e4, -50.0, -20.0, -5.0, -1.3, -0.2, -1e-3, 0.0,
                      1e-3, 0.2, 1.3, 5.0, 20.0, 50.0, 1e4, -0.7])
    return np.concatenate([fixed, rng.normal(scale=2.0, size=32)]).reshape(6, 8)


def forward(name, alpha, x):
    out = np.full_like(x, np.nan)
    activation_forward(out, x, ACTIVATION_CODES[name], alpha)
    return out


def backward(name, alpha, x, out, dout):
    dpre = np.full_like(x, np.nan)
    activation_backward(dpre, dout, x, out, ACTIVATION_CODES[name], alpha)
    return dpre


def test_codes_are_distinct_and_complete():
    assert set(ACTIVATION_CODES) == {"linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu",
                                     "softplus", "gelu", "maxout"}
    assert len(set(ACTIVATION_CODES.values())) == len(ACTIVATION_CODES)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,alpha", CASES, ids=CASE_IDS)
def test_forward_matches_reference(name, alpha, dtype):
    x = grid().astype(dtype)
    out = forward(name, alpha, x)
    assert out.dtype == dtype
    value, _ = reference(name, x, alpha)
    assert_allclose(out, value, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,alpha", CASES, ids=CASE_IDS)
def test_backward_matches_analytic_derivative(name, alpha, dtype):
    x = grid().astype(dtype)
    dout = np.random.default_rng(1).normal(size=x.shape).astype(dtype)
    out = forward(name, alpha, x)
    dpre = backward(name, alpha, x, out, dout)
    _, deriv = reference(name, x, alpha)
    assert_allclose(dpre, dout.astype(np.float64) * deriv, **tolerance(dtype))


@pytest.mark.parametrize("name,alpha", CASES, ids=CASE_IDS)
def test_derivative_matches_central_differences(name, alpha):
    rng = np.random.default_rng(2)
    x = rng.uniform(-6.0, 6.0, size=(5, 7))
    x[np.abs(x) < 1e-2] = 0.5  # stay away from the kinks of relu, leaky_relu and elu
    h = 1e-6
    numeric = (forward(name, alpha, x + h) - forward(name, alpha, x - h)) / (2 * h)
    analytic = backward(name, alpha, x, forward(name, alpha, x), np.ones_like(x))
    assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,alpha", CASES, ids=CASE_IDS)
def test_large_inputs_stay_finite_and_exact(name, alpha, dtype):
    values = LARGE if dtype == np.float32 else np.concatenate([LARGE, [-1e300, 1e300]])
    x = values.reshape(1, -1).astype(dtype)
    with np.errstate(over="ignore"):  # the float64 reference itself squares 1e300 for gelu
        value, deriv = reference(name, x, alpha)
    out = forward(name, alpha, x)
    dpre = backward(name, alpha, x, out, np.ones_like(x))
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dpre))
    assert_allclose(out, value, **tolerance(dtype))
    assert_allclose(dpre, deriv, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_saturating_activations_at_large_inputs(dtype):
    x = np.array([[-1e4, -50.0, 50.0, 1e4]], dtype=dtype)
    assert_array_equal(forward("sigmoid", 0.0, x)[0, [0, 3]], [0.0, 1.0])
    assert_array_equal(forward("tanh", 0.0, x)[0], [-1.0, -1.0, 1.0, 1.0])
    assert_array_equal(forward("softplus", 0.0, x)[0, [0, 3]], [0.0, 1e4])
    assert forward("softplus", 0.0, x)[0, 2] == dtype(50.0)
    assert_array_equal(forward("elu", 1.0, x)[0, [0, 1]], [-1.0, -1.0])
    assert_array_equal(forward("gelu", 0.0, x)[0, [0, 3]], [0.0, 1e4])
    # sigmoid far in the negative tail keeps its relative accuracy
    assert forward("sigmoid", 0.0, np.array([[-50.0]]))[0, 0] == pytest.approx(math.exp(-50), rel=1e-12)


def test_stable_sigmoid_scalar():
    for x in (-1e4, -745.0, -50.0, -1.0, 0.0, 1.0, 50.0, 745.0, 1e4):
        assert stable_sigmoid(x) == pytest.approx(float(expit(x)), rel=1e-14, abs=1e-300)
    assert stable_sigmoid(0.0) == 0.5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,alpha", CASES, ids=CASE_IDS)
def test_in_place_matches_out_of_place(name, alpha, dtype):
    x = grid().astype(dtype)
    dout = np.random.default_rng(3).normal(size=x.shape).astype(dtype)
    out = forward(name, alpha, x)
    dpre = backward(name, alpha, x, out, dout)
    y = x.copy()
    activation_forward(y, y, ACTIVATION_CODES[name], alpha)
    assert_array_equal(y, out)
    d = dout.copy()
    activation_backward(d, d, x, out, ACTIVATION_CODES[name], alpha)
    assert_array_equal(d, dpre)


# ----------------------------------------------------------------------------------------- maxout


def maxout_reference(pre, k):
    n, f = pre.shape
    return pre.reshape(n, f // k, k).max(axis=2)


def maxout_grad_reference(pre, dout, k):
    n, f = pre.shape
    units = f // k
    arg = pre.reshape(n, units, k).argmax(axis=2)  # first maximum on ties
    dpre = np.zeros((n, units, k))
    rows, cols = np.meshgrid(np.arange(n), np.arange(units), indexing="ij")
    dpre[rows, cols, arg] = dout
    return dpre.reshape(n, f)


def maxout_pair(pre, dout, k):
    n, f = pre.shape
    out = np.full((n, f // k), np.nan, dtype=pre.dtype)
    maxout_forward(out, pre, k)
    dpre = np.full_like(pre, np.nan)
    maxout_backward(dpre, dout, pre, k)
    return out, dpre


def test_maxout_column_layout_by_hand():
    # unit j owns the contiguous columns j*k .. j*k + k - 1
    pre = np.array([[1.0, 5.0, 2.0, 7.0, 0.0, 3.0],
                    [-4.0, -6.0, -5.0, -1.0, 9.0, -2.0]])
    dout = np.array([[10.0, 20.0], [30.0, 40.0]])
    out, dpre = maxout_pair(pre, dout, 3)
    assert_array_equal(out, [[5.0, 7.0], [-4.0, 9.0]])
    assert_array_equal(dpre, [[0.0, 10.0, 0.0, 20.0, 0.0, 0.0],
                              [30.0, 0.0, 0.0, 0.0, 40.0, 0.0]])
    # the same row read with two pieces: three units (1,5) (2,7) (0,3)
    out2, dpre2 = maxout_pair(pre, np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), 2)
    assert_array_equal(out2, [[5.0, 7.0, 3.0], [-4.0, -1.0, 9.0]])
    assert_array_equal(dpre2, [[0.0, 1.0, 0.0, 2.0, 0.0, 3.0],
                               [4.0, 0.0, 0.0, 5.0, 6.0, 0.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pieces", (2, 3))
def test_maxout_matches_reference(pieces, dtype):
    rng = np.random.default_rng(4)
    pre = rng.normal(size=(7, 4 * pieces)).astype(dtype)
    pre[0, :pieces] = [-1e4, 1e4, 50.0][:pieces]
    dout = rng.normal(size=(7, 4)).astype(dtype)
    out, dpre = maxout_pair(pre, dout, pieces)
    assert out.dtype == dtype and dpre.dtype == dtype
    assert_array_equal(out, maxout_reference(pre, pieces))  # a max is exact in any precision
    assert_array_equal(dpre, maxout_grad_reference(pre, dout, pieces))
    # every unit sends its gradient to exactly one of its pieces
    assert_array_equal((dpre.reshape(7, 4, pieces) != 0).sum(axis=2), 1)


@pytest.mark.parametrize("pieces", (2, 3))
def test_maxout_ties_route_to_first_piece(pieces):
    pre = np.zeros((2, 2 * pieces))
    pre[1, :] = 3.0
    pre[1, pieces:] = [1.0] + [4.0] * (pieces - 1)  # tie among the later pieces of unit 1
    dout = np.array([[1.0, 2.0], [3.0, 4.0]])
    _, dpre = maxout_pair(pre, dout, pieces)
    expected = np.zeros_like(pre)
    expected[0, 0], expected[0, pieces] = 1.0, 2.0
    expected[1, 0], expected[1, pieces + 1] = 3.0, 4.0
    assert_array_equal(dpre, expected)


@pytest.mark.parametrize("pieces", (2, 3))
def test_maxout_backward_matches_central_differences(pieces):
    rng = np.random.default_rng(5)
    pre = rng.normal(size=(4, 3 * pieces))
    dout = rng.normal(size=(4, 3))
    _, dpre = maxout_pair(pre, dout, pieces)
    h = 1e-6
    numeric = np.zeros_like(pre)
    for idx in np.ndindex(pre.shape):
        up, down = pre.copy(), pre.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = np.sum(dout * (maxout_reference(up, pieces) - maxout_reference(down, pieces))) / (2 * h)
    assert_allclose(dpre, numeric, rtol=1e-6, atol=1e-8)
