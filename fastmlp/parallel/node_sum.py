"""The step's sum over the ranks, through memory the ranks of one machine share.

On one machine MPICH's ``Allreduce`` of a 784-512-512-10 gradient (670k float32, 2.7 MB) took
0.3–1.7 ms on this project's 2-core machine, and the same sum through an MPI-3 shared-memory
window 0.11–0.15 ms (``python scripts/bench_mpi.py``, whose second table gives both). So when
every rank of the communicator is on one machine, :class:`NodeSum` gives each rank a segment of
one shared window:

    segment of rank s:  [ scalars: SCALARS float64 | pack: n values of the model's dtype ]

A step writes its own segment (the kernel writes its gradient straight into ``pack``), then
:meth:`NodeSum.sum`:

1. barrier: every segment holds its rank's values;
2. rank r adds slice r of the packs, pack_0 + pack_1 + … + pack_{R-1} in that order (slice r is
   [n·r/R, n·(r+1)/R)), and writes the total into slice r of *every* segment; each rank adds up
   the scalars of every segment in the same order into a private array;
3. barrier: every segment holds the whole total.

Each slice is added up by one rank only, so every rank ends with bitwise the same total, and for
two ranks it is the a + b an ``Allreduce`` gives. Nothing but step 2 touches another rank's
segment, so a rank may write its next step's values as soon as :meth:`sum` returns. The
barriers wait at most the communicator's timeout (:class:`DistributedTimeoutError`).
"""

from __future__ import annotations

import os

import numpy as np

SCALARS = 8
_ALIGN = 4096  # each segment starts on a page, so every pack starts on a cache line (64 bytes in)
# MPICH maps shared windows from files in /dev/shm (a tmpfs, 64 MB by default in a Docker
# container); a window is only made while it takes at most this fraction of the free space there
SHARED_MEMORY_SHARE = 0.5
_SHARED_MEMORY = "/dev/shm"

# free windows of COMM_WORLD, by (values, dtype): every rank runs the same fits, so every rank's
# pool holds the same windows and a fit takes the same one on every rank
_POOL = {}


def _segment_bytes(n, dtype):
    size = SCALARS * 8 + n * np.dtype(dtype).itemsize
    return -(-size // _ALIGN) * _ALIGN


def _shared_memory_free():
    """Bytes free in /dev/shm (None where there is no such folder, or no statvfs: Windows)."""
    try:
        stat = os.statvfs(_SHARED_MEMORY)
    except (OSError, AttributeError):
        return None
    return stat.f_bavail * stat.f_frsize


def acquire(communicator, n, dtype):
    """A :class:`NodeSum` of ``communicator`` for ``n`` values of ``dtype``: a free window of the
    pool (COMM_WORLD only) or a new one; None (sum with ``Allreduce`` instead) unless every rank
    is on one machine and, on every rank, the new window would take at most
    ``SHARED_MEMORY_SHARE`` of the free shared memory. Collective; give it back with
    :func:`release`."""
    if communicator.size == 1 or communicator.node_size != communicator.size:
        return None
    key = (int(n), np.dtype(dtype).str)
    world = communicator.comm == communicator.MPI.COMM_WORLD
    if world and _POOL.get(key):
        return _POOL[key].pop()
    free = _shared_memory_free()
    needed = communicator.size * _segment_bytes(n, dtype)
    fits = free is None or needed <= SHARED_MEMORY_SHARE * free
    no_room = communicator.allreduce_max(np.array([0 if fits else 1], dtype=np.int64),
                                         "the check of the shared memory")
    if no_room[0]:
        return None
    node_sum = NodeSum(communicator, n, dtype)
    node_sum.pooled = world
    return node_sum


def release(node_sum):
    """Give back a window :func:`acquire` returned (None does nothing)."""
    if node_sum is not None and node_sum.pooled:
        _POOL.setdefault((node_sum.n, node_sum.dtype.str), []).append(node_sum)


class NodeSum:
    """A shared window of one segment per rank of ``communicator`` (a
    :class:`fastmlp.parallel.mpi.Communicator` whose ranks all share one machine): ``pack`` (n
    values of ``dtype``) and ``scalars`` (``SCALARS`` float64) are this rank's segment.

    Creating it is collective and blocking: every rank must create it at the same point. The
    window is never freed (NumPy arrays and kernel workspaces may still view its memory); it lasts
    until the process ends, and :func:`acquire` hands a window of COMM_WORLD that a fit gave back
    to the next fit of the same size.
    """

    def __init__(self, communicator, n, dtype):
        MPI = communicator.MPI
        self.communicator = communicator
        self.n, self.dtype = int(n), np.dtype(dtype)
        self._window = MPI.Win.Allocate_shared(_segment_bytes(n, dtype), 1,
                                               comm=communicator.comm)
        self._window.Lock_all(MPI.MODE_NOCHECK)
        self._scalars, self._packs = [], []
        for s in range(communicator.size):
            memory, _ = self._window.Shared_query(s)
            self._scalars.append(np.frombuffer(memory, dtype=np.float64, count=SCALARS))
            self._packs.append(np.frombuffer(memory, dtype=self.dtype, count=self.n,
                                             offset=SCALARS * 8))
        rank, size = communicator.rank, communicator.size
        self._lo, self._hi = self.n * rank // size, self.n * (rank + 1) // size
        self._total = np.empty(self._hi - self._lo, dtype=self.dtype)
        self.pack = self._packs[rank]
        self.scalars = self._scalars[rank]
        self.pooled = False

    def _barrier(self, what):
        self._window.Sync()
        self.communicator.barrier(what)
        self._window.Sync()

    def sum(self, what):
        """Every rank's ``pack`` becomes the sum of all ranks' packs (steps in the module
        docstring); returns the sum of all ranks' ``scalars`` (a new array)."""
        self._barrier(what)
        lo, hi, total = self._lo, self._hi, self._total
        packs = self._packs
        np.copyto(total, packs[0][lo:hi])
        for pack in packs[1:]:
            np.add(total, pack[lo:hi], out=total)
        for pack in packs:
            pack[lo:hi] = total
        scalars = self._scalars[0].copy()
        for other in self._scalars[1:]:
            scalars += other
        self._barrier(what)
        return scalars
