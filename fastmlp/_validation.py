"""Host-side checks of user input, done once before any kernel touches memory."""

from __future__ import annotations

import numbers

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


def resolve_dtype(dtype):
    """'float32' / 'float64' (or the NumPy types) → np.dtype; anything else is a ValueError."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in DTYPES or isinstance(dtype, bool):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return resolved


def as_numeric_array(value, name):
    """np.asarray(value) for real numeric data; TypeError for objects, strings, complex, sparse."""
    if hasattr(value, "tocsr") and hasattr(value, "nnz"):
        raise TypeError(f"{name} must be a dense array; got a sparse matrix (use .toarray())")
    if hasattr(value, "__cuda_array_interface__"):
        raise TypeError(f"{name} is a GPU array (__cuda_array_interface__); this takes host "
                        f"arrays: copy it to the host first (cupy: .get(), torch: .cpu().numpy())")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be converted to a numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (bool, int or float); got dtype {arr.dtype}")
    return arr


_FINITE_CHECK_BLOCK = 1 << 18  # elements per block: the check allocates at most this many bools


def all_finite(arr):
    """True when no element is NaN or inf, checked a block at a time (no full-size temporary)."""
    if arr.dtype.kind != "f":
        return True
    flat = arr.reshape(-1) if arr.flags.c_contiguous else arr.ravel()
    return all(np.isfinite(flat[i:i + _FINITE_CHECK_BLOCK]).all()
               for i in range(0, flat.size, _FINITE_CHECK_BLOCK))


def check_finite(arr, name):
    if not all_finite(arr):
        raise ValueError(f"{name} contains NaN or inf")


def check_features(X, n_features, dtype, name="X"):
    """X as a C-contiguous (n, n_features) array of ``dtype``; ValueError/TypeError otherwise."""
    arr = as_numeric_array(X, name)
    if arr.ndim != 2:
        hint = " (reshape a single feature with X.reshape(-1, 1))" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has zero samples; at least one is required")
    if arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features but the model expects {n_features} "
                         f"(input_dim)")
    check_finite(arr, name)
    return cast_finite(arr, dtype, name)


def cast_finite(arr, dtype, name):
    """C-contiguous ``arr`` as ``dtype``; ValueError when values overflow it (e.g. 1e300 → float32)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = writable_contiguous(arr, dtype)
    if not all_finite(out):
        raise ValueError(f"{name} contains NaN or inf (or values too large for {np.dtype(dtype).name})")
    return out


def writable_contiguous(arr, dtype):
    """C-contiguous, writable ``arr`` as ``dtype`` (a read-only array would make Numba compile a
    second copy of every kernel, so it is copied)."""
    out = np.ascontiguousarray(arr, dtype=dtype)
    return out if out.flags.writeable else out.copy()


def check_int(value, name, minimum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def check_real(value, name, minimum=None, maximum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite; got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {value}")
    return value
