"""Input preprocessing: per-feature standardization.

For data ``X`` of shape ``(n_samples, n_features)`` the :class:`Standardizer` learns, per feature j,

    mean_j  = (1/N) * sum_i X_ij
    var_j   = (1/N) * sum_i (X_ij - mean_j)**2        (biased variance)
    scale_j = sqrt(var_j + eps)     (scale_j = 1 for a feature that is constant in the fit data)

and maps ``X'_ij = (X_ij - mean_j) / scale_j``. A feature constant in the fit data maps to 0 there;
its scale is 1 (as scikit-learn's StandardScaler does) so that a value seen only later, e.g. a pixel
that is always blank in the training images, is shifted rather than blown up by 1/sqrt(eps).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np

from ._validation import as_numeric_array

__all__ = ["NotFittedError", "Standardizer"]

_STATE_KEYS = ("eps", "mean", "var")


class NotFittedError(ValueError, AttributeError):
    """Raised when a transformer is used before ``fit``."""


def _check_eps(eps) -> float:
    """Return ``eps`` as a float; it must be a finite real number > 0."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a positive real number; got {type(eps).__name__} {eps!r}")
    eps = float(eps)
    if not np.isfinite(eps) or eps <= 0.0:
        raise ValueError(f"eps must be a finite number > 0; got {eps!r}")
    return eps


def _check_2d_real(X, name: str) -> np.ndarray:
    """Return ``X`` as an ndarray after checking it is a finite, real, non-empty 2-D array.

    Booleans, integers and floats are accepted; object, string, bytes, complex and
    structured dtypes raise ``TypeError``; wrong rank, zero samples, zero features and
    NaN/inf raise ``ValueError``.
    """
    arr = as_numeric_array(X, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); "
            f"got a {arr.ndim}-D array of shape {arr.shape}. Use {name}.reshape(-1, 1) for "
            f"a single feature or {name}.reshape(1, -1) for a single sample."
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must have at least one sample; got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature; got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; clean or impute it first")
    return arr


def _output_dtype(dtype: np.dtype) -> np.dtype:
    """float32 stays float32; other accepted dtypes (bool, integers, float16/64) give float64."""
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


class Standardizer:
    """Per-feature standardization ``X' = (X - mean_) / sqrt(var_ + eps)``.

    Parameters
    ----------
    eps : float, default 1e-8
        Added to the variance before the square root; must be > 0. Constant features get
        ``scale_ = 1`` and standardize to 0.

    Attributes (after ``fit``)
    --------------------------
    mean_ : ndarray, shape (n_features,), float64
        Per-feature mean of the training data.
    var_ : ndarray, shape (n_features,), float64
        Per-feature biased variance ``mean((X - mean_)**2, axis=0)``.
    scale_ : ndarray, shape (n_features,), float64
        ``sqrt(var_ + eps)``, or 1 where ``var_ == 0``.
    n_features_in_ : int
        Number of features seen in ``fit``.

    Statistics are always accumulated in float64. ``transform`` and ``inverse_transform``
    return a new C-contiguous array: float32 for float32 input, float64 otherwise.
    """

    def __init__(self, eps: float = 1e-8):
        self.eps = _check_eps(eps)

    def __repr__(self) -> str:
        return f"Standardizer(eps={self.eps!r})"

    # fitting -------------------------------------------------------------------------------------

    def fit(self, X) -> Standardizer:
        """Learn ``mean_``, ``var_`` and ``scale_`` from ``X`` of shape (n_samples, n_features).

        Returns ``self``.
        """
        self.eps = _check_eps(self.eps)
        X = _check_2d_real(X, "X")
        mean = X.mean(axis=0, dtype=np.float64)
        var = X.var(axis=0, dtype=np.float64)  # two-pass, biased (ddof=0)
        self._set_statistics(mean, var)
        return self

    def fit_transform(self, X) -> np.ndarray:
        """``fit(X)`` then ``transform(X)``; returns shape (n_samples, n_features)."""
        return self.fit(X).transform(X)

    def _set_statistics(self, mean: np.ndarray, var: np.ndarray) -> None:
        self.mean_ = np.ascontiguousarray(mean, dtype=np.float64)
        self.var_ = np.ascontiguousarray(var, dtype=np.float64)
        self.scale_ = np.where(self.var_ > 0, np.sqrt(self.var_ + self.eps), 1.0)
        self.n_features_in_ = int(self.mean_.shape[0])

    # applying ------------------------------------------------------------------------------------

    def transform(self, X) -> np.ndarray:
        """Return ``(X - mean_) / scale_``, shape (n_samples, n_features)."""
        X = self._check_input(X, "X")
        out_dtype = _output_dtype(X.dtype)
        Z = np.array(X, dtype=out_dtype, order="C", copy=True)
        Z -= self.mean_.astype(out_dtype)
        Z /= self.scale_.astype(out_dtype)
        return Z

    def inverse_transform(self, Z) -> np.ndarray:
        """Return ``Z * scale_ + mean_``, shape (n_samples, n_features); undoes ``transform``."""
        Z = self._check_input(Z, "Z")
        out_dtype = _output_dtype(Z.dtype)
        X = np.array(Z, dtype=out_dtype, order="C", copy=True)
        X *= self.scale_.astype(out_dtype)
        X += self.mean_.astype(out_dtype)
        return X

    def _check_input(self, X, name: str) -> np.ndarray:
        self._check_fitted()
        X = _check_2d_real(X, name)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} has {X.shape[1]} features, but this Standardizer was fitted with "
                f"{self.n_features_in_} features"
            )
        return X

    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise NotFittedError(
                "This Standardizer is not fitted yet; call fit(X) (or fit_transform(X)) first"
            )

    # persistence ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Return the fitted state as plain arrays: ``{"eps": (), "mean": (d,), "var": (d,)}``.

        Every value is a numeric ndarray, so the dict can be written with
        ``np.savez(path, **state)`` and read back with ``np.load(path, allow_pickle=False)``.
        """
        self._check_fitted()
        return {
            "eps": np.array(self.eps, dtype=np.float64),
            "mean": self.mean_.copy(),
            "var": self.var_.copy(),
        }

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> Standardizer:
        """Take ``eps`` and the statistics from ``state_dict()`` output or its ``np.load``
        result; returns ``self``. The state is checked first: a bad one raises ValueError and
        leaves this Standardizer unchanged."""
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise ValueError(
                f"state is missing the key(s) {missing}; expected the keys {list(_STATE_KEYS)}"
            )
        eps = np.asarray(state["eps"])
        if eps.shape != () or eps.dtype.kind not in "iuf":
            raise ValueError(f"state['eps'] must be a real scalar array; got {eps!r}")
        mean = _check_state_vector(state["mean"], "mean")
        var = _check_state_vector(state["var"], "var")
        if mean.shape != var.shape:
            raise ValueError(
                f"state['mean'] and state['var'] must have the same shape; got {mean.shape} "
                f"and {var.shape}"
            )
        if (var < 0).any():
            raise ValueError("state['var'] must be non-negative")
        self.eps = _check_eps(float(eps))
        self._set_statistics(mean, var)
        return self

    @classmethod
    def from_state_dict(cls, state: Mapping[str, np.ndarray]) -> Standardizer:
        """A fitted Standardizer rebuilt from ``state_dict()`` output or its ``np.load`` result
        (see :meth:`load_state_dict`)."""
        return cls().load_state_dict(state)


def _check_state_vector(value, key: str) -> np.ndarray:
    """Return ``state[key]`` as a finite float64 vector of shape (n_features,), n_features >= 1."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(
            f"state[{key!r}] must be a non-empty 1-D real array; got dtype {arr.dtype}, "
            f"shape {arr.shape}"
        )
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"state[{key!r}] contains NaN or infinity")
    return arr
