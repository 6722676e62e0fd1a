"""Inputs that already live on the GPU, for ``device="cuda"`` models.

Any array exposing ``__cuda_array_interface__`` (CuPy, PyTorch CUDA tensors, numba.cuda device
arrays) is used where it lies: it is wrapped as a numba.cuda device array without a copy and
checked on the device (``kernels/cuda/checks.py``) with the same rules, and the same messages,
as host arrays (``_validation.py``, ``losses.py``). Only the check results cross to the host.

What a device input must be, beyond the host rules:

- features and float targets: the model's dtype (no conversion is made on the device; a
  TypeError says how to convert) and C-contiguous (a ValueError says how to make it so);
- class indices: an integer (or bool) array; other integer dtypes than int64 are converted on the
  device (one copy of n integers).

Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) device memory is host memory: an interface's
pointer is wrapped as a NumPy view, so the same code paths run in the tests.
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

from ..kernels import contract as kl
from ..losses import (
    EMPTY_LABELS,
    LABELS,
    PROBABILITIES,
    PROBABILITY_ROW_TOLERANCE,
    target_kind,
)
from .cuda_support import simulator_enabled

__all__ = ["is_device_input", "reject_device_input", "device_features", "device_targets",
           "take_rows"]


def _simulator_array_type():
    module = sys.modules.get("numba.cuda.simulator.cudadrv.devicearray")
    return None if module is None else module.FakeCUDAArray


def is_device_input(value):
    """Whether ``value`` is a GPU array: it has ``__cuda_array_interface__``, or it is a device
    array of numba's CUDA simulator."""
    if hasattr(value, "__cuda_array_interface__"):
        return True
    fake = _simulator_array_type()
    return fake is not None and isinstance(value, fake)


def reject_device_input(value, name):
    """TypeError for a GPU array given to a ``device="cpu"`` model."""
    if is_device_input(value):
        raise TypeError(f"{name} is a GPU array (__cuda_array_interface__) but the model runs on "
                        f"the CPU: use an MLP with device='cuda', or copy {name} to the host "
                        f"(cupy: .get(), torch: .cpu().numpy())")


def _simulated_view(interface, name):
    """A simulator device array over the memory an interface points to (host memory there)."""
    fake = _simulator_array_type()
    dtype = np.dtype(interface["typestr"])
    shape = tuple(int(s) for s in interface["shape"])
    strides = interface.get("strides")
    pointer = int(interface["data"][0])
    if 0 in shape or not shape:
        return fake(np.zeros(shape, dtype=dtype))
    if strides is None:  # C-contiguous
        strides = tuple(int(np.prod(shape[k + 1:])) * dtype.itemsize for k in range(len(shape)))
    span = sum((s - 1) * abs(st) for s, st in zip(shape, strides)) + dtype.itemsize
    if min(strides) < 0:
        raise ValueError(f"{name}: negative strides are not supported")
    buffer = (ctypes.c_char * span).from_address(pointer)
    return fake(np.ndarray(shape, dtype=dtype, buffer=buffer, strides=strides))


def as_device_array(value, name):
    """``value`` as a numba.cuda device array over the same memory (no copy)."""
    from numba import cuda
    fake = _simulator_array_type()
    if fake is not None and isinstance(value, fake):
        return value
    try:
        interface = value.__cuda_array_interface__
        if interface.get("mask") is not None:
            raise ValueError("masked arrays are not supported")
        if simulator_enabled():
            return _simulated_view(interface, name)
        return cuda.as_cuda_array(value)
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise ValueError(f"{name}: its __cuda_array_interface__ cannot be used: {exc}") from None


def _check_float(d, dtype, name):
    if d.dtype != dtype:
        raise TypeError(f"{name} is a GPU array of {d.dtype} but the model computes in "
                        f"{np.dtype(dtype).name}: convert it on the device first "
                        f"(cupy: .astype('{np.dtype(dtype).name}'), torch: "
                        f".to(torch.{np.dtype(dtype).name}))")
    if not d.is_c_contiguous():
        raise ValueError(f"{name} is a GPU array that is not C-contiguous: make it contiguous "
                         f"first (cupy.ascontiguousarray, torch: .contiguous())")


def _summary(d, name):
    from ..kernels.cuda.checks import value_summary
    bad, lo, hi = value_summary(d)
    if bad:
        raise ValueError(f"{name} contains NaN or inf")
    return lo, hi


def device_features(X, n_features, dtype, name="X"):
    """The GPU array ``X`` checked like ``_validation.check_features``: (n, n_features), n ≥ 1,
    finite, of ``dtype``, C-contiguous. Returns the device array (no copy)."""
    d = as_device_array(X, name)
    if d.ndim != 2:
        hint = " (reshape a single feature with X.reshape(-1, 1))" if d.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape "
                         f"{tuple(d.shape)}{hint}")
    if d.shape[0] == 0:
        raise ValueError(f"{name} has zero samples; at least one is required")
    if d.shape[1] != n_features:
        raise ValueError(f"{name} has {d.shape[1]} features but the model expects {n_features} "
                         f"(input_dim)")
    _check_float(d, dtype, name)
    _summary(d, name)
    return d


def _device_labels(d, n_classes, name):
    from ..kernels.cuda.checks import label_range, to_int64
    if d.dtype.kind not in "biu":
        raise TypeError(f"{name} as class indices on the GPU must be an integer array; got "
                        f"{d.dtype} (convert it on the device: .astype('int64') / .long())")
    lo, hi = label_range(d)
    if lo < 0:
        raise ValueError(f"{name} holds class indices, which must be >= 0; got {lo}")
    if hi >= n_classes:
        raise ValueError(f"{name} holds class indices, which must be < {n_classes} (the number of "
                         f"network outputs); got {hi}")
    return d if d.dtype == np.int64 and d.is_c_contiguous() else to_int64(d)


def device_targets(loss, y, n_samples, n_outputs, dtype, name="y"):
    """(labels, targets, loss code) from the GPU array ``y``, read as ``losses.target_kind``
    says and checked like ``losses.prepare_targets``; the used one is a device array, the unused
    one an empty host array."""
    d = as_device_array(y, name)
    kind, code, shape = target_kind(loss, d.shape, n_samples, n_outputs, name)
    if kind == LABELS:
        if d.ndim == 2:  # a (n, 1) column
            d = d.reshape(shape) if d.is_c_contiguous() else d[:, 0]
        return _device_labels(d, n_outputs, name), np.zeros((0, n_outputs), dtype=dtype), code
    _check_float(d, dtype, name)
    if d.ndim == 1:  # (n,) for one output
        d = d.reshape(shape)
    lo, hi = _summary(d, name)
    if kind == PROBABILITIES:
        if lo < 0:
            raise ValueError(f"{name} as probability rows must be non-negative; got {lo}")
        from ..kernels.cuda.checks import row_sum_deviation
        worst = row_sum_deviation(d)
        if worst > PROBABILITY_ROW_TOLERANCE:
            raise ValueError(f"{name} as probability rows must sum to 1; a row is off by "
                             f"{worst:.6g}")
    elif code == kl.BINARY_CROSS_ENTROPY and (lo < 0 or hi > 1):
        raise ValueError(f"{name} for binary_cross_entropy must lie in [0, 1]; got values in "
                         f"[{lo}, {hi}]")
    return EMPTY_LABELS, d, code


def take_rows(d_X, d_labels, d_targets, rows):
    """New device arrays holding the ``rows`` (host int array) of the device arrays d_X (n, d),
    d_labels (n,) or empty and d_targets (n, C) or (0, C), gathered on the device."""
    from numba import cuda

    from ..kernels.cuda.train import gather_batch
    m = int(rows.shape[0])
    X = cuda.device_array((m, d_X.shape[1]), dtype=d_X.dtype)
    labels = cuda.device_array(m if d_labels.shape[0] else 0, dtype=np.int64)
    targets = cuda.device_array((m if d_targets.shape[0] else 0, d_targets.shape[1]),
                                dtype=d_targets.dtype)
    gather_batch(X, labels, targets, d_X, d_labels, d_targets,
                 cuda.to_device(np.ascontiguousarray(rows, dtype=np.int64)), 0, m)
    return X, labels, targets
