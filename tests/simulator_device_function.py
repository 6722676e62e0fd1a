"""A device function in a module of its own, for the CUDA simulator's module-swap test
(imported only in simulator mode): the simulator swaps this module's ``cuda`` global for the
launch's fake module while a thread runs the function."""

import time

from numba import cuda


@cuda.jit(device=True)
def thread_index_after(delay):
    """cuda.threadIdx.x, read after ``delay`` seconds (a sleep: simulator-only Python)."""
    time.sleep(delay)
    return cuda.threadIdx.x
