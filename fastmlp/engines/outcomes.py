"""What an epoch (or one step) of training returned, why it stopped early in words, and the
lock that lets one fit at a time train a model.

A compiled epoch stops before the update of the first step whose loss or gradient is NaN/inf
(``STOP_NONFINITE``) or whose update would make a parameter or an optimizer state value NaN/inf
(``STOP_OVERFLOW``, found by ``kernels.rules.update_bound`` and the check of the update); the
kernel reports which value (``R_BAD``: 1 + 4·i + a for element i of array a, 0 the parameters,
1-3 the state arrays in the order of ``Optimizer.kernel_state``).
"""

from __future__ import annotations

import threading
from collections import namedtuple
from contextlib import contextmanager

import numpy as np

from ..kernels.contract import R_BAD, R_STOP, STOP_NONE, STOP_NONFINITE

EpochResult = namedtuple("EpochResult", ["done", "total", "correct", "counted", "failure"])
EpochResult.__doc__ = """Steps done, Σ batch loss · rows, correct and counted predictions, and
``failure``: None, or why the step after the last one done was not made (:func:`describe_stop`)."""


def describe_stop(result, slots, state_names, dtype):
    """None when the kernel's ``result`` (N_RESULT,) says no step stopped, else a sentence naming
    what was not finite. ``slots``: the layout's parameter slots (key, offset, shape);
    ``state_names``: the optimizer's state arrays in kernel order ("" for unused ones)."""
    stop = int(result[R_STOP])
    if stop == STOP_NONE:
        return None
    if stop == STOP_NONFINITE:
        return "the loss or the gradient was NaN or infinite"
    index, array = divmod(int(result[R_BAD]) - 1, 4)
    slot = next((s for s in reversed(slots) if s.offset <= index), None)
    where = ""
    if slot is not None:
        element = np.unravel_index(index - slot.offset, slot.shape)
        where = f" of parameter {slot.key} at {tuple(int(i) for i in element)}"
    value = "the parameter value" if array == 0 else f"the optimizer state {state_names[array - 1]}"
    return (f"the update would make {value}{where} NaN or infinite in "
            f"{dtype.name} (the step's loss and gradient were finite)")


class FitLock:
    """At most one fit of a model at a time: :meth:`claim` when a fit begins (RuntimeError when
    another thread's fit holds the model), :meth:`release` when it ends; :meth:`check_training`
    refuses the training-mode passes of other threads meanwhile."""

    def __init__(self):
        self._lock = threading.Lock()
        self._owner = None  # the thread whose fit holds the lock

    def claim(self):
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("this model is already being trained by another fit (in another "
                               "thread); train a model in one fit at a time, or train a copy "
                               "(model.copy())")
        self._owner = threading.get_ident()

    def release(self):
        if self._lock.locked():
            self._owner = None
            self._lock.release()

    def check_training(self):
        """RuntimeError when a fit of another thread holds the model: a training-mode pass
        (which updates the batchnorm running statistics and the dropout step) would change them
        under that fit. The fit's own thread (its callbacks) may run them."""
        owner = self._owner
        if owner is not None and owner != threading.get_ident():
            raise RuntimeError("this model is being trained by a fit in another thread; a "
                               "training-mode pass would change its batchnorm statistics and "
                               "dropout step under that fit: wait for the fit to end, use "
                               "training=False, or use a copy (model.copy())")

    @contextmanager
    def beginning(self):
        """``with lock.beginning():`` claims the lock for a fit that begins in the block and
        releases it again if the block raises (a fit that began keeps the lock until its end
        releases it)."""
        self.claim()
        try:
            yield
        except BaseException:
            self.release()
            raise
