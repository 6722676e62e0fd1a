"""Thread-safe shared memory for the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).

The simulator runs the threads of a block as Python threads. ``cuda.shared.array`` returns, for
every thread of a launch, one NumPy array per call site, kept in a dict keyed by (file, line)
(``numba.cuda.simulator.kernelapi.FakeCUDAShared.array``): look up, allocate when missing, store.
That sequence takes no lock, so two threads of the first block that reach a call site together can
both miss the look-up and each allocate an array: one of them then works, for the whole launch, on
a private copy of "shared" memory (its writes never reach the block, its reads see its own stale
or uninitialized entries). Block reductions and product tiles then come out wrong now and then,
depending on how the threads interleave (more often with a short ``sys.setswitchinterval`` or a
loaded machine). A GPU is unaffected.

:func:`install` replaces that method, in simulator mode only, by one that looks up and allocates
under a lock, with the same keys (the calling frame's file and line) and the same dynamic
shared-memory behaviour. It is idempotent and leaves numba untouched without the simulator or when
its simulator lacks the expected structure. ``_reduce`` calls it on import, which every kernel
module using shared memory imports.
"""

import sys
import threading

import numpy as np

_lock = threading.Lock()


def _locked_shared_array(original, types, as_dtype):
    def array(self, shape, dtype):
        if shape == 0:  # dynamic shared memory: one preallocated buffer, nothing to race on
            return original(self, shape, dtype)
        if isinstance(dtype, types.Type):
            dtype = as_dtype(dtype)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        with _lock:
            res = self._allocations.get(key)
            if res is None:
                res = np.empty(shape, dtype)
                self._allocations[key] = res
        return res

    array.thread_safe = True
    array.original = original
    return array


def install():
    """Make the simulator's ``cuda.shared.array`` thread-safe; True when it is (or already was)."""
    from numba import cuda

    if "simulator" not in getattr(getattr(cuda, "jit", None), "__module__", ""):
        return False
    try:
        from numba.core import types
        from numba.cuda.simulator import kernelapi
        from numba.np.numpy_support import as_dtype
        shared = kernelapi.FakeCUDAShared
        original = shared.array
        keyed = "_allocations" in shared.__init__.__code__.co_names
    except (ImportError, AttributeError):
        return False
    if getattr(original, "thread_safe", False):
        return True
    if not keyed:
        return False
    shared.array = _locked_shared_array(original, types, as_dtype)
    return True
