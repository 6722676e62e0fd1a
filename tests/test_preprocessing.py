import numpy as np
import pytest

from fastmlp.preprocessing import NotFittedError, Standardizer


def reference_standardize(X, eps):
    """NumPy reference: (X - mean) / sqrt(var + eps), biased variance, in float64."""
    X = np.asarray(X, dtype=np.float64)
    return (X - X.mean(axis=0)) / np.sqrt(X.var(axis=0) + eps)


@pytest.fixture
def X():
    rng = np.random.default_rng(0)
    scales = np.array([1e-3, 1.0, 50.0, 1e4])
    offsets = np.array([5.0, -2.0, 1e3, 0.0])
    return rng.normal(size=(200, 4)) * scales + offsets


# math --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1e-8, 1e-3, 2.5])
def test_statistics_and_transform_match_numpy(X, eps):
    s = Standardizer(eps=eps).fit(X)
    np.testing.assert_allclose(s.mean_, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(s.var_, X.var(axis=0), rtol=1e-12)
    np.testing.assert_allclose(s.scale_, np.sqrt(X.var(axis=0) + eps), rtol=1e-12)
    assert s.n_features_in_ == 4
    np.testing.assert_allclose(
        s.transform(X), reference_standardize(X, eps), rtol=1e-10, atol=1e-12
    )


def test_fit_returns_self_and_fit_transform_matches(X):
    s = Standardizer()
    assert s.fit(X) is s
    np.testing.assert_array_equal(Standardizer().fit_transform(X), s.transform(X))


def test_transformed_training_data_has_zero_mean_and_variance_var_over_var_plus_eps(X):
    s = Standardizer(eps=1e-8)
    Z = s.fit_transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-9)
    # ~1 where var >> eps; the first column (var ~ 1e-6) shows the eps shrinkage
    np.testing.assert_allclose(Z.var(axis=0), s.var_ / (s.var_ + s.eps), rtol=1e-9)
    np.testing.assert_allclose(Z.var(axis=0)[1:], 1.0, rtol=1e-6)


def test_constant_feature_maps_to_zero_without_division_by_zero():
    X = np.column_stack([np.full(10, 3.0), np.arange(10.0)])
    s = Standardizer(eps=1e-8)
    with np.errstate(all="raise"):
        Z = s.fit_transform(X)
    assert s.var_[0] == 0.0
    assert s.scale_[0] == 1.0  # a value unseen at fit time is shifted, not multiplied by 1e4
    np.testing.assert_array_equal(Z[:, 0], 0.0)
    np.testing.assert_array_equal(s.inverse_transform(Z)[:, 0], 3.0)
    np.testing.assert_array_equal(s.transform(np.array([[5.0, 0.0]]))[0, 0], 2.0)


def test_single_sample_is_accepted():
    Z = Standardizer().fit_transform(np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_array_equal(Z, 0.0)


def test_array_like_input_is_accepted():
    Z = Standardizer().fit_transform([[0, 1], [2, 3]])
    np.testing.assert_allclose(Z, [[-1, -1], [1, 1]], rtol=1e-7)


# inverse -----------------------------------------------------------------------------------------


def test_inverse_transform_round_trip_float64(X):
    s = Standardizer().fit(X)
    np.testing.assert_allclose(s.inverse_transform(s.transform(X)), X, rtol=1e-12, atol=1e-12)


def test_inverse_transform_round_trip_float32(X):
    X32 = X.astype(np.float32)
    s = Standardizer().fit(X32)
    back = s.inverse_transform(s.transform(X32))
    assert back.dtype == np.float32
    # float32 round-off is relative to each column's magnitude
    column_size = np.abs(X32).max(axis=0)
    assert np.all(np.abs(back - X32) <= 1e-5 * column_size)


def test_inverse_transform_formula(X):
    s = Standardizer().fit(X)
    Z = np.random.default_rng(1).normal(size=(7, 4))
    np.testing.assert_allclose(s.inverse_transform(Z), Z * s.scale_ + s.mean_, rtol=1e-12)


# dtypes and layout -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "in_dtype, out_dtype",
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.int32, np.float64),
        (np.int64, np.float64),
        (np.uint8, np.float64),
        (np.bool_, np.float64),
        (np.float16, np.float64),
    ],
)
def test_output_dtype(in_dtype, out_dtype):
    X = (np.arange(12).reshape(6, 2) % 2).astype(in_dtype)
    s = Standardizer().fit(X)
    assert s.transform(X).dtype == out_dtype
    assert s.inverse_transform(s.transform(X)).dtype == out_dtype
    for stat in (s.mean_, s.var_, s.scale_):
        assert stat.dtype == np.float64


def test_float32_transform_agrees_with_float64_reference(X):
    X32 = X.astype(np.float32)
    Z = Standardizer().fit_transform(X32)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z, reference_standardize(X32, 1e-8), rtol=1e-4, atol=1e-4)


def test_integer_input_matches_float_input():
    X = np.random.default_rng(2).integers(-50, 50, size=(30, 3))
    np.testing.assert_allclose(
        Standardizer().fit_transform(X),
        Standardizer().fit_transform(X.astype(np.float64)),
        rtol=1e-14,
    )


def test_output_is_c_contiguous_new_array_and_input_untouched(X):
    XF = np.asfortranarray(X)
    before = XF.copy()
    s = Standardizer().fit(XF)
    Z = s.transform(XF)
    assert Z.flags.c_contiguous
    assert not np.shares_memory(Z, XF)
    np.testing.assert_array_equal(XF, before)
    assert s.inverse_transform(np.asfortranarray(Z)).flags.c_contiguous


# bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.arange(5.0), ValueError, "X must be a 2-D array"),
        (np.ones((2, 3, 4)), ValueError, "X must be a 2-D array"),
        (np.float64(1.0), ValueError, "X must be a 2-D array"),
        (np.empty((0, 3)), ValueError, "X must have at least one sample"),
        (np.empty((3, 0)), ValueError, "X must have at least one feature"),
        (np.array([[1.0, np.nan]]), ValueError, "X contains NaN or infinity"),
        (np.array([[1.0, np.inf]]), ValueError, "X contains NaN or infinity"),
        (np.array([[-np.inf, 1.0]]), ValueError, "X contains NaN or infinity"),
        (np.array([[1, "a"]], dtype=object), TypeError, "X must hold real numbers"),
        (np.array([["1", "2"]]), TypeError, "X must hold real numbers"),
        (np.array([[b"1", b"2"]]), TypeError, "X must hold real numbers"),
        (np.ones((2, 2), dtype=np.complex128), TypeError, "X must hold real numbers"),
        ([[1.0, 2.0], [3.0]], ValueError, None),  # ragged: numpy itself refuses
    ],
)
def test_fit_rejects_bad_input(bad, error, match):
    with pytest.raises(error, match=match):
        Standardizer().fit(bad)


@pytest.mark.parametrize("method, name", [("transform", "X"), ("inverse_transform", "Z")])
def test_transform_rejects_bad_input_naming_the_argument(X, method, name):
    s = Standardizer().fit(X)
    apply = getattr(s, method)
    with pytest.raises(
        ValueError, match=f"{name} has 3 features, but this Standardizer was fitted with 4"
    ):
        apply(np.ones((5, 3)))
    with pytest.raises(ValueError, match=f"{name} must be a 2-D array"):
        apply(np.ones(4))
    with pytest.raises(ValueError, match=f"{name} contains NaN"):
        apply(np.full((2, 4), np.nan))
    with pytest.raises(TypeError, match=f"{name} must hold real numbers"):
        apply(np.ones((2, 4), dtype=np.complex64))


@pytest.mark.parametrize("call", ["transform", "inverse_transform", "state_dict"])
def test_use_before_fit_raises_not_fitted(call):
    s = Standardizer()
    args = () if call == "state_dict" else (np.ones((2, 2)),)
    with pytest.raises(NotFittedError, match=r"call fit\(X\)"):
        getattr(s, call)(*args)
    assert issubclass(NotFittedError, ValueError)


@pytest.mark.parametrize(
    "eps, error",
    [
        (0.0, ValueError),
        (-1e-8, ValueError),
        (np.nan, ValueError),
        (np.inf, ValueError),
        ("1e-8", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_bad_eps_is_rejected(eps, error):
    with pytest.raises(error, match="eps must be"):
        Standardizer(eps=eps)


def test_eps_accepts_numpy_scalars():
    assert Standardizer(eps=np.float32(1e-5)).eps == pytest.approx(1e-5)


def test_eps_changed_after_construction_is_validated_at_fit(X):
    s = Standardizer()
    s.eps = -1.0
    with pytest.raises(ValueError, match="eps must be"):
        s.fit(X)


# state -------------------------------------------------------------------------------------------


def test_state_dict_round_trip_through_npz(X, tmp_path):
    s = Standardizer(eps=1e-3).fit(X)
    state = s.state_dict()
    assert set(state) == {"eps", "mean", "var"}
    for value in state.values():
        assert isinstance(value, np.ndarray) and value.dtype.kind == "f"
    path = tmp_path / "standardizer.npz"
    np.savez(path, **state)
    with np.load(path, allow_pickle=False) as loaded:
        restored = Standardizer.from_state_dict(loaded)
    assert restored.eps == s.eps
    assert restored.n_features_in_ == s.n_features_in_
    for attr in ("mean_", "var_", "scale_"):
        np.testing.assert_array_equal(getattr(restored, attr), getattr(s, attr))
    np.testing.assert_array_equal(restored.transform(X), s.transform(X))


def test_state_dict_is_a_copy(X):
    s = Standardizer().fit(X)
    s.state_dict()["mean"][:] = 0.0
    assert np.all(s.mean_ != 0.0)


@pytest.mark.parametrize(
    "state, match",
    [
        ({"eps": np.array(1e-8), "mean": np.zeros(2)}, "missing the key"),
        ({"eps": np.array(1e-8), "mean": np.zeros(2), "var": np.ones(3)}, "same shape"),
        ({"eps": np.array(1e-8), "mean": np.zeros(2), "var": -np.ones(2)}, "non-negative"),
        ({"eps": np.array(1e-8), "mean": np.zeros((2, 2)), "var": np.ones(2)}, "1-D real array"),
        ({"eps": np.array(1e-8), "mean": np.array([np.nan]), "var": np.ones(1)}, "NaN"),
        ({"eps": np.ones(2), "mean": np.zeros(2), "var": np.ones(2)}, "real scalar"),
        ({"eps": np.array(0.0), "mean": np.zeros(2), "var": np.ones(2)}, "eps must be"),
    ],
)
def test_from_state_dict_rejects_bad_state(state, match, X):
    with pytest.raises(ValueError, match=match):
        Standardizer.from_state_dict(state)
    fitted = Standardizer(eps=1e-3).fit(X)
    before = fitted.state_dict()
    with pytest.raises(ValueError, match=match):
        fitted.load_state_dict(state)  # checked before anything changes
    assert fitted.eps == 1e-3
    for key, value in fitted.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_load_state_dict_takes_another_fit(X):
    other = Standardizer(eps=1e-2).fit(X[::2] * 3.0 + 1.0)
    s = Standardizer().fit(X)
    assert s.load_state_dict(other.state_dict()) is s
    assert s.eps == 1e-2
    np.testing.assert_array_equal(s.transform(X), other.transform(X))


def test_repr():
    assert repr(Standardizer(eps=0.5)) == "Standardizer(eps=0.5)"
