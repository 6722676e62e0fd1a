"""How fastmlp shares the CPU cores between BLAS and Numba.

Policy: the matrix products (``np.dot`` inside the kernels, i.e. SciPy's OpenBLAS, and NumPy's
own BLAS) own the cores; the fused elementwise passes around them are serial ``@njit`` loops.
Nothing runs a Numba parallel region next to a BLAS call, so the two thread pools never compete —
mixing them naively made a training step 9–80× slower on a 2-core machine.

``set_num_threads(n)`` sets both pools to n threads: Numba's (``numba.set_num_threads``) and every
BLAS library loaded in the process (through threadpoolctl, which ships with scikit-learn and is in
the ``threads`` extra). ``num_threads(n)`` does the same for the duration of a ``with`` block.
"""

from __future__ import annotations

import contextlib
import warnings

import numba

from ._validation import check_int


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
