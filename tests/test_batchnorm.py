"""Batch normalization kernels (kernels/cpu/batchnorm.py) against NumPy and torch.nn.BatchNorm1d."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastmlp.kernels.cpu.batchnorm import (
    batchnorm_backward,
    batchnorm_backward_eval,
    batchnorm_forward_eval,
    batchnorm_forward_train,
    batchnorm_param_grads,
)

DTYPES = (np.float32, np.float64)
EPS = 1e-5
MOMENTUM = 0.1
B, F = 9, 4


def tolerance(dtype):
    if dtype == np.float64:
        return dict(rtol=1e-12, atol=1e-12)
    return dict(rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------ float64 NumPy reference


def ref_train(x, gamma, beta, rmean, rvar):
    """(y, xhat, mean, invstd, new running mean, new running var)."""
    n = x.shape[0]
    mu = x.sum(axis=0) / n
    var = ((x - mu) ** 2).sum(axis=0) / n
    invstd = 1.0 / np.sqrt(var + EPS)
    xhat = (x - mu) * invstd
    unbiased = ((x - mu) ** 2).sum(axis=0) / (n - 1)
    return (gamma * xhat + beta, xhat, mu, invstd,
            (1 - MOMENTUM) * rmean + MOMENTUM * mu, (1 - MOMENTUM) * rvar + MOMENTUM * unbiased)


def ref_eval(x, gamma, beta, rmean, rvar):
    return gamma * (x - rmean) / np.sqrt(rvar + EPS) + beta


def ref_backward_train(dy, x, gamma):
    """The textbook chain rule through μ and σ² (Ioffe & Szegedy 2015, algorithm 1)."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    std = np.sqrt(var + EPS)
    xhat = (x - mu) / std
    dxhat = dy * gamma
    dvar = np.sum(dxhat * (x - mu), axis=0) * -0.5 * std ** -3
    dmu = -np.sum(dxhat, axis=0) / std + dvar * np.mean(-2.0 * (x - mu), axis=0)
    dx = dxhat / std + dvar * 2.0 * (x - mu) / n + dmu / n
    return dx, np.sum(dy * xhat, axis=0), np.sum(dy, axis=0)


# ---------------------------------------------------------------------------------------- helpers


def make(dtype, n=B, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, F)) * [1.0, 3.0, 0.2, 10.0] + [0.0, -2.0, 5.0, 1.0]).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, size=F).astype(dtype)
    beta = rng.normal(size=F).astype(dtype)
    dy = rng.normal(size=(n, F)).astype(dtype)
    return x, gamma, beta, dy


def train(x, gamma, beta, rmean, rvar, update=True, y=None):
    n, f = x.shape
    y = np.full_like(x, np.nan) if y is None else y
    xhat = np.full_like(x, np.nan)
    mean = np.full(f, np.nan, dtype=x.dtype)
    invstd = np.full(f, np.nan, dtype=x.dtype)
    batchnorm_forward_train(y, xhat, mean, invstd, x, gamma, beta, rmean, rvar, MOMENTUM, EPS, update)
    return y, xhat, mean, invstd


def evaluate(x, gamma, beta, rmean, rvar, y=None):
    y = np.full_like(x, np.nan) if y is None else y
    xhat = np.full_like(x, np.nan)
    invstd = np.full(x.shape[1], np.nan, dtype=x.dtype)
    batchnorm_forward_eval(y, xhat, invstd, x, gamma, beta, rmean, rvar, EPS)
    return y, xhat, invstd


def grads(kernel, dy, xhat, gamma, invstd, dx=None):
    dx = np.full_like(dy, np.nan) if dx is None else dx
    dgamma = np.full_like(gamma, np.nan)
    dbeta = np.full_like(gamma, np.nan)
    kernel(dx, dgamma, dbeta, dy, xhat, gamma, invstd)
    return dx, dgamma, dbeta


def f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def numeric_grads(fn, dy, arrays, h=1e-6):
    """Central differences of Σ dy ⊙ fn(*arrays) with respect to each array (modified in place)."""
    result = []
    for a in arrays:
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + h
            up = np.sum(dy * fn(*arrays))
            a[idx] = old - h
            down = np.sum(dy * fn(*arrays))
            a[idx] = old
            g[idx] = (up - down) / (2 * h)
        result.append(g)
    return result


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_forward(dtype):
    x, gamma, beta, _ = make(dtype)
    rmean = np.zeros(F, dtype)
    rvar = np.ones(F, dtype)
    y, xhat, mean, invstd = train(x, gamma, beta, rmean, rvar)
    expected = ref_train(*f64(x, gamma, beta), np.zeros(F), np.ones(F))
    for got, want in zip((y, xhat, mean, invstd, rmean, rvar), expected):
        assert got.dtype == dtype
        assert_allclose(got, want, **tolerance(dtype))
    # the normalized batch has mean 0 and biased variance 1/(1 + eps/σ²)
    assert_allclose(xhat.mean(axis=0), 0.0, atol=1e-12 if dtype == np.float64 else 1e-6)


def test_train_forward_uses_biased_variance_and_eps():
    x = np.array([[1.0], [3.0]])  # μ = 2, biased σ² = 1, unbiased = 2
    y, xhat, mean, invstd = train(x, np.ones(1), np.zeros(1), np.zeros(1), np.ones(1))
    assert mean[0] == 2.0
    assert invstd[0] == pytest.approx(1.0 / np.sqrt(1.0 + EPS), rel=1e-15)
    assert_allclose(y[:, 0], [-1.0 / np.sqrt(1.0 + EPS), 1.0 / np.sqrt(1.0 + EPS)], rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_running_statistics_over_several_steps(dtype):
    rng = np.random.default_rng(1)
    gamma = rng.uniform(0.5, 1.5, size=F).astype(dtype)
    beta = rng.normal(size=F).astype(dtype)
    rmean, rvar = np.zeros(F, dtype), np.ones(F, dtype)
    ref_mean, ref_var = np.zeros(F), np.ones(F)
    for step, n in enumerate((8, 5, 2, 13, 8)):  # several batch sizes, B = 2 included
        x = (rng.normal(size=(n, F)) * 2.0 + step).astype(dtype)
        y, _, _, _ = train(x, gamma, beta, rmean, rvar)
        y_ref, _, _, _, ref_mean, ref_var = ref_train(*f64(x, gamma, beta), ref_mean, ref_var)
        assert_allclose(y, y_ref, **tolerance(dtype))
        assert_allclose(rmean, ref_mean, **tolerance(dtype))
        assert_allclose(rvar, ref_var, **tolerance(dtype))


def test_running_statistics_closed_form():
    x = np.array([[1.0, 0.0], [3.0, 0.0]])  # μ = (2, 0), unbiased var = (2, 0)
    rmean = np.array([10.0, -1.0])
    rvar = np.array([4.0, 1.0])
    train(x, np.ones(2), np.zeros(2), rmean, rvar)
    assert_allclose(rmean, [0.9 * 10.0 + 0.1 * 2.0, 0.9 * -1.0], rtol=1e-15)
    assert_allclose(rvar, [0.9 * 4.0 + 0.1 * 2.0, 0.9], rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_update_leaves_running_statistics(dtype):
    x, gamma, beta, _ = make(dtype)
    rmean = np.arange(F, dtype=dtype)
    rvar = np.arange(1, F + 1, dtype=dtype)
    y, _, _, _ = train(x, gamma, beta, rmean, rvar, update=False)
    assert_array_equal(rmean, np.arange(F))
    assert_array_equal(rvar, np.arange(1, F + 1))
    assert_allclose(y, ref_train(*f64(x, gamma, beta), np.zeros(F), np.ones(F))[0], **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_eval_forward_uses_running_statistics(dtype):
    x, gamma, beta, _ = make(dtype, seed=2)
    rmean = np.array([0.5, -1.0, 4.0, 2.0], dtype=dtype)
    rvar = np.array([1.0, 7.0, 0.05, 90.0], dtype=dtype)
    y, xhat, invstd = evaluate(x, gamma, beta, rmean, rvar)
    x64, g64, b64, m64, v64 = f64(x, gamma, beta, rmean, rvar)
    assert_allclose(y, ref_eval(x64, g64, b64, m64, v64), **tolerance(dtype))
    assert_allclose(invstd, 1.0 / np.sqrt(v64 + EPS), **tolerance(dtype))
    assert_allclose(xhat, (x64 - m64) / np.sqrt(v64 + EPS), **tolerance(dtype))
    assert_array_equal(rmean, [0.5, -1.0, 4.0, 2.0])  # running statistics are read only
    # a single row is fine in evaluation
    y1, _, _ = evaluate(x[:1].copy(), gamma, beta, rmean, rvar)
    assert_allclose(y1, y[:1], **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_backward_matches_reference(dtype):
    x, gamma, beta, dy = make(dtype, seed=3)
    _, xhat, _, invstd = train(x, gamma, beta, np.zeros(F, dtype), np.ones(F, dtype))
    dx, dgamma, dbeta = grads(batchnorm_backward, dy, xhat, gamma, invstd)
    for got, want in zip((dx, dgamma, dbeta), ref_backward_train(*f64(dy, x, gamma))):
        assert got.dtype == dtype
        assert_allclose(got, want, **tolerance(dtype))
    # the gradient of a batch-normalized layer sums to zero over the batch
    assert_allclose(dx.sum(axis=0), 0.0, atol=1e-12 if dtype == np.float64 else 1e-5)


def test_train_backward_matches_central_differences():
    x, gamma, beta, dy = make(np.float64, seed=4)
    _, xhat, _, invstd = train(x, gamma, beta, np.zeros(F), np.ones(F))
    dx, dgamma, dbeta = grads(batchnorm_backward, dy, xhat, gamma, invstd)

    def forward(x_, g_, b_):
        return train(x_, g_, b_, np.zeros(F), np.ones(F), update=False)[0]

    numeric = numeric_grads(forward, dy, [x, gamma, beta])
    for got, want in zip((dx, dgamma, dbeta), numeric):
        assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    # and the independent NumPy forward gives the same central differences
    numeric_ref = numeric_grads(lambda x_, g_, b_: ref_train(x_, g_, b_, 0.0, 1.0)[0], dy, [x, gamma, beta])
    for got, want in zip((dx, dgamma, dbeta), numeric_ref):
        assert_allclose(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_eval_backward(dtype):
    x, gamma, beta, dy = make(dtype, seed=5)
    rmean = np.array([0.1, -2.0, 5.0, 0.0], dtype=dtype)
    rvar = np.array([0.8, 9.0, 0.04, 100.0], dtype=dtype)
    _, xhat, invstd = evaluate(x, gamma, beta, rmean, rvar)
    dx, dgamma, dbeta = grads(batchnorm_backward_eval, dy, xhat, gamma, invstd)
    x64, g64, m64, v64, dy64 = f64(x, gamma, rmean, rvar, dy)
    std = np.sqrt(v64 + EPS)
    assert_allclose(dx, dy64 * g64 / std, **tolerance(dtype))
    assert_allclose(dgamma, np.sum(dy64 * (x64 - m64) / std, axis=0), **tolerance(dtype))
    assert_allclose(dbeta, dy64.sum(axis=0), **tolerance(dtype))


def test_eval_backward_matches_central_differences():
    x, gamma, beta, dy = make(np.float64, seed=6)
    rmean = np.array([0.1, -2.0, 5.0, 0.0])
    rvar = np.array([0.8, 9.0, 0.04, 100.0])
    _, xhat, invstd = evaluate(x, gamma, beta, rmean, rvar)
    got = grads(batchnorm_backward_eval, dy, xhat, gamma, invstd)
    numeric = numeric_grads(lambda x_, g_, b_: ref_eval(x_, g_, b_, rmean, rvar), dy, [x, gamma, beta])
    for g, want in zip(got, numeric):
        assert_allclose(g, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_param_grads(dtype):
    _, _, _, dy = make(dtype, seed=7)
    xhat = np.random.default_rng(8).normal(size=(B, F)).astype(dtype)
    dgamma = np.full(F, np.nan, dtype)
    dbeta = np.full(F, np.nan, dtype)
    batchnorm_param_grads(dgamma, dbeta, dy, xhat)
    dy64, xhat64 = f64(dy, xhat)
    assert_allclose(dgamma, (dy64 * xhat64).sum(axis=0), **tolerance(dtype))
    assert_allclose(dbeta, dy64.sum(axis=0), **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_aliasing(dtype):
    x, gamma, beta, dy = make(dtype, seed=9)
    rm1, rv1 = np.zeros(F, dtype), np.ones(F, dtype)
    y, xhat, mean, invstd = train(x, gamma, beta, rm1, rv1)
    # y is x
    xa = x.copy()
    rm2, rv2 = np.zeros(F, dtype), np.ones(F, dtype)
    ya, xhat_a, mean_a, invstd_a = train(xa, gamma, beta, rm2, rv2, y=xa)
    assert ya is xa
    for a, b in ((ya, y), (xhat_a, xhat), (mean_a, mean), (invstd_a, invstd), (rm2, rm1), (rv2, rv1)):
        assert_array_equal(a, b)
    # evaluation, y is x
    ye, _, _ = evaluate(x, gamma, beta, rm1, rv1)
    xe = x.copy()
    evaluate(xe, gamma, beta, rm1, rv1, y=xe)
    assert_array_equal(xe, ye)
    # dx is dy, in both backward kernels
    for kernel in (batchnorm_backward, batchnorm_backward_eval):
        expected = grads(kernel, dy, xhat, gamma, invstd)
        d = dy.copy()
        got = grads(kernel, d, xhat, gamma, invstd, dx=d)
        for a, b in zip(got, expected):
            assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch_batchnorm1d(dtype):
    torch = pytest.importorskip("torch")
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    bn = torch.nn.BatchNorm1d(F, eps=EPS, momentum=MOMENTUM).to(tdtype)
    rng = np.random.default_rng(10)
    gamma = rng.uniform(0.5, 1.5, size=F).astype(dtype)
    beta = rng.normal(size=F).astype(dtype)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(gamma))
        bn.bias.copy_(torch.from_numpy(beta))
    rmean, rvar = np.zeros(F, dtype), np.ones(F, dtype)
    tol = tolerance(dtype) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)

    bn.train()
    for step, n in enumerate((6, 11, 3)):
        x = (rng.normal(size=(n, F)) * 2.0 - step).astype(dtype)
        dy = rng.normal(size=(n, F)).astype(dtype)
        y, xhat, _, invstd = train(x, gamma, beta, rmean, rvar)
        dx, dgamma, dbeta = grads(batchnorm_backward, dy, xhat, gamma, invstd)
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        bn.zero_grad()
        yt = bn(xt)
        yt.backward(torch.from_numpy(dy))
        assert_allclose(y, yt.detach().numpy(), **tol)
        assert_allclose(rmean, bn.running_mean.numpy(), **tol)
        assert_allclose(rvar, bn.running_var.numpy(), **tol)
        assert_allclose(dx, xt.grad.numpy(), **tol)
        assert_allclose(dgamma, bn.weight.grad.numpy(), **tol)
        assert_allclose(dbeta, bn.bias.grad.numpy(), **tol)

    bn.eval()
    x = rng.normal(size=(5, F)).astype(dtype)
    dy = rng.normal(size=(5, F)).astype(dtype)
    y, xhat, invstd = evaluate(x, gamma, beta, rmean, rvar)
    dx, dgamma, dbeta = grads(batchnorm_backward_eval, dy, xhat, gamma, invstd)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    bn.zero_grad()
    yt = bn(xt)
    yt.backward(torch.from_numpy(dy))
    assert_allclose(y, yt.detach().numpy(), **tol)
    assert_allclose(dx, xt.grad.numpy(), **tol)
    assert_allclose(dgamma, bn.weight.grad.numpy(), **tol)
    assert_allclose(dbeta, bn.bias.grad.numpy(), **tol)
