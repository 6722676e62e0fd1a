"""Synchronous data-parallel training over MPI (mpi4py), after the Horovod recipe.

Every rank runs the same program on the same data (``mpiexec -n R python train.py``)::

    import fastmlp as fm
    from fastmlp.mpi import DistributedTrainer

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
- One ``Allreduce`` per step sums (m_r/B)·g_r, which is the gradient of the global batch's mean
  loss; the ranks then apply the same clipping and optimizer update to the same numbers, so the
  parameters stay identical on every rank without further communication.

Batch normalization, ``batchnorm=``:

- ``"local"`` (default, as Horovod and ``torch.nn.parallel.DistributedDataParallel`` without
  SyncBatchNorm): each rank normalizes its part of the batch with that part's statistics, inside
  the same compiled whole-network step as a 1-rank run; the running statistics are averaged over
  the ranks in the gradient ``Allreduce``, so every rank holds the same model. The result differs
  from a 1-rank run (the statistics come from smaller batches).
- ``"sync"`` (as ``torch.nn.SyncBatchNorm``): the batch statistics and the two sums of the
  batchnorm backward pass are summed over the ranks (three small ``Allreduce`` calls per batchnorm
  layer and step), so a step equals the 1-rank step over the whole global batch up to rounding.
  The network then runs layer by layer from Python (see :mod:`fastmlp._sync_batchnorm`).

Without dropout, a distributed run equals the 1-rank run up to rounding (with batchnorm: in
``"sync"`` mode). Dropout masks are drawn per rank (rank 0 uses the model's seed, rank r a seed
derived from it and r), so the ranks do not repeat each other's masks.

Only rank 0 writes: ``save_checkpoint`` does nothing on other ranks, the progress bar and the
warnings appear on rank 0 only, and the validation metrics that drive early stopping, schedules
and callbacks are computed on rank 0 and broadcast, so every rank takes the same decisions.
``fit`` and ``evaluate`` are collective: call them on every rank.

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

from ._layout import workspace_layout
from ._validation import check_real
from ._sync_batchnorm import sync_batchnorm_gradient
from . import _records as records
from .kernels.cpu.network import network_penalty
from ._team import run_task
from .kernels.cpu.team import SHARED_LOSS
from .kernels.cpu.train import TASK_LOCAL_GRADIENT, TASK_UPDATE
from .threads import team_members, usable_cores
from .trainer import Trainer

__all__ = ["DistributedTrainer", "Communicator", "DistributedError", "DistributedTimeoutError",
           "local_size", "default_threads", "find_mpiexec"]

_FLAT_KEY = "params"
# Seconds between printing the reason for an abort and MPI_Abort: the launcher forwards a rank's
# output through pipes, and the abort kills the rank (and may end the forwarding) at once.
ABORT_GRACE_SECONDS = 1.0
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

    Each collective is started non-blocking and polled (spinning for the first millisecond, then
    sleeping up to 1 ms between polls); when ``timeout`` passes it raises
    :class:`DistributedTimeoutError` naming the operation.
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
            if now - began > 1e-3:
                pause = min(max(pause * 2.0, 1e-5), 1e-3)
                time.sleep(pause)

    def allreduce_sum(self, array, what):
        """Sum ``array`` (contiguous) over the ranks, in place."""
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM), what)
        return array

    def allreduce_max(self, array, what):
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, array, op=self.MPI.MAX), what)
        return array

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
        # the ranks on one machine share its cores: each rank's kernels use at most its share
        self._members = default_threads(self.comm.comm)
        self._agreed = False
        self._local_cache = None

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

    def _batches(self, n):
        bounds = super()._batches(n)
        need = self.size * (2 if any(layer.batchnorm for layer in self.model.layers) else 1)
        if bounds.shape[0] > 2 and bounds[-1] - bounds[-2] < need:
            bounds = np.delete(bounds, -2)  # a last batch too small to split joins the previous
        if bounds[1] - bounds[0] < need:
            raise ValueError(f"batch_size={self.batch_size} leaves fewer than {need // self.size} "
                             f"row(s) per rank for {self.size} ranks on {n} samples")
        return bounds

    def _before_training(self, X, labels, targets, bounds):
        self.comm.agree(None, "the checks before training")
        self._check_same_data(X, labels, targets, bounds)
        self._agreed = True  # from here on, a failure on one rank aborts the job
        self._broadcast_state()

    def _check_same_data(self, X, labels, targets, bounds):
        summary = np.array([X.shape[0], X.shape[1], bounds.shape[0],
                            float(np.sum(X, dtype=np.float64)),
                            float(np.sum(labels, dtype=np.float64)),
                            float(np.sum(targets, dtype=np.float64))], dtype=np.float64)
        extremes = self.comm.allreduce_max(np.concatenate([summary, -summary]),
                                           "the training-data check")  # max, then -min
        if not np.array_equal(extremes[:summary.size], -extremes[summary.size:]):
            raise DistributedError("the ranks were given different training data or batch sizes; "
                                   "every rank must pass the same X, y and options to fit")

    def _broadcast_state(self):
        model = self.model
        self.comm.bcast_array(model._params, "the broadcast of the parameters")
        if model._buffers.size:
            self.comm.bcast_array(model._buffers, "the broadcast of the batchnorm statistics")
        state = self.comm.bcast_object(
            (self.optimizer.state_dict(), model.dropout_step, self.epoch,
             self._rng.bit_generator.state), "the broadcast of the training state")
        if not self.is_root:
            opt_state, model.dropout_step, self.epoch, rng_state = state
            self.optimizer.load_state_dict(opt_state)
            self._rng.bit_generator.state = rng_state

    def _callbacks_stop(self, requested):
        decision = np.array([1 if requested else 0], dtype=np.int64)
        return bool(self.comm.bcast_array(decision, "the callbacks' stop decision")[0])

    # ----------------------------------------------------------------- one epoch
    def _local_buffers(self, X, labels, targets, bounds):
        """Batch buffers, packed gradient/statistics buffer and workspace for this rank's parts."""
        model = self.model
        rows = int(np.diff(bounds).max() + self.size - 1) // self.size
        key = (X.shape[1], rows, bool(labels.size), targets.shape[1] if targets.shape[0] else 0,
               bounds.tobytes())
        cached = self._local_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        layer_int = model._layout.layer_int
        _, ws_size = workspace_layout(layer_int, rows)
        P = model._params.shape[0]
        pack = np.zeros(P + model._buffers.shape[0], dtype=model.dtype)
        buffers = {
            "Xb": np.empty((rows, X.shape[1]), dtype=model.dtype),
            "lb": np.empty(rows if labels.size else 0, dtype=np.int64),
            "tb": np.empty((rows if targets.shape[0] else 0, targets.shape[1]), dtype=model.dtype),
            "ws": np.zeros(ws_size, dtype=model.dtype),
            "pack": pack, "grads": pack[:P], "stats": pack[P:], "scalars": np.zeros(3),
            "saved": np.empty_like(model._buffers),
            "parts": model._parts(rows, backward=True),
            "no_data": records.features_only(np.empty((0, X.shape[1]), dtype=model.dtype),
                                             model.n_outputs),
        }
        buffers["works"] = {}  # rows of this rank's part -> Workspace record
        self._local_cache = (key, buffers)
        return buffers

    def _part(self, start, stop):
        """This rank's contiguous part [lo, hi) of the global batch [start, stop)."""
        rows = stop - start
        return start + rows * self.rank // self.size, start + rows * (self.rank + 1) // self.size

    def _run_epoch(self, X, labels, targets, code, bounds):
        model, lay, opt = self.model, self.model._layout, self.optimizer
        n = X.shape[0]
        order = (self._rng.permutation(n) if self.shuffle else np.arange(n)).astype(np.int64)
        self.comm.bcast_array(order, "the broadcast of the epoch's row order")
        buf = self._local_buffers(X, labels, targets, bounds)
        grads = buf["grads"]
        steps = bounds.shape[0] - 1
        opt_code, s0, s1, s2, flag, init = opt.fused_arguments(_FLAT_KEY, model._params)
        coefficients = opt.coefficient_table(_FLAT_KEY, steps, model.dtype)
        seed = _rank_seed(model.seed, self.rank)
        clip = 0.0 if self.clip_norm is None else self.clip_norm
        sync = self.batchnorm == "sync" and self.size > 1 and model._buffers.size > 0
        total = correct = counted = 0.0
        done = 0
        for k in range(steps):
            start, stop = int(bounds[k]), int(bounds[k + 1])
            lo, hi = self._part(start, stop)
            work = buf["works"].get(hi - lo)
            if work is None:
                ws_off = workspace_layout(lay.layer_int, hi - lo, buf["parts"])[0]
                work = buf["works"][hi - lo] = records.workspace(
                    buf["ws"], ws_off, buf["parts"], model.dtype, grads=buf["grads"],
                    batch=(buf["Xb"], buf["lb"], buf["tb"]))
            buf["saved"][...] = model._buffers
            step = (self._sync_step if sync else self._local_step)
            loss, c, m = step(X, labels, targets, code, order, lo, hi, stop - start, buf, work,
                              seed, model.dropout_step + k)
            work.shared[SHARED_LOSS] = loss
            work = run_task(TASK_UPDATE, model._network(), buf["no_data"], work,
                            records.update((opt_code, s0, s1, s2, flag, init and k == 0),
                                           coefficients[k:k + 1]),
                            records.run(parts=buf["parts"], clip_norm=clip),
                            min(self._members, team_members(buf["parts"])))
            updated = work.result[0] == 1
            if not updated:
                model._buffers[...] = buf["saved"]  # as after the last finite step
                break
            done += 1
            total += loss * (stop - start)
            correct += c
            counted += m
        opt.advance(_FLAT_KEY, done)
        model.dropout_step += done
        if done < steps:
            return None
        return total / n, (correct / counted if counted else None)

    def _local_step(self, X, labels, targets, code, order, lo, hi, global_rows, buf, work, seed,
                    step):
        """Rows order[lo:hi] of a global batch of ``global_rows`` rows through the compiled
        whole-network step (local batchnorm statistics); with several ranks, the rows-weighted
        gradients, the averaged running statistics and the loss/accuracy sums are added up over
        the ranks in place. Returns the global batch's (mean loss + penalty, correct, counted)."""
        model, lay, comm = self.model, self.model._layout, self.comm
        work = run_task(TASK_LOCAL_GRADIENT, model._network(),
                        records.data(X, labels, targets, code, order,
                                     np.array([lo, hi], dtype=np.int64)),
                        work, records.no_update(model.dtype),
                        records.run(seed, step, self.l1, self.l2, parts=buf["parts"],
                                    training=True, update_stats=True, count=True, gathered=True),
                        min(self._members, team_members(buf["parts"])))
        loss, correct, counted = (float(work.result[0]), int(work.result[2]),
                                  int(work.result[3]))
        if self.size == 1:
            return loss, correct, counted
        np.multiply(buf["grads"], (hi - lo) / global_rows, out=buf["grads"])
        np.multiply(model._buffers, 1.0 / self.size, out=buf["stats"])
        scalars = buf["scalars"]
        scalars[:] = (loss * (hi - lo), correct, counted)
        comm.allreduce_sum(buf["pack"], "the gradient Allreduce")
        comm.allreduce_sum(scalars, "the loss Allreduce")
        model._buffers[...] = buf["stats"]
        return float(scalars[0]) / global_rows, int(scalars[1]), int(scalars[2])

    def _sync_step(self, X, labels, targets, code, order, lo, hi, global_rows, buf, work, seed,
                   step):
        """:meth:`_local_step` with synchronized batchnorm statistics (``batchnorm="sync"``)."""
        model, lay, comm = self.model, self.model._layout, self.comm
        rows = order[lo:hi]
        m = rows.shape[0]
        xb = np.take(X, rows, axis=0, out=buf["Xb"][:m])
        lb = np.take(labels, rows, out=buf["lb"][:m]) if labels.size else labels
        tb = np.take(targets, rows, axis=0, out=buf["tb"][:m]) if targets.shape[0] else targets
        scalars = buf["scalars"]
        scalars[:] = sync_batchnorm_gradient(
            comm, xb, lb, tb, code, model._params, buf["grads"], model._buffers, lay.layer_int,
            lay.layer_float, work.ws_off, buf["ws"], seed, step, self.l1, self.l2, global_rows)
        comm.allreduce_sum(buf["grads"], "the gradient Allreduce")
        comm.allreduce_sum(scalars, "the loss Allreduce")
        loss = float(scalars[0]) / global_rows + float(
            network_penalty(model._params, lay.layer_int, self.l1, self.l2))
        return loss, int(scalars[1]), int(scalars[2])

    # ----------------------------------------------------------------- evaluation and files
    def _evaluate_prepared(self, X, labels, targets, code):
        metrics = super()._evaluate_prepared(X, labels, targets, code) if self.is_root else None
        return self.comm.bcast_object(metrics, "the broadcast of the evaluation metrics")

    def save_checkpoint(self, path):
        """Rank 0 writes the checkpoint (see :meth:`Trainer.save_checkpoint`); others do nothing."""
        if self.is_root:
            super().save_checkpoint(path)


def default_threads(comm=None):
    """Kernel threads per rank that share this machine's usable cores among its ranks."""
    return max(1, usable_cores() // local_size(comm))


def find_mpiexec():
    """Path of the ``mpiexec`` launcher, or None: first beside this Python interpreter (where the
    MPICH wheel of ``pip install "fastmlp[mpi]"`` puts it), then on PATH."""
    folders = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return shutil.which("mpiexec", path=folders)
