"""Loss kernels (kernels/cpu/losses.py): values and gradients against float64 NumPy."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import expit, log_softmax, softmax

from fastmlp.kernels.contract import (
    BINARY_CROSS_ENTROPY,
    CROSS_ENTROPY,
    CROSS_ENTROPY_PROBS,
    HINGE,
    MSE,
)
from fastmlp.kernels.cpu.losses import (
    binary_cross_entropy_forward_backward,
    cross_entropy_forward_backward,
    cross_entropy_probs_forward_backward,
    hinge_forward_backward,
    loss_forward_backward,
    mse_forward_backward,
)

DTYPES = (np.float32, np.float64)
B, C = 6, 4


def value_tolerance(dtype):
    return dict(rel=1e-12) if dtype == np.float64 else dict(rel=1e-6)


def grad_tolerance(dtype):
    if dtype == np.float64:
        return dict(rtol=1e-12, atol=1e-15)
    return dict(rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ float64 NumPy reference losses


def ref_cross_entropy(z, labels):
    n = z.shape[0]
    value = -np.mean(log_softmax(z, axis=1)[np.arange(n), labels])
    onehot = np.eye(z.shape[1])[labels]
    return value, (softmax(z, axis=1) - onehot) / n


def ref_cross_entropy_probs(z, t):
    n = z.shape[0]
    value = -np.sum(t * log_softmax(z, axis=1)) / n
    return value, (softmax(z, axis=1) * t.sum(axis=1, keepdims=True) - t) / n


def ref_bce(z, t):
    n = z.shape[0]
    value = np.sum(np.logaddexp(0.0, z) - z * t) / n
    return value, (expit(z) - t) / n


def ref_mse(z, t):
    return np.mean((z - t) ** 2), 2.0 * (z - t) / z.size


def ref_hinge(z, labels):
    n = z.shape[0]
    rows = np.arange(n)
    margins = z - z[rows, labels][:, None] + 1.0
    margins[rows, labels] = 0.0
    positive = margins > 0
    grad = positive.astype(float)
    grad[rows, labels] = -positive.sum(axis=1)
    return np.sum(np.where(positive, margins, 0.0)) / n, grad / n


# (kernel, reference, kind of the second argument)
KERNELS = {
    "cross_entropy": (cross_entropy_forward_backward, ref_cross_entropy, "labels"),
    "cross_entropy_probs": (cross_entropy_probs_forward_backward, ref_cross_entropy_probs, "probs"),
    "binary_cross_entropy": (binary_cross_entropy_forward_backward, ref_bce, "unit"),
    "mse": (mse_forward_backward, ref_mse, "real"),
    "hinge": (hinge_forward_backward, ref_hinge, "labels"),
}
CODES = {"cross_entropy": CROSS_ENTROPY, "cross_entropy_probs": CROSS_ENTROPY_PROBS,
         "binary_cross_entropy": BINARY_CROSS_ENTROPY, "mse": MSE, "hinge": HINGE}


def make(kind, dtype, n=B, c=C, seed=0):
    rng = np.random.default_rng(seed)
    z = (rng.normal(size=(n, c)) * 2.0).astype(dtype)
    if kind == "labels":
        y = rng.integers(0, c, size=n).astype(np.int64)
    elif kind == "probs":
        y = rng.dirichlet(np.ones(c), size=n).astype(dtype)
    elif kind == "unit":
        y = rng.uniform(0.0, 1.0, size=(n, c)).astype(dtype)
        y[0, :2] = [0.0, 1.0]
    else:
        y = rng.normal(size=(n, c)).astype(dtype)
    return z, y


def run(kernel, z, y):
    dz = np.full_like(z, np.nan)
    value = kernel(dz, z, y)
    return value, dz


def f64(a):
    return np.asarray(a, dtype=np.float64) if a.dtype.kind == "f" else a


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(KERNELS))
def test_value_and_gradient_match_reference(name, dtype):
    kernel, ref, kind = KERNELS[name]
    z, y = make(kind, dtype)
    value, dz = run(kernel, z, y)
    assert isinstance(value, float)
    assert dz.dtype == dtype
    want_value, want_grad = ref(f64(z), f64(y))
    assert value == pytest.approx(want_value, **value_tolerance(dtype))
    assert_allclose(dz, want_grad, **grad_tolerance(dtype))


@pytest.mark.parametrize("name", [
    "cross_entropy", "cross_entropy_probs",
    "binary_cross_entropy", "mse", "hinge",
])
def test_float32_loss_value_is_computed_in_float64(name):
    """The module promises a float64 loss: from float32 inputs it should equal the float64 value of
    the same (float32-representable) numbers to float64 precision."""
    kernel, ref, kind = KERNELS[name]
    z, y = make(kind, np.float32, seed=6)
    value, _ = run(kernel, z, y)
    assert value == pytest.approx(ref(f64(z), f64(y))[0], rel=1e-12)


def test_float32_mse_of_large_difference_is_finite():
    z = np.array([[1e20, 0.0]], dtype=np.float32)
    value, dz = run(mse_forward_backward, z, np.zeros_like(z))
    assert np.all(np.isfinite(dz))
    assert value == pytest.approx(float(np.float32(1e20)) ** 2 / 2, rel=1e-12)


@pytest.mark.parametrize("name", list(KERNELS))
def test_gradient_matches_central_differences(name):
    kernel, ref, kind = KERNELS[name]
    z, y = make(kind, np.float64, seed=1)
    if name == "cross_entropy_probs":
        y = y * np.array([[1.0], [0.5], [2.0], [1.0], [0.3], [1.0]])  # rows need not sum to one
    if name == "hinge":
        margins = z - z[np.arange(B), y][:, None] + 1.0
        margins[np.arange(B), y] = 5.0
        assert np.min(np.abs(margins)) > 1e-3  # away from the kinks
    _, dz = run(kernel, z, y)
    h = 1e-6
    numeric = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (ref(up, y)[0] - ref(down, y)[0]) / (2 * h)
    assert_allclose(dz, numeric, rtol=1e-6, atol=1e-9)
    # the kernel's own values give the same differences
    numeric_kernel = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[idx] += h
        down[idx] -= h
        numeric_kernel[idx] = (run(kernel, up, y)[0] - run(kernel, down, y)[0]) / (2 * h)
    assert_allclose(dz, numeric_kernel, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_extreme_logits_are_exact(dtype):
    z = np.array([[1e4, -1e4], [1e4, -1e4], [-1e4, 1e4], [0.0, 0.0]], dtype=dtype)
    labels = np.array([1, 0, 1, 0], dtype=np.int64)
    value, dz = run(cross_entropy_forward_backward, z, labels)
    # per-sample losses 2e4, 0, 0, log 2
    assert value == pytest.approx((2e4 + np.log(2.0)) / 4, rel=1e-15)
    assert np.all(np.isfinite(dz))
    assert_allclose(dz, np.array([[1.0, -1.0], [0.0, 0.0], [0.0, 0.0], [-0.5, 0.5]]) / 4,
                    rtol=1e-7, atol=0)
    single, dz1 = run(cross_entropy_forward_backward, z[:1].copy(), labels[:1].copy())
    assert single == 2e4
    assert_array_equal(dz1, [[1.0, -1.0]])


def test_cross_entropy_huge_logits_float64():
    z = np.array([[1e30, -1e30, 0.0], [-1e30, -1e30, -1e30], [1e300, -1e300, 5.0]])
    labels = np.array([1, 2, 1], dtype=np.int64)
    value, dz = run(cross_entropy_forward_backward, z, labels)
    assert np.isfinite(value) and np.all(np.isfinite(dz))
    assert value == pytest.approx((2e30 + np.log(3.0) + 2e300) / 3, rel=1e-15)
    assert_allclose(dz, np.array([[1.0, -1.0, 0.0], [1 / 3, 1 / 3, -2 / 3], [1.0, -1.0, 0.0]]) / 3,
                    rtol=1e-15, atol=0)
    one, _ = run(cross_entropy_forward_backward, z[:1].copy(), labels[:1].copy())
    assert one == 2e30


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_probs_extreme_logits(dtype):
    z = np.array([[1e4, -1e4], [1e4, -1e4]], dtype=dtype)
    t = np.array([[0.0, 1.0], [0.25, 0.75]], dtype=dtype)
    value, dz = run(cross_entropy_probs_forward_backward, z, t)
    assert np.isfinite(value) and np.all(np.isfinite(dz))
    assert value == pytest.approx((2e4 + 0.75 * 2e4) / 2, rel=1e-15)
    assert_allclose(dz, np.array([[1.0, -1.0], [0.75, -0.75]]) / 2, rtol=1e-7, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_probs_with_one_hot_rows_equals_labels(dtype):
    z, labels = make("labels", dtype, seed=2)
    onehot = np.eye(C, dtype=dtype)[labels]
    v1, d1 = run(cross_entropy_forward_backward, z, labels)
    v2, d2 = run(cross_entropy_probs_forward_backward, z, onehot)
    assert v1 == pytest.approx(v2, rel=1e-14)
    assert_allclose(d1, d2, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_accepts_other_label_dtypes(dtype):
    z, labels = make("labels", dtype, seed=3)
    v1, d1 = run(cross_entropy_forward_backward, z, labels)
    v2, d2 = run(cross_entropy_forward_backward, z, labels.astype(np.int32))
    assert v1 == v2
    assert_array_equal(d1, d2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_extreme_logits_are_exact(dtype):
    z = np.array([[1e4, -1e4, 1e4, -1e4, 0.0]], dtype=dtype)
    t = np.array([[0.0, 1.0, 1.0, 0.0, 1.0]], dtype=dtype)
    value, dz = run(binary_cross_entropy_forward_backward, z[:, :4].copy(), t[:, :4].copy())
    assert value == 2e4
    assert_array_equal(dz, np.array([[1.0, -1.0, 0.0, 0.0]], dtype=dtype))
    value, dz = run(binary_cross_entropy_forward_backward, z, t)
    assert value == pytest.approx(2e4 + np.log(2.0), **value_tolerance(dtype))
    assert_array_equal(dz, np.array([[1.0, -1.0, 0.0, 0.0, -0.5]], dtype=dtype))
    one, _ = run(binary_cross_entropy_forward_backward, z[:, :1].copy(), t[:, :1].copy())
    assert one == 1e4


def test_binary_cross_entropy_huge_logits_float64():
    z = np.array([[1e30, -1e30], [1e300, -1e300]])
    t = np.array([[0.0, 1.0], [0.5, 0.5]])
    value, dz = run(binary_cross_entropy_forward_backward, z, t)
    assert np.isfinite(value) and np.all(np.isfinite(dz))
    assert value == pytest.approx((2e30 + 1e300) / 2, rel=1e-15)
    assert_array_equal(dz, np.array([[1.0, -1.0], [0.5, -0.5]]) / 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_and_hinge_large_values(dtype):
    z = np.array([[1e4, -1e4, 0.0]], dtype=dtype)
    t = np.array([[0.0, 0.0, 1e4]], dtype=dtype)
    value, dz = run(mse_forward_backward, z, t)
    assert value == pytest.approx(1e8, rel=1e-15)
    assert_allclose(dz, np.array([[2e4, -2e4, -2e4]]) / 3, rtol=1e-7)
    value, dz = run(hinge_forward_backward, z, np.array([1], dtype=np.int64))
    assert value == 2e4 + 1.0 + 1e4 + 1.0  # margins 2e4 + 1 and 1e4 + 1
    assert_array_equal(dz, [[1.0, -2.0, 1.0]])
    value, dz = run(hinge_forward_backward, z, np.array([0], dtype=np.int64))
    assert value == 0.0
    assert_array_equal(dz, [[0.0, 0.0, 0.0]])


def test_hinge_margin_exactly_zero_is_not_counted():
    z = np.array([[2.0, 1.0, 0.0], [0.0, 0.5, 1.0]])
    labels = np.array([0, 1], dtype=np.int64)
    value, dz = run(hinge_forward_backward, z, labels)
    # row 0: margins 0 and -1; row 1: margins 0.5 and 1.5
    assert value == pytest.approx(2.0 / 2, rel=1e-15)
    assert_array_equal(dz, np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 1.0]]) / 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_output_column(dtype):
    rng = np.random.default_rng(4)
    z = rng.normal(size=(B, 1)).astype(dtype)
    t = rng.uniform(size=(B, 1)).astype(dtype)
    for name in ("binary_cross_entropy", "mse"):
        kernel, ref, _ = KERNELS[name]
        value, dz = run(kernel, z, t)
        want_value, want_grad = ref(f64(z), f64(t))
        assert value == pytest.approx(want_value, **value_tolerance(dtype))
        assert_allclose(dz, want_grad, **grad_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(KERNELS))
def test_dispatcher_matches_kernels(name, dtype):
    kernel, _, kind = KERNELS[name]
    z, y = make(kind, dtype, seed=5)
    if kind == "labels":
        labels, targets = y, np.empty((0, 0), dtype=dtype)
    else:
        labels, targets = np.empty(0, dtype=np.int64), y
    expected_value, expected_dz = run(kernel, z, y)
    dz = np.full_like(z, np.nan)
    value = loss_forward_backward(dz, z, labels, targets, CODES[name])
    assert value == expected_value
    assert_array_equal(dz, expected_dz)


def test_codes_are_distinct():
    assert len(set(CODES.values())) == len(CODES)


@pytest.mark.parametrize("scale", (1e10, 1e30))
def test_cross_entropy_keeps_log_sum_for_huge_equal_logits(scale):
    z = np.full((1, 3), -scale)
    value, dz = run(cross_entropy_forward_backward, z, np.array([2], dtype=np.int64))
    assert_allclose(dz, [[1 / 3, 1 / 3, -2 / 3]], rtol=1e-15)
    assert value == pytest.approx(np.log(3.0), rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(KERNELS))
def test_gradient_may_overwrite_the_logits(name, dtype):
    """dz and z may be one array: every loss reads what it needs of a row before writing it."""
    kernel, _, kind = KERNELS[name]
    z, y = make(kind, dtype, seed=6)
    expected_value, expected_dz = run(kernel, z, y)
    shared = z.copy()
    value = kernel(shared, shared, y)
    assert value == expected_value
    assert_array_equal(shared, expected_dz)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_gradient_of_a_confident_right_label_keeps_its_digits(dtype):
    """softmax near 1 at the label: its gradient (p - 1) / B is small and must not be the
    difference of two rounded numbers near 1 / B."""
    z = np.full((2, C), -14.0, dtype=dtype)
    z[:, 1] = 0.0
    z[1, 2] = -30.0
    labels = np.array([1, 1], dtype=np.int64)
    value, dz = run(cross_entropy_forward_backward, z, labels)
    want_value, want_dz = ref_cross_entropy(f64(z), labels)
    assert value == pytest.approx(want_value, **value_tolerance(dtype))
    assert_allclose(dz, want_dz, rtol=grad_tolerance(dtype)["rtol"], atol=0)  # relative, each
