"""``fastmlp.distributed`` is the import path of :mod:`fastmlp.parallel.dask` (many fits on a
Dask cluster), kept so that ``from fastmlp.distributed import dask_client`` works."""

from .parallel.dask import PinThreads, dask_client  # noqa: F401
