"""Loss names, their kernel codes, and the checks that turn user targets into kernel inputs.

Targets accepted (n samples, C network outputs):

- ``cross_entropy``: class indices (n,) of any integer dtype (or whole-valued floats/bools) in
  [0, C), or probability rows (n, C) — non-negative, each summing to 1.
- ``hinge``: class indices (n,) as above.
- ``binary_cross_entropy``: values in [0, 1], (n,) when C = 1, or (n, C).
- ``mse``: finite values, (n,) when C = 1, or (n, C).

A label column (n, 1) counts as (n,) for the label losses.
"""

from __future__ import annotations

import numpy as np

from ._validation import as_numeric_array, cast_finite, check_finite, writable_contiguous
from .kernels.cpu import losses as kl

LOSSES = ("cross_entropy", "binary_cross_entropy", "mse", "hinge")
CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy", "hinge")
LABEL_LOSSES = ("cross_entropy", "hinge")
PROBABILITY_ROW_TOLERANCE = 1e-3

_EMPTY_LABELS = np.zeros(0, dtype=np.int64)


def check_loss_name(loss):
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    return loss


def _check_labels(y, n_classes, name):
    check_finite(y, name)
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise ValueError(f"{name} holds class indices, which must be whole numbers; got non-integer "
                         f"values such as {y[y != np.round(y)][0]}")
    if y.size and y.min() < 0:
        raise ValueError(f"{name} holds class indices, which must be >= 0; got {y.min()}")
    if y.size and y.max() >= n_classes:
        raise ValueError(f"{name} holds class indices, which must be < {n_classes} (the number of "
                         f"network outputs); got {y.max()}")
    return writable_contiguous(y, np.int64)


def _check_probability_rows(y, n_classes, name):
    check_finite(y, name)
    if y.shape[1] != n_classes:
        raise ValueError(f"{name} as probability rows must have width {n_classes} (the number of "
                         f"network outputs); got shape {y.shape}")
    if y.size and y.min() < 0:
        raise ValueError(f"{name} as probability rows must be non-negative; got {y.min()}")
    sums = y.sum(axis=1, dtype=np.float64)
    bad = np.abs(sums - 1.0) > PROBABILITY_ROW_TOLERANCE
    if np.any(bad):
        raise ValueError(f"{name} as probability rows must sum to 1; row {int(np.argmax(bad))} sums "
                         f"to {sums[bad][0]:.6g}")


def _as_columns(y, n_outputs, name, loss):
    if y.ndim == 1:
        if n_outputs != 1:
            raise ValueError(f"{name} for {loss} with {n_outputs} outputs must have shape "
                             f"(n, {n_outputs}); got {y.shape}")
        return y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != n_outputs:
        raise ValueError(f"{name} for {loss} must have shape (n, {n_outputs})"
                         f"{' or (n,)' if n_outputs == 1 else ''}; got {y.shape}")
    return y


def prepare_targets(loss, y, n_samples, n_outputs, dtype, name="y"):
    """(labels (n,) int64, targets (n, C) dtype, kernel loss code) for the kernels.

    The unused one of labels/targets is an empty array. Raises TypeError/ValueError naming ``name``.
    """
    arr = as_numeric_array(y, name)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array of targets, one per sample; got a scalar")
    if arr.shape[0] != n_samples:
        raise ValueError(f"X and {name} have different numbers of samples: {n_samples} and "
                         f"{arr.shape[0]}")
    empty_targets = np.zeros((0, n_outputs), dtype=dtype)
    if loss in LABEL_LOSSES:
        if arr.ndim == 2 and arr.shape[1] == 1 and n_outputs != 1:
            arr = arr[:, 0]
        if arr.ndim == 1:
            code = kl.CROSS_ENTROPY if loss == "cross_entropy" else kl.HINGE
            return _check_labels(arr, n_outputs, name), empty_targets, code
        if loss == "hinge" or arr.ndim != 2:
            raise ValueError(f"{name} for {loss} must be class indices of shape (n,)"
                             f"{' or probability rows (n, C)' if loss == 'cross_entropy' else ''}; "
                             f"got shape {arr.shape}")
        _check_probability_rows(arr, n_outputs, name)
        return _EMPTY_LABELS, cast_finite(arr, dtype, name), kl.CROSS_ENTROPY_PROBS
    arr = _as_columns(arr, n_outputs, name, loss)
    check_finite(arr, name)
    if loss == "binary_cross_entropy":
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(f"{name} for binary_cross_entropy must lie in [0, 1]; got values in "
                             f"[{arr.min()}, {arr.max()}]")
        code = kl.BINARY_CROSS_ENTROPY
    else:
        code = kl.MSE
    return _EMPTY_LABELS, cast_finite(arr, dtype, name), code
