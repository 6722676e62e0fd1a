"""Synchronous data-parallel training over MPI (mpi4py), after the Horovod recipe.

Every rank runs the same program on the same data (``mpiexec -n R python train.py``)::

    import fastmlp as fm
    from fastmlp.parallel.mpi import DistributedTrainer

    model = fm.MLP(784, [fm.Dense(512, "relu"), fm.Dense(10)], seed=0)
    trainer = DistributedTrainer(model, fm.Adam(1e-3), batch_size=256, epochs=10)
    trainer.fit(X, y, validation_data=(X_val, y_val))
    if trainer.is_root:
        model.save("model.npz")

How a step works:

- Before the first epoch rank 0 broadcasts the parameters, the batchnorm statistics, the optimizer
  state, the dropout step, the epoch count and the shuffling generator, so every rank starts from
  rank 0's state; each epoch rank 0 broadcasts its row order.
- Global batch k (rows ``order[bounds[k]:bounds[k+1]]``, the batches a 1-rank run would use) is
  split into ``R`` contiguous parts; rank r computes the mean-loss gradient g_r of its m_r rows.
- One sum over the ranks per step adds up (m_r/B)·g_r, which is the gradient of the global
  batch's mean loss; the ranks then apply the same clipping and optimizer update to the same
  numbers, so the parameters stay identical on every rank without further communication. When
  every rank is on one machine the sum goes through shared memory (:mod:`.node_sum`, 2–15×
  faster than MPICH's ``Allreduce`` of a 2.7 MB gradient there), else it is an ``Allreduce``.

Batch normalization, ``batchnorm=``:

- ``"local"`` (default, as Horovod and ``torch.nn.parallel.DistributedDataParallel`` without
  SyncBatchNorm): each rank normalizes its part of the batch with that part's statistics, inside
  the same compiled whole-network step as a 1-rank run; the running statistics are averaged over
  the ranks in the gradient ``Allreduce``, so every rank holds the same model. The result differs
  from a 1-rank run (the statistics come from smaller batches).
- ``"sync"`` (as ``torch.nn.SyncBatchNorm``): the batch statistics and the two sums of the
  batchnorm backward pass are summed over the ranks (three small ``Allreduce`` calls per batchnorm
  layer and step), so a step equals the 1-rank step over the whole global batch up to rounding.
  The network then runs layer by layer from Python (see :mod:`fastmlp.parallel.sync_batchnorm`).

Without dropout, a distributed run equals the 1-rank run up to rounding (with batchnorm: in
``"sync"`` mode). Dropout masks are drawn per rank (rank 0 uses the model's seed, rank r a seed
derived from it and r), so the ranks do not repeat each other's masks.

Only rank 0 writes: ``save_checkpoint`` does nothing on other ranks, the progress bar and the
warnings appear on rank 0 only. Each rank evaluates its share of the validation rows, and every
rank adds up all ranks' sums in rank order, so the metrics that drive early stopping, schedules
and callbacks are the same on every rank and every rank takes the same decisions. ``fit`` and
``evaluate`` are collective: call them on every rank.

Failures end the job instead of hanging it:

- Every collective waits at most ``timeout`` seconds and then raises
  :class:`DistributedTimeoutError` (a rank that crashed, stalled or never called ``fit``).
- Errors in the inputs are agreed on before training: a rank whose data or arguments are invalid
  raises its own ValueError/TypeError and the others raise :class:`DistributedError` naming it.
- Any other exception during training on one rank (``abort_on_error=True``, the default with more
  than one rank) prints ``rank r: <error>`` to stderr and calls ``MPI_Abort``, which ends every
  rank of the job with a non-zero exit status.

Needs mpi4py and an MPI library (``pip install "fastmlp[mpi]"`` brings mpi4py and the MPICH
wheel); this module imports them lazily.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import time
import traceback
import warnings

import numpy as np

from .._validation import check_real
from ..engines.outcomes import EpochResult
from ..kernels.cpu.network import network_penalty
from ..threads import team_members, usable_cores
from ..trainer import Trainer
from . import node_sum
from .sync_batchnorm import sync_batchnorm_gradient

__all__ = ["DistributedTrainer", "Communicator", "DistributedError", "DistributedTimeoutError",
           "local_size", "default_threads", "find_mpiexec"]

# Seconds between printing the reason for an abort and MPI_Abort: the launcher forwards a rank's
# output through pipes, and the abort kills the rank (and may end the forwarding) at once.
ABORT_GRACE_SECONDS = 1.0
# How long a collective polls without sleeping before it backs off to sleeps of up to 1 ms: long
# enough to cover the imbalance between ranks of one step when each rank has a core of its own
# (a sleep there delays the step's Allreduce by up to a millisecond, and MPICH only progresses it
# while a rank polls), short when ranks share cores (a spinning rank takes cycles from a working
# one).
SPIN_SECONDS_OWN_CORES = 0.05
SPIN_SECONDS_SHARED_CORES = 1e-3
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


class DistributedError(RuntimeError):
    """Another rank failed, or the ranks disagree (data, arguments)."""


class DistributedTimeoutError(DistributedError):
    """A collective operation did not complete within the timeout."""


def _require_mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError('distributed training needs mpi4py and an MPI library: '
                          'pip install "fastmlp[mpi]"') from None
    return MPI


class Communicator:
    """An MPI communicator whose collectives give up after ``timeout`` seconds.

    Each collective is started non-blocking and polled: without pause for the first 50 ms when
    the ranks on this machine have a core each (1 ms when they share cores), then sleeping up to
    1 ms between polls; when ``timeout`` passes it raises :class:`DistributedTimeoutError` naming
    the operation.
    """

    def __init__(self, comm=None, timeout=300.0):
        MPI = _require_mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        if not isinstance(self.comm, MPI.Comm):
            raise TypeError(f"comm must be an mpi4py communicator; got {type(comm).__name__}")
        self.timeout = check_real(timeout, "timeout", minimum=0.0)
        if self.timeout == 0.0:
            raise ValueError("timeout must be > 0 seconds")
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.node_size = local_size(self.comm)
        self.spin_seconds = (SPIN_SECONDS_OWN_CORES if self.node_size <= usable_cores()
                             else SPIN_SECONDS_SHARED_CORES)

    def _wait(self, request, what):
        began = time.monotonic()
        deadline = began + self.timeout
        pause = 0.0
        while not request.Test():
            now = time.monotonic()
            if now > deadline:
                raise DistributedTimeoutError(
                    f"rank {self.rank}: {what} did not complete within {self.timeout:g} s; another "
                    f"rank failed, stalled or is not taking part")
            if now - began > self.spin_seconds:
                pause = min(max(pause * 2.0, 1e-5), 1e-3)
                time.sleep(pause)

    def allreduce_sum(self, array, what):
        """Sum ``array`` (contiguous) over the ranks, in place."""
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM), what)
        return array

    def allreduce_max(self, array, what):
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, array, op=self.MPI.MAX), what)
        return array

    def allgather(self, values, what):
        """(size, len(values)) float64: row r holds rank r's ``values``."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        gathered = np.empty((self.size, values.size), dtype=np.float64)
        self._wait(self.comm.Iallgather(values, gathered), what)
        return gathered

    def barrier(self, what):
        """Wait until every rank has reached this barrier."""
        self._wait(self.comm.Ibarrier(), what)

    def bcast_array(self, array, what, root=0):
        """Overwrite ``array`` (contiguous) on every rank with root's."""
        self._wait(self.comm.Ibcast(array, root=root), what)
        return array

    def bcast_object(self, obj, what, root=0):
        """Root's ``obj`` (picklable) on every rank."""
        payload = pickle.dumps(obj) if self.rank == root else b""
        length = self.bcast_array(np.array([len(payload)], dtype=np.int64), what, root)
        data = np.frombuffer(payload, dtype=np.uint8).copy() if self.rank == root else \
            np.empty(int(length[0]), dtype=np.uint8)
        self.bcast_array(data, what, root)
        return obj if self.rank == root else pickle.loads(data.tobytes())

    def agree(self, error, what):
        """Collective check that no rank met an error in ``what``: re-raises ``error`` on the rank
        that has it and raises :class:`DistributedError` naming the first failed rank on the
        others."""
        failed = np.array([self.rank + 1 if error is not None else 0], dtype=np.int64)
        self.allreduce_max(failed, what)
        if error is not None:
            raise error
        if failed[0]:
            raise DistributedError(f"rank {int(failed[0]) - 1} stopped with an error in {what} "
                                   f"(see that rank's output)")

    def abort(self, code=1):
        self.comm.Abort(code)


def local_size(comm=None):
    """Ranks of ``comm`` (default COMM_WORLD) on this machine, to share its cores among them."""
    MPI = _require_mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_size()
    finally:
        node.Free()


def _rank_seed(seed, rank):
    """The dropout seed of ``rank``: the model's seed on rank 0, a distinct 63-bit value else."""
    if rank == 0:
        return seed
    return ((seed + _GOLDEN * rank) & _MASK64) >> 1


class DistributedTrainer(Trainer):
    """:class:`fastmlp.Trainer` over MPI ranks; see the module docstring.

    Parameters
    ----------
    model, optimizer, **options
        As for :class:`fastmlp.Trainer` (``batch_size`` is the global batch, split over the ranks).
        CPU models only.
    comm : mpi4py communicator or :class:`Communicator`, default ``MPI.COMM_WORLD``
    timeout : float, default 300
        Seconds any collective may wait for the other ranks before raising
        :class:`DistributedTimeoutError` (allow for the first run's kernel compilation).
    batchnorm : {"local", "sync"}, default "local"
        Batch statistics of each rank's rows, or of the global batch (see the module docstring).
    abort_on_error : bool, default True
        Call ``MPI_Abort`` when training fails on one rank with more than one rank, so that the
        job ends instead of waiting for that rank.

    Each global batch needs at least one row per rank (two with batchnorm); a last batch that is
    smaller joins the previous batch. ``DistributedTrainer.load_checkpoint(path, comm=...,
    timeout=..., batchnorm=...)`` reads a checkpoint on every rank (a shared file system or a copy
    on each machine); the state then follows rank 0's at the next ``fit``.
    """

    def __init__(self, model, optimizer=None, *, comm=None, timeout=300.0, batchnorm="local",
                 abort_on_error=True, **options):
        if batchnorm not in ("local", "sync"):
            raise ValueError(f"batchnorm must be 'local' or 'sync'; got {batchnorm!r}")
        self.batchnorm = batchnorm
        self.comm = comm if isinstance(comm, Communicator) else Communicator(comm, timeout)
        self.rank, self.size = self.comm.rank, self.comm.size
        if self.rank != 0:
            options["progress"] = False
        super().__init__(model, optimizer, **options)
        if model.device != "cpu":
            raise ValueError(f"DistributedTrainer trains CPU models; got a model on "
                             f"device={model.device!r}")
        self.abort_on_error = bool(abort_on_error)
        self._agreed = False
        self.engine = MpiEngine(model.engine, self.comm, batchnorm)

    @property
    def is_root(self):
        """True on rank 0, the rank that writes files and logs."""
        return self.rank == 0

    # ----------------------------------------------------------------- fit
    def fit(self, X, y, validation_data=None, validation_split=None):
        """Collective :meth:`Trainer.fit`; every rank must call it with the same data."""
        self._agreed = False
        try:
            with warnings.catch_warnings():
                if not self.is_root:
                    warnings.simplefilter("ignore")
                return super().fit(X, y, validation_data=validation_data,
                                   validation_split=validation_split)
        except (ValueError, TypeError) as exc:
            if not self._agreed:
                # an input error before training: tell the other ranks, then raise it here
                self.comm.agree(exc, "the checks before training")
            self._abort_if_needed(exc)
            raise
        except BaseException as exc:
            self._abort_if_needed(exc)
            raise

    def _abort_if_needed(self, exc):
        if self.abort_on_error and self.size > 1 and self._agreed:
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            print(f"fastmlp: rank {self.rank}: {detail}; aborting the MPI job", file=sys.stderr,
                  flush=True)
            time.sleep(ABORT_GRACE_SECONDS)
            self.comm.abort(1)

    def _fit_plan(self, validation_split, ranks=1):
        # every rank needs its own rows of each batch
        return super()._fit_plan(validation_split, ranks=self.size)

    def _before_training(self):
        # the engine's begin_fit agreed that every rank's checks passed on the same data
        self._agreed = True  # from here on, a failure on one rank aborts the job
        self._broadcast_state()
        self.engine.host_changed()  # other ranks loaded rank 0's parameters and optimizer state

    def _broadcast_state(self):
        model = self.model
        engine = model.engine
        self.comm.bcast_array(engine.params, "the broadcast of the parameters")
        if engine.buffers.size:
            self.comm.bcast_array(engine.buffers, "the broadcast of the batchnorm statistics")
        state = self.comm.bcast_object(
            (self.optimizer.state_dict(), model.dropout_step, self.epoch,
             self.shuffle_state), "the broadcast of the training state")
        if not self.is_root:
            opt_state, model.dropout_step, self.epoch, rng_state = state
            self.optimizer.load_state_dict(opt_state)
            self.shuffle_state = rng_state

    def _callbacks_stop(self, requested):
        decision = np.array([1 if requested else 0], dtype=np.int64)
        return bool(self.comm.bcast_array(decision, "the callbacks' stop decision")[0])

    # ----------------------------------------------------------------- evaluation and files
    def _evaluation_metrics(self, placed=None):
        """Loss (+ penalty) and accuracy over placed data (None: the fit's validation data):
        each rank evaluates its share of the rows (:meth:`MpiEngine.evaluate_share`), and every
        rank adds up every rank's sums in rank order, so all ranks get the same metrics."""
        if self.size == 1:
            return super()._evaluation_metrics(placed)
        engine = self.engine
        placed = engine.fit_data.validation if placed is None else placed
        shares = self.comm.allgather(engine.evaluate_share(placed, self.model.is_classifier),
                                     "the evaluation's sums")
        loss = correct = counted = 0.0
        for share_loss, share_correct, share_counted in shares:
            loss += share_loss
            correct += share_correct
            counted += share_counted
        return self._metrics(loss / placed.rows + engine.penalty(self.l1, self.l2), correct,
                             counted)

    def save_checkpoint(self, path):
        """Rank 0 writes the checkpoint (see :meth:`Trainer.save_checkpoint`); others do nothing."""
        if self.is_root:
            super().save_checkpoint(path)


class MpiEngine:
    """The data-parallel strategy around one rank's CPU engine.

    Everything but an epoch goes to the CPU engine (``local``). An epoch broadcasts rank 0's row
    order; each step computes this rank's part of the global batch with the CPU kernel tasks
    (``local_gradient``), sums the rows-weighted gradients over the ranks, with the averaged
    running statistics and the loss and accuracy sums (through shared memory,
    :mod:`.node_sum`, when every rank is on this machine, else in one ``Allreduce``) and applies
    the same update on every rank (``apply_update``). Each rank's kernels use its share of the
    machine's cores (:func:`default_threads`).
    """

    def __init__(self, local, comm, batchnorm):
        self.local = local
        self.comm = comm
        self.batchnorm = batchnorm
        self.members = default_threads(comm)
        self._fit = None
        self._node_sum = None  # the fit's shared-memory sum (node_sum.acquire), or None
        self.shared_memory_sum = False  # whether the last fit summed through shared memory

    def __getattr__(self, name):
        # the CPU engine's methods (check_inputs, place, evaluate, forward, ...) serve unchanged
        return getattr(self.local, name)

    def begin_fit(self, X, y, validation_data, plan, optimizer):
        """The CPU engine's fit (its checks, data and state), agreed on by every rank (a
        :class:`DistributedError` when another rank's checks failed or its data differ), plus
        this rank's batch buffers and the packed gradient/statistics buffer of the Allreduce.
        Returns the ``FitShape``."""
        shape = self.local.begin_fit(X, y, validation_data, plan, optimizer)
        try:
            self.comm.agree(None, "the checks before training")
            self._check_same_data(self.local.fit_data)
            self._fit = self._fit_buffers(self.local.fit_data)
        except BaseException:
            self.end_fit()
            raise
        return shape

    def _check_same_data(self, data):
        """DistributedError unless every rank has the same training data and batches (compared
        by shape and sums)."""
        X, labels, targets = data.train.X, data.train.labels, data.train.targets
        summary = np.array([X.shape[0], X.shape[1], data.bounds.shape[0],
                            float(np.sum(X, dtype=np.float64)),
                            float(np.sum(labels, dtype=np.float64)),
                            float(np.sum(targets, dtype=np.float64))], dtype=np.float64)
        extremes = self.comm.allreduce_max(np.concatenate([summary, -summary]),
                                           "the training-data check")  # max, then -min
        if not np.array_equal(extremes[:summary.size], -extremes[summary.size:]):
            raise DistributedError("the ranks were given different training data or batch sizes; "
                                   "every rank must pass the same X, y and options to fit")

    def _fit_buffers(self, data):
        local, size, placed = self.local, self.comm.size, data.train
        rows = int(np.diff(data.bounds).max() + size - 1) // size
        P, R = local.params.shape[0], local.buffers.shape[0]
        self._node_sum = node_sum.acquire(self.comm, P + R, local.dtype)
        self.shared_memory_sum = self._node_sum is not None
        if self._node_sum is not None:
            pack, scalars = self._node_sum.pack, self._node_sum.scalars[:3]
            pack[:] = 0.0
        else:
            pack, scalars = np.zeros(P + R, dtype=local.dtype), np.zeros(3)
        return {
            "batch": (np.empty((rows, placed.X.shape[1]), dtype=local.dtype),
                      np.empty(rows if placed.labels.size else 0, dtype=np.int64),
                      np.empty((rows if placed.targets.shape[0] else 0, placed.targets.shape[1]),
                               dtype=local.dtype)),
            "pack": pack, "grads": pack[:P], "stats": pack[P:], "scalars": scalars,
            "saved": np.empty_like(local.buffers), "works": {},
        }

    def end_fit(self):
        self.local.end_fit()
        self._fit = None
        node_sum.release(self._node_sum)
        self._node_sum = None

    def evaluate_share(self, placed, count):
        """(Σ data loss, correct, counted) in evaluation mode over this rank's contiguous share
        of the rows of placed data (zeros for an empty share)."""
        lo, hi = self._part(0, placed.rows)
        if hi == lo:
            return np.zeros(3)
        loss, correct, counted = self.local.evaluate(self.local.take_rows(placed, slice(lo, hi)),
                                                     count)
        return np.array([loss * (hi - lo), correct, counted])

    def _part(self, start, stop):
        """This rank's contiguous part [lo, hi) of the global batch [start, stop)."""
        rows, rank, size = stop - start, self.comm.rank, self.comm.size
        return start + rows * rank // size, start + rows * (rank + 1) // size

    def _work(self, rows):
        """The step Workspace for this rank's ``rows`` rows (cached per size)."""
        fit = self._fit
        work = fit["works"].get(rows)
        if work is None:
            work = fit["works"][rows] = self.local.step_workspace(rows, fit["batch"], fit["grads"])
        return work

    def run_epoch(self, order, first_step, l1, l2, clip_norm):
        """One data-parallel epoch; returns an ``EpochResult`` as the CPU engine does."""
        comm, local = self.comm, self.local
        bounds = local.fit_data.bounds
        self.comm.bcast_array(order, "the broadcast of the epoch's row order")
        steps = bounds.shape[0] - 1
        coefficients = local.fit_coefficients(steps)
        seed = _rank_seed(local.seed, comm.rank)
        sync = self.batchnorm == "sync" and comm.size > 1 and local.buffers.size > 0
        total = correct = counted = 0.0
        done = 0
        failure = None
        members = min(self.members, team_members(local.parts(int(np.diff(bounds).max()), True)))
        for k in range(steps):
            start, stop = int(bounds[k]), int(bounds[k + 1])
            lo, hi = self._part(start, stop)
            work = self._work(hi - lo)
            self._fit["saved"][...] = local.buffers
            step = self._sync_step if sync else self._local_step
            loss, c, m = step(order, lo, hi, stop - start, work, seed, first_step + k, l1, l2,
                              members)
            failure = local.apply_update(work, loss, coefficients[k:k + 1], clip_norm, members)
            if failure is not None:
                local.buffers[...] = self._fit["saved"]  # as after the last finite step
                break
            done += 1
            total += loss * (stop - start)
            correct += c
            counted += m
        return EpochResult(done, total, correct, counted, failure)

    def _local_step(self, order, lo, hi, global_rows, work, seed, step, l1, l2, members):
        """Rows order[lo:hi] of a global batch of ``global_rows`` rows through the compiled
        whole-network step (local batchnorm statistics); with several ranks, the rows-weighted
        gradients, the averaged running statistics and the loss/accuracy sums are added up over
        the ranks in place. Returns the global batch's (mean loss + penalty, correct, counted)."""
        comm, local, fit = self.comm, self.local, self._fit
        loss, correct, counted = local.local_gradient(order, lo, hi, step, l1, l2, seed, work,
                                                      members)
        if comm.size == 1:
            return loss, correct, counted
        np.multiply(fit["grads"], (hi - lo) / global_rows, out=fit["grads"])
        np.multiply(local.buffers, 1.0 / comm.size, out=fit["stats"])
        scalars = fit["scalars"]
        scalars[:] = (loss * (hi - lo), correct, counted)
        if self._node_sum is not None:
            scalars = self._node_sum.sum("the gradient sum")
        else:
            comm.allreduce_sum(fit["pack"], "the gradient Allreduce")
            comm.allreduce_sum(scalars, "the loss Allreduce")
        local.buffers[...] = fit["stats"]
        return float(scalars[0]) / global_rows, int(scalars[1]), int(scalars[2])

    def _sync_step(self, order, lo, hi, global_rows, work, seed, step, l1, l2, members):
        """:meth:`_local_step` with synchronized batchnorm statistics (``batchnorm="sync"``)."""
        comm, local, fit = self.comm, self.local, self._fit
        placed = local.fit_data.train
        lay = local.layout
        rows = order[lo:hi]
        m = rows.shape[0]
        Xb, lb, tb = fit["batch"]
        xb = np.take(placed.X, rows, axis=0, out=Xb[:m])
        labels = np.take(placed.labels, rows, out=lb[:m]) if placed.labels.size else placed.labels
        targets = (np.take(placed.targets, rows, axis=0, out=tb[:m]) if placed.targets.shape[0]
                   else placed.targets)
        scalars = fit["scalars"]
        scalars[:] = sync_batchnorm_gradient(
            comm, xb, labels, targets, placed.code, local.params, fit["grads"], local.buffers,
            lay.layer_int, lay.layer_float, work.ws_off, work.ws, seed, step, l1, l2, global_rows)
        comm.allreduce_sum(fit["grads"], "the gradient Allreduce")
        comm.allreduce_sum(scalars, "the loss Allreduce")
        loss = float(scalars[0]) / global_rows + float(
            network_penalty(local.params, lay.layer_int, l1, l2))
        return loss, int(scalars[1]), int(scalars[2])


def default_threads(comm=None):
    """Kernel threads per rank that share this machine's usable cores among its ranks;
    ``comm`` an mpi4py communicator (default COMM_WORLD) or a :class:`Communicator`, which
    knows its ranks on this machine already."""
    ranks = comm.node_size if isinstance(comm, Communicator) else local_size(comm)
    return max(1, usable_cores() // ranks)


def find_mpiexec():
    """Path of the ``mpiexec`` launcher, or None: first beside this Python interpreter (where the
    MPICH wheel of ``pip install "fastmlp[mpi]"`` puts it), then on PATH."""
    folders = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return shutil.which("mpiexec", path=folders)
