"""``fastmlp.mpi`` is the import path of :mod:`fastmlp.parallel.mpi` (data-parallel training over
MPI), kept so that ``from fastmlp.mpi import DistributedTrainer`` works."""

from .parallel.mpi import (  # noqa: F401
    Communicator,
    DistributedError,
    DistributedTimeoutError,
    DistributedTrainer,
    default_threads,
    find_mpiexec,
    local_size,
)
