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

from ._validation import (
    as_numeric_array,
    cast_finite,
    check_finite,
    writable_contiguous,
)
from .kernels import contract as kl

LOSSES = ("cross_entropy", "binary_cross_entropy", "mse", "hinge")
CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy", "hinge")
LABEL_LOSSES = ("cross_entropy", "hinge")
PROBABILITY_ROW_TOLERANCE = 1e-3

EMPTY_LABELS = np.zeros(0, dtype=np.int64)
"""The labels array of targets that are not class indices."""


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


def _check_probability_rows(y, name):
    check_finite(y, name)
    if y.size and y.min() < 0:
        raise ValueError(f"{name} as probability rows must be non-negative; got {y.min()}")
    sums = y.sum(axis=1, dtype=np.float64)
    bad = np.abs(sums - 1.0) > PROBABILITY_ROW_TOLERANCE
    if np.any(bad):
        raise ValueError(f"{name} as probability rows must sum to 1; row {int(np.argmax(bad))} sums "
                         f"to {sums[bad][0]:.6g}")


LABELS, PROBABILITIES, VALUES = "labels", "probabilities", "values"


def target_kind(loss, shape, n_samples, n_outputs, name="y"):
    """How targets of this ``shape`` are read for ``loss``, decided from the shape alone (for host
    and GPU arrays alike): (kind, kernel loss code, the shape to view them as), kind being
    ``LABELS`` (class indices, (n,)), ``PROBABILITIES`` (rows, (n, C)) or ``VALUES`` ((n, C)).
    Raises ValueError naming ``name`` for a shape that fits none."""
    shape = tuple(int(s) for s in shape)
    if not shape:
        raise ValueError(f"{name} must be an array of targets, one per sample; got a scalar")
    if shape[0] != n_samples:
        raise ValueError(f"X and {name} have different numbers of samples: {n_samples} and "
                         f"{shape[0]}")
    if loss in LABEL_LOSSES:
        if len(shape) == 2 and shape[1] == 1 and n_outputs != 1:
            shape = shape[:1]
        if len(shape) == 1:
            return LABELS, kl.CROSS_ENTROPY if loss == "cross_entropy" else kl.HINGE, shape
        if loss == "hinge" or len(shape) != 2:
            raise ValueError(f"{name} for {loss} must be class indices of shape (n,)"
                             f"{' or probability rows (n, C)' if loss == 'cross_entropy' else ''}; "
                             f"got shape {shape}")
        if shape[1] != n_outputs:
            raise ValueError(f"{name} as probability rows must have width {n_outputs} (the "
                             f"number of network outputs); got shape {shape}")
        return PROBABILITIES, kl.CROSS_ENTROPY_PROBS, shape
    if len(shape) == 1:
        if n_outputs != 1:
            raise ValueError(f"{name} for {loss} with {n_outputs} outputs must have shape "
                             f"(n, {n_outputs}); got {shape}")
        shape = (shape[0], 1)
    if len(shape) != 2 or shape[1] != n_outputs:
        raise ValueError(f"{name} for {loss} must have shape (n, {n_outputs})"
                         f"{' or (n,)' if n_outputs == 1 else ''}; got {shape}")
    return VALUES, kl.BINARY_CROSS_ENTROPY if loss == "binary_cross_entropy" else kl.MSE, shape


def prepare_targets(loss, y, n_samples, n_outputs, dtype, name="y"):
    """(labels (n,) int64, targets (n, C) dtype, kernel loss code) for the kernels.

    The unused one of labels/targets is an empty array. Raises TypeError/ValueError naming ``name``.
    """
    arr = as_numeric_array(y, name)
    kind, code, shape = target_kind(loss, arr.shape, n_samples, n_outputs, name)
    arr = arr.reshape(shape)
    empty_targets = np.zeros((0, n_outputs), dtype=dtype)
    if kind == LABELS:
        return _check_labels(arr, n_outputs, name), empty_targets, code
    if kind == PROBABILITIES:
        _check_probability_rows(arr, name)
        return EMPTY_LABELS, cast_finite(arr, dtype, name), code
    check_finite(arr, name)
    if code == kl.BINARY_CROSS_ENTROPY and arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name} for binary_cross_entropy must lie in [0, 1]; got values in "
                         f"[{arr.min()}, {arr.max()}]")
    return EMPTY_LABELS, cast_finite(arr, dtype, name), code
