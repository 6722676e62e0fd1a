"""Python's cyclic garbage collector paused over a stretch of start-up work.

Importing Numba and loading cached kernels makes hundreds of thousands of long-lived objects, and
each full collection on the way walks all of them again: some 130 ms of a warm start to the
first epoch (two full and some twenty middle-generation collections, ~0.95 s in all). Objects
made meanwhile are collected as usual after the collector is back.
"""

import contextlib
import gc


@contextlib.contextmanager
def collector_paused():
    """Run the block with the collector off when it is on, and turn it back on after (also when
    the block raises). A collector the user turned off is left off; nested blocks change
    nothing."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
