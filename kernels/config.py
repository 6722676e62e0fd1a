"""One place for every compilation setting the kernels use.

``JIT`` is passed to every CPU ``@njit``: ``cache=True`` so a new process loads compiled code from
disk, ``nogil=True`` so callers may train several models from threads, and ``fastmath=False`` so
NaN/inf handling and the float64 gradient checks stay exact. ``error_model="numpy"`` lets a
division by zero give inf/NaN as NumPy does instead of a per-division check that blocks
vectorization (values are validated on the host before any kernel runs).
"""

JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")

# Reductions whose order does not matter (a gradient norm, a finiteness check) may be reassociated
# so LLVM vectorizes them; NaN and inf still propagate (no "nnan"/"ninf" flags).
JIT_REDUCTION = dict(JIT, fastmath={"reassoc", "contract"})
