"""Building the kernel records (``fastmlp.kernels.contract``) from host arrays, and the
magnitude bounds an optimizer update starts from.

Every field always has the same type (the model's float dtype, int64, float64, Python scalars),
so one compiled specialization of each kernel serves every call; fields a call does not use get
empty arrays of the right type.
"""

from __future__ import annotations

import functools

import numpy as np

from ..kernels.contract import (
    B_LIMIT,
    N_BOUNDS,
    N_COEFFICIENTS,
    N_PARTIALS,
    N_RESULT,
    Data,
    Half,
    Network,
    Run,
    Update,
    Workspace,
)
from ..kernels.cpu.norms import largest_masked_bits
from ..kernels.cpu.team import N_SHARED, new_sync

_EMPTY_INT = np.empty(0, dtype=np.int64)


def network(params, buffers, layout):
    return Network(params, buffers, layout.layer_int, layout.layer_float)


def data(X, labels, targets, loss_code, order=_EMPTY_INT, bounds=_EMPTY_INT):
    return Data(X, labels, targets, int(loss_code), order, bounds)


@functools.lru_cache(maxsize=None)
def _no_targets(dtype, n_outputs):
    return np.empty((0, n_outputs), dtype=dtype)


def features_only(X, n_outputs):
    """Data for a forward pass: the rows, no labels or targets."""
    return Data(X, _EMPTY_INT, _no_targets(X.dtype, n_outputs), 0, _EMPTY_INT, _EMPTY_INT)


_NO_HALF = Half(np.empty(0, dtype=np.uint16), np.empty(0, dtype=np.uint16),
                np.empty((0, 0), dtype=np.uint16))


def half(half_params, ws_size, rows, features):
    """The Half record of a mixed model's workspace: ``half_params`` (P,) uint16 (the caller's,
    shared by the workspaces of one thread), bits for a (ws_size,) workspace and (rows,
    features) input rows."""
    return Half(half_params, np.zeros(ws_size, dtype=np.uint16),
                np.zeros((rows, features), dtype=np.uint16))


def workspace(ws, ws_off, parts, dtype, grads=None, batch=None, ws_off_last=None, saved=None,
              half=None):
    """A Workspace record; ``batch`` = (Xb, lb, tb) buffers when the call gathers its batches;
    ``half`` the bfloat16 operands of a mixed model (:func:`half`), else none."""
    dtype = np.dtype(dtype)
    empty = np.empty(0, dtype=dtype)
    if batch is None:
        batch = (np.empty((0, 0), dtype=dtype), _EMPTY_INT, np.empty((0, 0), dtype=dtype))
    return Workspace(ws, ws_off, ws_off if ws_off_last is None else ws_off_last,
                     empty if grads is None else grads, np.zeros((parts, N_PARTIALS)), *batch,
                     empty if saved is None else saved, np.zeros(N_SHARED), new_sync(),
                     np.zeros(N_RESULT), _NO_HALF if half is None else half)


@functools.lru_cache(maxsize=None)
def _no_update(dtype):
    empty = np.empty(0, dtype=dtype)
    return Update(0, empty, empty, empty, False, False,
                  np.zeros((1, N_COEFFICIENTS), dtype=dtype), np.zeros(N_BOUNDS))


def no_update(dtype):
    """An Update record for calls that do not step an optimizer (never written to)."""
    return _no_update(np.dtype(dtype))


def update(state, coefficients, bounds):
    """An Update record from ``Optimizer.kernel_state``, a coefficient table and the
    :func:`update_bounds` of the arrays (which the kernels keep current)."""
    code, s0, s1, s2, flag, init = state
    return Update(int(code), s0, s1, s2, bool(flag), bool(init), coefficients, bounds)


LIMIT_FRACTION = 1.0 / 16
"""An update is checked value by value before it is made when a bound of the magnitudes it
produces reaches this fraction of the dtype's largest finite value."""


def update_bounds(params, state, out=None):
    """(N_BOUNDS,) float64: the largest |value| of ``params`` and of each state array of
    ``state`` (``Optimizer.kernel_state``; 0 for an unused one) and the limit for their dtype;
    written into ``out`` when given. Non-finite values give inf (every update is then checked)."""
    out = np.zeros(N_BOUNDS) if out is None else out
    for i, array in enumerate((params, *state[1:4])):
        out[i] = largest_magnitude(array)
    out[B_LIMIT] = float(np.finfo(params.dtype).max) * LIMIT_FRACTION
    return out


_BITS = {np.dtype(np.float32): (np.uint32, np.uint32(0x7FFF_FFFF)),
         np.dtype(np.float64): (np.uint64, np.uint64(0x7FFF_FFFF_FFFF_FFFF))}


def largest_magnitude(array):
    """max |array| as a Python float (0.0 for an empty array); inf when a value is NaN."""
    unsigned, mask = _BITS[array.dtype]
    bits = np.ascontiguousarray(array).reshape(-1).view(unsigned)
    largest = float(np.array(largest_masked_bits(bits, mask), dtype=unsigned).view(array.dtype))
    return float("inf") if largest != largest else largest


def run(seed=0, first_step=0, l1=0.0, l2=0.0, clip_norm=0.0, parts=1, training=False,
        update_stats=False, count=False, gathered=False):
    """A Run record; ``members`` is left at 1 for ``_team.run_task`` to choose."""
    return Run(int(seed), int(first_step), float(l1), float(l2), float(clip_norm), int(parts), 1,
               bool(training), bool(update_stats), bool(count), bool(gathered))
