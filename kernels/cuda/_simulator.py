"""Thread-safety fixes for the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).

The simulator runs the threads of a block as Python threads, and two of its helpers are not safe
for that. A GPU is unaffected by either; :func:`install` fixes both, in simulator mode only.

**Shared memory.** ``cuda.shared.array`` returns, for every thread of a launch, one NumPy array per
call site, kept in a dict keyed by (file, line) (``numba.cuda.simulator.kernelapi.FakeCUDAShared.
array``): look up, allocate when missing, store. That sequence takes no lock, so two threads of the
first block that reach a call site together can both miss the look-up and each allocate an array:
one of them then works, for the whole launch, on a private copy of "shared" memory (its writes
never reach the block, its reads see its own stale or uninitialized entries). Block reductions and
product tiles then come out wrong now and then, depending on how the threads interleave (more often
with a short ``sys.setswitchinterval`` or a loaded machine). The fix looks up and allocates under a
lock, with the same keys (the calling frame's file and line) and the same dynamic shared-memory
behaviour.

**The fake ``cuda`` module.** Each call of a device function swaps the ``cuda`` global of the
function's module for the launch's fake module (``kernelapi.swapped_cuda_module``) and puts the
real one back when the call returns, even while other threads are still inside a function of that
module (they found it already swapped, so they swapped nothing): they then read the real
numba.cuda and fail with an AttributeError ("module 'numba.cuda' has no attribute 'threadIdx'"),
now and then, in the reductions of ``_reduce`` called from the kernels of other modules. The fix
counts the threads inside each module under a lock: the first to enter swaps, the last to leave
restores (NVIDIA/numba-cuda fixed the same race upstream in its pull request 690).

:func:`install` is idempotent and leaves numba untouched without the simulator or when its
simulator lacks the expected structure. ``_reduce`` calls it on import, which every kernel module
using shared memory or block reductions imports.
"""

import inspect
import sys
import threading
from contextlib import contextmanager

import numba
import numpy as np

_lock = threading.Lock()
_swap_lock = threading.Lock()


def _locked_shared_array(original, types, as_dtype):
    def array(self, shape, dtype):
        if shape == 0:  # dynamic shared memory: one preallocated buffer, nothing to race on
            return original(self, shape, dtype)
        if isinstance(dtype, types.Type):
            dtype = as_dtype(dtype)
        caller = inspect.currentframe().f_back
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


def _counted_swapped_cuda_module():
    """``swapped_cuda_module`` that swaps a module's globals when the first thread enters and
    restores them when the last one leaves (counted per globals dict, under a lock)."""
    inside = {}  # id(globals) -> [threads inside, the original ``cuda`` entries]

    @contextmanager
    def swapped_cuda_module(fn, fake_cuda_module):
        from numba import cuda
        globs = fn.__globals__
        key = id(globs)
        with _swap_lock:
            entry = inside.get(key)
            if entry is None:
                original = {k: v for k, v in globs.items() if v is cuda}
                globs.update({k: fake_cuda_module for k in original})
                entry = inside[key] = [0, original]
            entry[0] += 1
        try:
            yield
        finally:
            with _swap_lock:
                entry[0] -= 1
                if entry[0] == 0:
                    globs.update(entry[1])
                    del inside[key]

    swapped_cuda_module.thread_safe = True
    return swapped_cuda_module


def install():
    """Make the simulator's ``cuda.shared.array`` and module swap thread-safe; True when both
    are (or already were)."""
    from numba import cuda

    if "simulator" not in getattr(getattr(cuda, "jit", None), "__module__", ""):
        return False
    try:
        from numba.core import types
        from numba.cuda.simulator import kernel, kernelapi
        from numba.np.numpy_support import as_dtype
        shared = kernelapi.FakeCUDAShared
        original = shared.array
        keyed = "_allocations" in shared.__init__.__code__.co_names
        swap = kernel.swapped_cuda_module
    except (ImportError, AttributeError):
        return False
    if not getattr(original, "thread_safe", False):
        if not keyed:
            return False
        shared.array = _locked_shared_array(original, types, as_dtype)
    if not getattr(swap, "thread_safe", False):
        kernel.swapped_cuda_module = _counted_swapped_cuda_module()
    return True


def device_rule(rule):
    """A shared scalar rule (``kernels.rules``) as the CUDA kernels call it.

    On a GPU that is the rule itself: numba.cuda compiles a ``@jit`` function called from a kernel
    as a device function. The simulator runs kernels as Python, where arrays are its own device
    array objects, which the compiled CPU rule cannot take: there the rule is called with the
    NumPy arrays behind them (the same memory), so the same rule code runs in both modes.
    """
    if not numba.config.ENABLE_CUDASIM:
        return rule

    def simulated(*args):
        return rule(*[np.asarray(a) if _is_simulated_array(a) else a for a in args])

    simulated.__name__ = simulated.__qualname__ = getattr(rule, "__name__", "rule")
    simulated.__doc__ = rule.__doc__
    return simulated


def _is_simulated_array(value):
    module = sys.modules.get("numba.cuda.simulator.cudadrv.devicearray")
    return module is not None and isinstance(value, (module.FakeCUDAArray,
                                                     module.FakeWithinKernelCUDAArray))
