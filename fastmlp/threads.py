"""How fastmlp shares the CPU cores.

Policy: one owner of the cores at a time. fastmlp's kernels run their own Numba threads and cut
every phase of a step — each matrix product with its fused elementwise work, the loss, the
optimizer sweep — into one block per thread; each thread calls the BLAS on its block while the
BLAS itself runs single-threaded (:mod:`fastmlp._blas_threads`). Two pools running side by side
made a step 9–80× slower on a 2-core machine.

:func:`kernel_threads` chooses the count for a call from its work: Numba's thread count, at most
the cores this process may run on (its CPU affinity), and 1 for work too small to share (a
parallel region costs about 1.5 µs) or when the BLAS cannot be made single-threaded.

``set_num_threads(n)`` sets both pools to n threads: Numba's (``numba.set_num_threads``), which
caps the kernels, and every BLAS library loaded in the process (through threadpoolctl, which ships
with scikit-learn and is in the ``threads`` extra), which NumPy uses outside the kernels.
``num_threads(n)`` does the same for the duration of a ``with`` block.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import numba

from ._blas_threads import blas_controlled
from ._validation import check_int

# Work (multiply-adds of one call's matrix products) below which a call runs on one thread;
# measured on a 2-core AMD EPYC: a 40-100-100-10 step on 100 rows (about 1.5 M) still gains.
MIN_PARALLEL_MACS = 1 << 19


def usable_cores():
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def kernel_threads(macs):
    """Threads for one kernel call whose matrix products do ``macs`` multiply-adds."""
    if macs < MIN_PARALLEL_MACS:
        return 1
    threads = min(numba.get_num_threads(), usable_cores())
    if threads > 1 and not blas_controlled():
        return 1
    return threads


def _controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    import numpy  # noqa: F401  (make sure the BLAS libraries are loaded before looking)
    import scipy.linalg  # noqa: F401
    return ThreadpoolController()


def get_num_threads():
    """{"numba": n, "blas": n or None (threadpoolctl not installed)}."""
    controller = _controller()
    blas = None
    if controller is not None:
        counts = [info["num_threads"] for info in controller.info() if info["user_api"] == "blas"]
        blas = max(counts) if counts else None
    return {"numba": numba.get_num_threads(), "blas": blas}


def _apply(numba_threads, blas_threads):
    numba.set_num_threads(numba_threads)
    controller = _controller()
    if controller is None:
        if blas_threads is not None:
            warnings.warn("threadpoolctl is not installed, so the BLAS thread count is unchanged; "
                          'pip install "fastmlp[threads]"', RuntimeWarning, stacklevel=3)
        return
    if blas_threads is not None:
        controller.limit(limits=blas_threads, user_api="blas")


def set_num_threads(n):
    """Use ``n`` threads for Numba and for BLAS (1 ≤ n ≤ numba.config.NUMBA_NUM_THREADS)."""
    n = check_int(n, "n", minimum=1)
    top = numba.config.NUMBA_NUM_THREADS
    if n > top:
        raise ValueError(f"n must be <= {top} (the cores Numba was started with); got {n}")
    _apply(n, n)


@contextlib.contextmanager
def num_threads(n):
    """Context manager: ``with fm.num_threads(1): ...`` then restore the previous counts."""
    before = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        _apply(before["numba"], before["blas"])
