"""Every kind of bad input is answered on the host with a clear ValueError or TypeError."""

import numpy as np
import pytest

import fastmlp as fm


@pytest.fixture(scope="module")
def clf():
    return fm.MLP(4, [fm.Dense(5, "relu", batchnorm=True), fm.Dense(3)], seed=0)


def model(loss, outputs=3):
    return fm.MLP(4, [fm.Dense(5, "tanh"), fm.Dense(outputs)], loss=loss, seed=0)


X = np.random.default_rng(0).normal(size=(6, 4))


@pytest.mark.parametrize("call", ["forward", "predict", "loss_and_grad"])
@pytest.mark.parametrize("bad,exc,match", [
    (np.where(np.eye(6, 4) > 0, np.nan, X), ValueError, "NaN or inf"),
    (np.where(np.eye(6, 4) > 0, np.inf, X), ValueError, "NaN or inf"),
    (X[:, 0], ValueError, "2-D"),
    (X[None], ValueError, "2-D"),
    (np.zeros((0, 4)), ValueError, "zero samples"),
    (X[:, :3], ValueError, "3 features but the model expects 4"),
    (X.astype(object), TypeError, "real numbers"),
    (X.astype(str), TypeError, "real numbers"),
    (X + 1j, TypeError, "real numbers"),
    ([[1, 2], [3]], ValueError, "could not be converted"),
    (np.full((6, 4), 1e300), ValueError, "X has values that overflow float32"),
])
def test_bad_X(clf, call, bad, exc, match):
    with pytest.raises(exc, match=match):
        if call == "loss_and_grad":
            clf.loss_and_grad(bad, np.zeros(6, dtype=int))
        else:
            getattr(clf, call)(bad)


def test_sparse_X_is_a_type_error(clf):
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="sparse"):
        clf.forward(sparse.csr_matrix(X))


class _GpuArray:
    """Any object with ``__cuda_array_interface__`` (CuPy, PyTorch CUDA); never dereferenced."""
    def __init__(self, shape, typestr="<f8"):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (0, False),
                                         "strides": None, "version": 3}


def test_gpu_arrays_given_to_a_cpu_model_are_a_type_error(clf):
    """A CPU model (and host-only helpers) name the GPU array and say how to proceed, before
    reading it."""
    for call in (lambda: clf.predict(_GpuArray((6, 4))),
                 lambda: clf.loss_value(X, _GpuArray((6,), "<i8")),
                 lambda: fm.Trainer(clf, fm.Adam(), progress=False).fit(_GpuArray((6, 4)),
                                                                        np.zeros(6, int))):
        with pytest.raises(TypeError, match="is a GPU array .*device='cuda'"):
            call()
    with pytest.raises(TypeError, match="X is a GPU array .*host arrays"):
        fm.Standardizer().fit(_GpuArray((6, 4)))


@pytest.mark.parametrize("y,exc,match", [
    (np.array([0, 1, 2, 3, 0, 1]), ValueError, "< 3"),
    (np.array([0, 1, -1, 2, 0, 1]), ValueError, ">= 0"),
    (np.array([0, 1, 0.5, 2, 0, 1]), ValueError, "whole numbers"),
    (np.array([0, 1, np.nan, 2, 0, 1]), ValueError, "NaN"),
    (np.array([0, 1, 2]), ValueError, "different numbers of samples"),
    (np.array(["a"] * 6), TypeError, "real numbers"),
    (np.array([0, 1, 2, 0, 1, 2], dtype=object), TypeError, "real numbers"),
    (np.full((6, 4), 0.25), ValueError, "width 3"),
    (np.full((6, 3), 0.5), ValueError, "sum to 1"),
    (np.tile([1.5, -0.5, 0.0], (6, 1)), ValueError, "non-negative"),
    (np.zeros((6, 3, 1)), ValueError, "shape"),
    (np.int64(1), ValueError, "scalar"),
])
def test_bad_cross_entropy_targets(clf, y, exc, match):
    with pytest.raises(exc, match=match):
        clf.loss_and_grad(X, y)


def test_good_cross_entropy_targets_of_many_dtypes(clf):
    for dtype in (np.int8, np.uint16, np.int32, np.int64, np.float32, np.float64):
        clf.loss_and_grad(X, np.array([0, 1, 2, 0, 1, 2], dtype=dtype))
    clf.loss_and_grad(X, np.array([[0], [1], [2], [0], [1], [2]]))  # a label column
    clf.loss_and_grad(X, np.eye(3)[[0, 1, 2, 0, 1, 2]])  # probability rows


@pytest.mark.parametrize("y,match", [
    (np.array([0, 1, 3, 0, 1, 2]), "< 3"),
    (np.eye(3)[[0, 1, 2, 0, 1, 2]], "class indices of shape"),
])
def test_bad_hinge_targets(y, match):
    with pytest.raises(ValueError, match=match):
        model("hinge").loss_and_grad(X, y)


@pytest.mark.parametrize("y,match", [
    (np.full((6, 2), 1.5), r"\[0, 1\]"),
    (np.full((6, 2), -0.1), r"\[0, 1\]"),
    (np.full((6, 3), 0.5), r"shape \(n, 2\)"),
    (np.full(6, 0.5), r"shape \(n, 2\)"),
    (np.full((6, 2), np.nan), "NaN"),
])
def test_bad_binary_cross_entropy_targets(y, match):
    with pytest.raises(ValueError, match=match):
        model("binary_cross_entropy", 2).loss_and_grad(X, y)


def test_binary_cross_entropy_single_output_accepts_a_vector():
    m = model("binary_cross_entropy", 1)
    m.loss_and_grad(X, np.array([0, 1, 1, 0, 1, 0], dtype=bool))
    assert m.predict(X).shape == (6,)


@pytest.mark.parametrize("y,match", [
    (np.array([0.0, 1.0, np.inf, 0, 1, 2]), "NaN or inf"),
    (np.array([0.0, 1.0, np.nan, 0, 1, 2]), "NaN or inf"),
    (np.zeros((6, 2)), r"shape \(n, 1\)"),
    (np.zeros(5), "different numbers of samples"),
])
def test_bad_regression_targets(y, match):
    with pytest.raises(ValueError, match=match):
        model("mse", 1).loss_and_grad(X, y)


def test_regression_target_overflowing_float32_is_rejected():
    with pytest.raises(ValueError, match="y has values that overflow float32"):
        model("mse", 1).loss_and_grad(X, np.full(6, 1e300))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(units=0), ValueError, "units"),
    (dict(units=-3), ValueError, "units"),
    (dict(units=2.5), TypeError, "units"),
    (dict(units=True), TypeError, "units"),
    (dict(units=3, activation="swish"), ValueError, "activation"),
    (dict(units=3, activation=None), ValueError, "activation"),
    (dict(units=3, dropout=1.0), ValueError, "dropout"),
    (dict(units=3, dropout=-0.1), ValueError, "dropout"),
    (dict(units=3, dropout="0.5"), TypeError, "dropout"),
    (dict(units=3, activation="maxout", pieces=1), ValueError, "pieces"),
    (dict(units=3, activation="relu", pieces=2), ValueError, "pieces"),
    (dict(units=3, activation="relu", alpha=0.2), ValueError, "alpha"),
    (dict(units=3, activation="elu", alpha=float("nan")), ValueError, "alpha"),
    (dict(units=3, batchnorm="yes"), TypeError, "batchnorm"),
])
def test_bad_dense_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fm.Dense(**kwargs)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(input_dim=0), ValueError, "input_dim"),
    (dict(input_dim=4.0), TypeError, "input_dim"),
    (dict(layers=[]), ValueError, "at least one"),
    (dict(layers=fm.Dense(3)), TypeError, "list"),
    (dict(layers=[fm.Dense(3), "relu"]), TypeError, r"layers\[1\]"),
    (dict(loss="nll"), ValueError, "loss"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(dtype="int32"), ValueError, "dtype"),
    (dict(dtype="banana"), ValueError, "dtype"),
    (dict(device="tpu"), ValueError, "device"),
    (dict(device="cuda"), (RuntimeError, ValueError), "cuda"),
    (dict(init="zeros"), ValueError, "init"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(layers=[fm.Dense(1)]), ValueError, "at least 2 units"),
])
def test_bad_model_arguments(kwargs, exc, match):
    args = dict(input_dim=4, layers=[fm.Dense(3)], loss="cross_entropy")
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        fm.MLP(**args)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(l1=-1.0), ValueError, "l1"),
    (dict(l2=float("nan")), ValueError, "l2"),
    (dict(l2="0.1"), TypeError, "l2"),
    (dict(dropout_step=-1), ValueError, "dropout_step"),
])
def test_bad_loss_arguments(clf, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        clf.loss_and_grad(X, np.zeros(6, dtype=int), **kwargs)


def test_batchnorm_training_needs_two_samples(clf):
    with pytest.raises(ValueError, match="at least 2 samples"):
        clf.loss_and_grad(X[:1], np.zeros(1, dtype=int))
    assert clf.forward(X[:1]).shape == (1, 3)  # evaluation is fine


def test_predict_proba_needs_a_probabilistic_loss():
    with pytest.raises(ValueError, match="predict_proba"):
        model("mse").predict_proba(X)


def test_params_assignment_is_checked(clf):
    with pytest.raises(ValueError, match="shape"):
        clf.params["0.W"] = np.zeros((3, 3))
    with pytest.raises(KeyError, match="unknown key"):
        clf.params["9.W"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="NaN"):
        clf.params["0.b"] = np.full(5, np.nan)
    with pytest.raises(TypeError):
        del clf.params["0.W"]
