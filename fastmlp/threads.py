"""How fastmlp shares the CPU cores.

Policy: one owner of the cores at a time. fastmlp's kernels run their own Numba threads and cut
every phase of a step — each matrix product with its fused elementwise work, the loss, the
optimizer sweep — into one block per thread; each thread calls the BLAS on its block while the
BLAS itself runs single-threaded (:mod:`fastmlp.engines.blas_threads`). Two pools running side by side
made a step 9–80× slower on a 2-core machine.

:func:`kernel_parts` cuts each phase of a call into parts by its work (1 for small work, else one
per usable core: the results depend on this only); :func:`team_members` chooses how many threads
run those parts now: Numba's thread count, at most the cores this process may run on (its CPU
affinity) that other processes leave idle, and 1 when the BLAS cannot be made single-threaded.

``set_num_threads(n)`` sets both pools to n threads: Numba's (``numba.set_num_threads``), which
caps the kernels, and every BLAS library loaded in the process (through threadpoolctl, which ships
with scikit-learn and is in the ``threads`` extra), which NumPy uses outside the kernels.
``num_threads(n)`` does the same for the duration of a ``with`` block.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings

import numba

from ._validation import check_int
from .engines.blas_threads import blas_controlled

# Work (multiply-adds of one call's matrix products) below which a call runs on one thread;
# measured on a 2-core AMD EPYC: a 40-100-100-10 step on 100 rows (about 1.5 M) still gains.
MIN_PARALLEL_MACS = 1 << 19
MAX_PARTS = 16


def usable_cores():
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def kernel_parts(macs):
    """How many parts the phases of a kernel call whose matrix products do ``macs`` multiply-adds
    are cut into: 1 for small work, else the usable cores (at most MAX_PARTS). It depends on the
    work and the machine only, never on the load or the thread setting, so a run's results do
    not change with them."""
    if macs < MIN_PARALLEL_MACS:
        return 1
    return min(MAX_PARTS, usable_cores())


_kernel_threads = {"cap": None}  # set by set_num_threads / num_threads; None: NUMBA_NUM_THREADS


def _numba_threads():
    """The kernels' thread cap: the last ``set_num_threads``, else Numba's configured count
    (read without starting Numba's own thread pool)."""
    cap = _kernel_threads["cap"]
    return numba.config.NUMBA_NUM_THREADS if cap is None else cap


def team_members(parts):
    """Threads to run ``parts`` parts with now: at most Numba's thread count (``set_num_threads``)
    and the usable cores that other processes leave idle (:func:`busy_cores`); 1 when the BLAS
    cannot be made single-threaded."""
    if parts == 1:
        return 1
    members = min(parts, _numba_threads(), usable_cores())
    if members > 1 and not blas_controlled():
        return 1
    if members > 1:
        members = max(1, min(members, usable_cores() - busy_cores()))
    return members


# Load sampling: (wall time, busy jiffies of the whole machine, this process's CPU seconds) of the
# last sample and the estimate made from it.
_LOAD_INTERVAL_S = 0.25
_load = {"sample": None, "busy": 0}


def _machine_sample():
    """(monotonic time, busy jiffies of all CPUs, this process's CPU seconds), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    values = [int(v) for v in fields[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    times = os.times()
    return time.monotonic(), sum(values) - idle, times.user + times.system


def busy_cores():
    """Cores kept busy by other processes: from /proc/stat over the last ≥ 0.25 s (the first
    call looks at the run queue in /proc/loadavg instead), rounded to the nearest core; 0 where
    the OS does not tell. A team of threads next to CPU-bound neighbours spends its time waiting
    for its slowest member, so the kernels use the cores left idle."""
    last = _load["sample"]
    if last is not None and time.monotonic() - last[0] < _LOAD_INTERVAL_S:
        return _load["busy"]
    sample = _machine_sample()
    if sample is None:
        return 0
    if last is None:
        try:
            with open("/proc/loadavg", encoding="ascii") as fh:
                running = int(fh.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            running = 1
        _load["busy"] = max(0, running - 1)
    else:
        elapsed = sample[0] - last[0]
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        machine = (sample[1] - last[1]) / hz / elapsed
        own = (sample[2] - last[2]) / elapsed
        _load["busy"] = max(0, int(machine - own + 0.25))
    _load["sample"] = sample
    return _load["busy"]


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
    _kernel_threads["cap"] = numba_threads
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
