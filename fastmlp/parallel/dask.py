"""Running many independent fits on a Dask cluster.

fastmlp does not ship a scheduler of its own: :class:`fastmlp.Bagging` (``n_jobs != 1``) and the
scikit-learn estimators inside ``GridSearchCV``/``cross_val_score`` parallelize through joblib, and
joblib hands the work to a ``dask.distributed`` cluster when asked to::

    import joblib
    import fastmlp as fm
    from fastmlp.parallel.dask import dask_client

    with dask_client(n_workers=2) as client, joblib.parallel_config(backend="dask"):
        bag = fm.Bagging(template, n_estimators=8, n_jobs=-1, seed=0).fit(X, y)

The same seeds give the same models (bitwise) as ``n_jobs=1`` run with the workers' BLAS thread
count (``with fm.num_threads(1): ...`` for pinned workers): a multithreaded BLAS may split a large
matrix product differently and so round differently, and over many steps such differences grow.
Note that joblib runs the work sequentially in the calling process when the cluster has a single
worker thread in all.

Oversubscription. A worker process that runs ``t`` tasks at once must not also let each of them
use every core for BLAS or Numba. :class:`PinThreads` (a Dask worker plugin) and
:func:`pin_worker_threads` (a ``client.run`` callback) set, inside each worker process, the BLAS
thread count (process-wide, through threadpoolctl) and Numba's thread count in every task thread
of the worker (Numba's count is per thread). :func:`dask_client` starts a local cluster with the
plugin registered and the usual environment variables (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS``) set for the worker
processes; on a cluster of your own, start the workers with those variables and/or call
``client.register_plugin(PinThreads(1))``.

Needs ``dask[distributed]`` (``pip install "fastmlp[dask]"``); this module imports it lazily.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading

from .._validation import check_int
from ..threads import get_num_threads, set_num_threads

__all__ = ["PinThreads", "pin_worker_threads", "worker_thread_counts", "thread_environment",
           "dask_client"]

_ENV_NAMES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def _require_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError('this needs dask.distributed: pip install "fastmlp[dask]"') from None
    return distributed


def thread_environment(n=1):
    """Environment variables that start a worker process with ``n`` BLAS/OpenMP/Numba threads."""
    n = check_int(n, "n", minimum=1)
    return {name: str(n) for name in _ENV_NAMES}


def _pin_this_thread(n, barrier):
    set_num_threads(n)
    if barrier is not None:
        # Hold this executor thread until every other one has taken a pinning call, so that each
        # thread of the pool runs exactly one.
        barrier.wait()
    return threading.get_ident()


def _start_pinning(worker, n, timeout):
    """Pin BLAS (process-wide) and Numba (calling thread) to ``n`` now, and submit one pinning
    call to each task thread of ``worker`` (if any); returns those calls' futures."""
    n = check_int(n, "n", minimum=1)
    set_num_threads(n)  # BLAS for the whole process; Numba for the calling thread
    os.environ.update(thread_environment(n))  # processes the worker's tasks may start
    if worker is None:
        return []
    executor = worker.executors.get("default")
    nthreads = int(getattr(getattr(worker, "state", worker), "nthreads", 1))
    if executor is None or nthreads < 1:
        return []
    barrier = threading.Barrier(nthreads, timeout=timeout) if nthreads > 1 else None
    return [executor.submit(_pin_this_thread, n, barrier) for _ in range(nthreads)]


def _timeout_error(count, timeout):
    return TimeoutError(f"pinning the worker's {count} task threads took over {timeout} s "
                        "(are they busy?)")


def pin_worker_threads(n=1, dask_worker=None, timeout=30.0):
    """Pin this worker process to ``n`` BLAS threads and ``n`` Numba threads per task thread.

    Meant for ``client.run(pin_worker_threads, 1)``: Dask then passes the worker as
    ``dask_worker``, and every thread of its default task executor is pinned as well as the
    calling thread. Run it while the workers are idle (each task thread must take one short call).
    Outside a worker (``dask_worker=None``) it pins the calling thread and BLAS only.

    Returns the number of task threads pinned.
    """
    futures = _start_pinning(dask_worker, n, timeout)
    done, not_done = concurrent.futures.wait(futures, timeout=timeout)
    if not_done:
        raise _timeout_error(len(futures), timeout)
    return len({future.result() for future in done})


def worker_thread_counts():
    """``fm.get_num_threads()`` as seen by the calling thread; submit it as a task
    (``client.submit(worker_thread_counts, pure=False)``) to see what a task thread uses, or
    ``client.run`` it to see the worker's own thread."""
    return get_num_threads()


def _worker_plugin_base():
    try:
        from distributed.diagnostics.plugin import WorkerPlugin
    except ImportError:
        return object
    return WorkerPlugin


class PinThreads(_worker_plugin_base()):
    """Dask worker plugin: on every worker, now and when it (re)starts, pin BLAS and Numba.

    ``client.register_plugin(PinThreads(1))``. See :func:`pin_worker_threads`. Task threads that
    a worker starts later (after a task secedes from its thread) keep Numba's default count;
    starting the workers with :func:`thread_environment` covers those as well.

    Parameters
    ----------
    n : int, default 1
        Threads for BLAS (per worker process) and for Numba (per task thread).
    timeout : float, default 30
        Seconds to wait for the worker's task threads to take the pinning call.
    """

    name = "fastmlp-pin-threads"

    def __init__(self, n=1, timeout=30.0):
        self.n = check_int(n, "n", minimum=1)
        self.timeout = float(timeout)

    async def setup(self, worker):
        futures = _start_pinning(worker, self.n, self.timeout)
        if futures:
            try:
                await asyncio.wait_for(asyncio.gather(*map(asyncio.wrap_future, futures)),
                                       self.timeout)
            except asyncio.TimeoutError:
                raise _timeout_error(len(futures), self.timeout) from None


def dask_client(n_workers=2, threads_per_worker=1, pin=1, **cluster_kwargs):
    """A ``distributed.Client`` on a new local cluster of worker processes, threads pinned.

    Starts ``LocalCluster(n_workers, threads_per_worker, processes=True, dashboard_address=None)``
    (keyword arguments override or add to these), whose worker processes start with
    :func:`thread_environment` ``(pin)``, and registers :class:`PinThreads` ``(pin)``. Closing the
    client (``with dask_client() as client: ...`` or ``client.close()``) also closes the cluster.

    Parameters
    ----------
    n_workers : int, default 2
        Worker processes.
    threads_per_worker : int, default 1
        Tasks each worker runs at once.
    pin : int, default 1
        BLAS threads per worker process and Numba threads per task thread.
    """
    distributed = _require_distributed()
    n_workers = check_int(n_workers, "n_workers", minimum=1)
    threads_per_worker = check_int(threads_per_worker, "threads_per_worker", minimum=1)
    pin = check_int(pin, "pin", minimum=1)
    options = dict(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                   dashboard_address=None)
    options.update(cluster_kwargs)
    env = dict(thread_environment(pin))
    env.update(options.pop("env", None) or {})
    cluster = distributed.LocalCluster(env=env, **options)
    try:
        client = distributed.Client(cluster, set_as_default=True)
    except BaseException:
        cluster.close()
        raise
    # The client owns the cluster: closing the client closes the cluster as well.
    _close = client.close

    def close(*args, **kwargs):
        try:
            return _close(*args, **kwargs)
        finally:
            cluster.close()

    client.close = close
    try:
        client.register_plugin(PinThreads(pin))
    except BaseException:
        client.close()
        raise
    return client
