"""Python's cyclic garbage collector paused over a stretch of start-up work.

Importing Numba, importing the kernel modules and loading cached kernels make hundreds of
thousands of long-lived objects, and each collection on the way walks them again: two full and
some twenty middle-generation collections, about 0.1 s of a 0.9 s warm start to the end of the
first epoch. :func:`collector_paused` turns the collector off over such a block; at its end every
young object (those made meanwhile, and any the process had made before and not yet collected)
goes straight to the oldest generation (``gc.freeze()`` then ``gc.unfreeze()``, which moves them
without a walk), so no young collection walks them either. They are collected as usual from
there: the unreachable ones at the next full collection. So the pause is kept to work a process
does once: fastmlp's import, an engine module's first import, a cached kernel's load.
"""

import contextlib
import gc


@contextlib.contextmanager
def collector_paused():
    """Run the block with the collector off when it is on, then move the young objects to the
    oldest generation and turn the collector back on (also when the block raises). A collector
    the user turned off is left alone, and so are objects the user froze (no move then); nested
    blocks change nothing."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()
