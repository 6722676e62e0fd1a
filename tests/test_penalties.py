"""L1/L2 penalty kernels (kernels/cpu/penalties.py) against float64 NumPy."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastmlp.kernels.cpu.penalties import penalty_grad, penalty_value

DTYPES = (np.float32, np.float64)
PENALTIES = ((0.0, 0.0), (0.03, 0.0), (0.0, 0.05), (0.02, 0.04))  # none, l1, l2, elastic net
IDS = ["none", "l1", "l2", "both"]


def make(dtype, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=37).astype(dtype)
    w[[3, 10, 20]] = 0.0  # sign(0) = 0
    return w


def ref_value(w, l1, l2):
    w = np.asarray(w, dtype=np.float64)
    return l1 * np.abs(w).sum() + l2 * (w ** 2).sum()


def ref_grad(w, l1, l2):
    w = np.asarray(w, dtype=np.float64)
    return l1 * np.sign(w) + 2.0 * l2 * w


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l1,l2", PENALTIES, ids=IDS)
def test_value(l1, l2, dtype):
    w = make(dtype)
    value = penalty_value(w, l1, l2)
    assert isinstance(value, float)
    rel = 1e-12 if dtype == np.float64 else 1e-6
    assert value == pytest.approx(ref_value(w, l1, l2), rel=rel, abs=0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l1,l2", PENALTIES, ids=IDS)
def test_gradient_accumulates(l1, l2, dtype):
    w = make(dtype)
    start = np.linspace(-1.0, 1.0, w.size).astype(dtype)
    dw = start.copy()
    penalty_grad(dw, w, l1, l2)
    tol = dict(rtol=1e-12, atol=1e-15) if dtype == np.float64 else dict(rtol=1e-6, atol=1e-7)
    assert_allclose(dw, start.astype(np.float64) + ref_grad(w, l1, l2), **tol)
    assert_array_equal(w, make(dtype))  # the weights are read only


@pytest.mark.parametrize("dtype", DTYPES)
def test_sign_of_zero_is_zero(dtype):
    w = np.array([0.0, -0.0, 2.0, -3.0], dtype=dtype)
    dw = np.zeros_like(w)
    penalty_grad(dw, w, 0.5, 0.0)
    assert_array_equal(dw, [0.0, 0.0, 0.5, -0.5])
    dw = np.zeros_like(w)
    penalty_grad(dw, w, 0.5, 0.25)
    assert_array_equal(dw, [0.0, 0.0, 0.5 + 1.0, -0.5 - 1.5])
    assert penalty_value(w, 0.5, 0.25) == 0.5 * 5.0 + 0.25 * 13.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_penalty_is_a_no_op(dtype):
    w = make(dtype, seed=1)
    assert penalty_value(w, 0.0, 0.0) == 0.0
    dw = np.arange(w.size, dtype=dtype)
    penalty_grad(dw, w, 0.0, 0.0)
    assert_array_equal(dw, np.arange(w.size))


@pytest.mark.parametrize("l1,l2", PENALTIES[1:], ids=IDS[1:])
def test_gradient_matches_central_differences(l1, l2):
    w = make(np.float64, seed=2)
    w[w == 0.0] = 0.4  # |w| has no derivative at 0; check the smooth points
    dw = np.zeros_like(w)
    penalty_grad(dw, w, l1, l2)
    h = 1e-6
    numeric = np.zeros_like(w)
    for k in range(w.size):
        up, down = w.copy(), w.copy()
        up[k] += h
        down[k] -= h
        numeric[k] = (penalty_value(up, l1, l2) - penalty_value(down, l1, l2)) / (2 * h)
    assert_allclose(dw, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_flattened_matrix_view(dtype):
    """Callers pass a weight matrix as a 1-D view; the gradient lands in the matrix."""
    W = np.random.default_rng(3).normal(size=(5, 7)).astype(dtype)
    dW = np.zeros_like(W)
    penalty_grad(dW.reshape(-1), W.reshape(-1), 0.1, 0.2)
    tol = dict(rtol=1e-12) if dtype == np.float64 else dict(rtol=1e-6, atol=1e-7)
    assert_allclose(dW, ref_grad(W, 0.1, 0.2), **tol)
    assert penalty_value(W.reshape(-1), 0.1, 0.2) == pytest.approx(ref_value(W, 0.1, 0.2),
                                                                  rel=tol["rtol"])
