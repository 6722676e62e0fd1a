"""The CPU engine: every computation of a model on the host, as tasks of the CPU kernels.

An engine holds a model's flat arrays — the parameters (P,) and batchnorm statistics (R,), the
same arrays ``model.params``/``model.buffers`` view — with the layout tables that describe them,
and runs the kernel tasks of ``fastmlp.kernels.cpu.train`` on them: forward passes, losses,
gradients and whole training epochs. It owns the scratch memory (workspaces, batch buffers,
gradients; per thread, so concurrent inference calls never share it) and chooses how many parts
each call is cut into (``fastmlp.threads.kernel_parts``).

Data live where the engine computes: :meth:`begin_fit` checks and places a fit's data once and
keeps them, cut into training rows, validation rows and batches (``engines.fit_data``), until
:meth:`end_fit`; for the CPU they are the host arrays themselves.

Shapes: X (n, input_dim) of the model's dtype; labels (n,) int64 or empty; targets (n, C) or
(0, C); grads (P,).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .._validation import check_features
from ..kernels.config import ROW_ALIGN
from ..kernels.contract import (
    R_CORRECT,
    R_COUNTED,
    R_DONE,
    R_TOTAL,
    TASK_EPOCH,
    TASK_FORWARD,
    TASK_GRADIENT,
    TASK_LOCAL_GRADIENT,
    TASK_LOSS,
    TASK_UPDATE,
)
from ..kernels.cpu.network import network_output, network_penalty
from ..kernels.cpu.team import SHARED_LOSS
from ..losses import prepare_targets
from ..threads import kernel_parts
from . import records
from .bf16_support import require_bf16
from .device_inputs import is_device_input, reject_device_input
from .fit_data import checked_fit_data
from .layout import views, workspace_layout
from .outcomes import EpochResult, FitLock, describe_stop
from .team import run_task

# evaluation-mode passes run over at most this many rows at a time to bound the workspace
EVAL_CHUNK_ROWS = 1024
_MAX_CACHED_WORKSPACES = 4


class Placed:
    """Validated data on an engine's device: X, labels, targets, the loss code (host arrays on
    the CPU; device arrays on the GPU)."""

    __slots__ = ("X", "labels", "targets", "code")

    def __init__(self, X, labels, targets, code):
        self.X, self.labels, self.targets, self.code = X, labels, targets, code

    @property
    def rows(self):
        return self.X.shape[0]


class CpuEngine:
    """Computations of one model on the CPU; see the module docstring.

    ``layout`` is the model's ``engines.layout.NetworkLayout``; ``params`` (P,) and ``buffers``
    (R,) its flat arrays (updated in place); ``seed`` chooses the dropout masks; ``mixed``: the
    matrix products take bfloat16 operands (``mixed_bfloat16``; ``BFloat16UnavailableError``
    naming what is missing where they cannot run, see ``engines.bf16_support``).
    """

    device = "cpu"

    def __init__(self, layout, params, buffers, dtype, seed, n_outputs, loss, mixed=False):
        if mixed:
            require_bf16()
        self.mixed = bool(mixed)
        self._fit_lock = FitLock()
        self.layout = layout
        self.params = params
        self.buffers = buffers
        self.dtype = np.dtype(dtype)
        self.seed = seed
        self.n_outputs = n_outputs
        self.loss_name = loss
        self._local = threading.local()  # per thread: OrderedDict of Workspace records
        self._fit = None                 # the current fit's buffers (see :meth:`run_epoch`)

    # ----------------------------------------------------------------- data
    def check_features(self, X, name="X"):
        """X validated for this engine: a C-contiguous finite array of the model's dtype."""
        if is_device_input(X):
            reject_device_input(X, name)
        return check_features(X, self.layout.layer_int[0, 0], self.dtype, name)

    def check_inputs(self, X, y, name_X="X", name_y="y"):
        """(X, labels, targets, loss code) validated (``losses.prepare_targets`` for y)."""
        X = self.check_features(X, name_X)
        if is_device_input(y):
            reject_device_input(y, name_y)
        labels, targets, code = prepare_targets(self.loss_name, y, X.shape[0], self.n_outputs,
                                                self.dtype, name_y)
        return X, labels, targets, code

    def place(self, X, labels, targets, code):
        """Validated data where this engine computes (the host arrays themselves)."""
        return Placed(X, labels, targets, code)

    def take_rows(self, placed, rows):
        """The rows ``rows`` (sorted int64, or a slice: views then) of placed data."""
        return Placed(placed.X[rows], placed.labels[rows] if placed.labels.size else placed.labels,
                      placed.targets[rows] if placed.targets.shape[0] else placed.targets,
                      placed.code)

    # ----------------------------------------------------------------- scratch memory
    def parts(self, rows, backward=False):
        """Parts the phases of a pass over ``rows`` rows (forward, or forward + backward) are cut
        into (1 for fewer rows than two row blocks: evaluation cuts rows)."""
        if rows < 2 * ROW_ALIGN:
            return 1
        return kernel_parts(rows * self.layout.macs_per_row * (3 if backward else 1))

    def _work(self, rows, parts):
        """The Workspace record for ``rows`` rows in ``parts`` parts, made once per thread (the
        few layouts used last are kept)."""
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        key = (rows, parts)
        work = cache.get(key)
        if work is None:
            ws_off, size = workspace_layout(self.layout.layer_int, rows, parts)
            work = cache[key] = records.workspace(np.zeros(size, dtype=self.dtype), ws_off, parts,
                                                  self.dtype, half=self._half(size, rows))
            while len(cache) > _MAX_CACHED_WORKSPACES:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return work

    def _half(self, ws_size, rows, own_params=False):
        """The Half record for a workspace of ``ws_size`` and ``rows`` input rows of a mixed
        model (None otherwise). Its rounded parameters are an array of its own when
        ``own_params`` (a fit's: inference in other threads must not round into it), else the
        one this thread's inference workspaces share."""
        if not self.mixed:
            return None
        half_params = None if own_params else getattr(self._local, "half_params", None)
        if half_params is None:
            half_params = np.zeros(self.params.shape[0], dtype=np.uint16)
            if not own_params:
                self._local.half_params = half_params
        return records.half(half_params, ws_size, rows, self.layout.layer_int[0, 0])

    def _network(self):
        return records.network(self.params, self.buffers, self.layout)

    # ----------------------------------------------------------------- single passes
    def forward(self, X, training, update_stats, step):
        """The (n, C) outputs of the last layer (a fresh array); training mode uses batch
        statistics (updating the running ones when ``update_stats``) and dropout step ``step``."""
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        chunk = X.shape[0] if training else EVAL_CHUNK_ROWS
        for start in range(0, X.shape[0], max(chunk, 1)):
            rows = X[start:start + chunk]
            work = self._work(rows.shape[0], self.parts(rows.shape[0]))
            run_task(TASK_FORWARD, self._network(), records.features_only(rows, self.n_outputs),
                     work, records.no_update(self.dtype),
                     records.run(self.seed, step, parts=work.partials.shape[0], training=training,
                                 update_stats=update_stats))
            out[start:start + rows.shape[0]] = network_output(work.ws, work.ws_off,
                                                              self.layout.layer_int,
                                                              rows.shape[0], training)
        return out

    def loss_and_grad(self, X, labels, targets, code, training, step, l1, l2):
        """(mean loss + penalty, gradient (P,) fresh array) of one batch."""
        grads = np.empty_like(self.params)
        parts = self.parts(X.shape[0], backward=True)
        work = run_task(TASK_GRADIENT, self._network(), records.data(X, labels, targets, code),
                        self._work(X.shape[0], parts)._replace(grads=grads),
                        records.no_update(self.dtype),
                        records.run(self.seed, step, l1, l2, parts=parts, training=training,
                                    update_stats=training))
        return float(work.result[0]), grads

    def training_loss(self, X, labels, targets, code, step, l1, l2):
        """Mean loss + penalty of one batch in training mode (running statistics updated)."""
        parts = self.parts(X.shape[0])
        work = run_task(TASK_LOSS, self._network(), records.data(X, labels, targets, code),
                        self._work(X.shape[0], parts), records.no_update(self.dtype),
                        records.run(self.seed, step, l1, l2, parts=parts, training=True,
                                    update_stats=True))
        return float(work.result[0])

    def evaluate(self, placed, count=True, l1=0.0, l2=0.0):
        """(mean loss + penalty, correct, counted) in evaluation mode over placed data, in chunks
        of EVAL_CHUNK_ROWS rows; the counts are 0 unless ``count``."""
        loss, correct, counted = self._evaluation(placed, count)[:3]
        return loss + self.penalty(l1, l2), correct, counted

    def evaluate_validation(self, count=True, l1=0.0, l2=0.0):
        """:meth:`evaluate` of the current fit's validation data."""
        return self.evaluate(self._fit["data"].validation, count, l1, l2)

    def evaluation_outputs(self, placed):
        """(mean data loss, outputs (n, C)) in evaluation mode."""
        return self._evaluation(placed, False, keep_outputs=True)[::3]

    def _evaluation(self, placed, count, keep_outputs=False):
        n = placed.rows
        out = np.empty((n, self.n_outputs), dtype=self.dtype) if keep_outputs else None
        total, correct, counted = 0.0, 0, 0
        for start in range(0, n, EVAL_CHUNK_ROWS):
            stop = min(start + EVAL_CHUNK_ROWS, n)
            parts = self.parts(stop - start)
            data = records.data(placed.X[start:stop],
                                placed.labels[start:stop] if placed.labels.size else placed.labels,
                                placed.targets[start:stop] if placed.targets.size
                                else placed.targets, placed.code)
            work = run_task(TASK_LOSS, self._network(), data, self._work(stop - start, parts),
                            records.no_update(self.dtype),
                            records.run(self.seed, parts=parts, count=count))
            total += float(work.result[0]) * (stop - start)
            correct += int(work.result[2])
            counted += int(work.result[3])
            if keep_outputs:
                out[start:stop] = network_output(work.ws, work.ws_off, self.layout.layer_int,
                                                 stop - start, False)
        return total / n, correct, counted, out

    def penalty(self, l1, l2):
        """l1·Σ|W| + l2·ΣW² over the weight matrices."""
        return float(network_penalty(self.params, self.layout.layer_int, l1, l2))

    # ----------------------------------------------------------------- training
    def begin_fit(self, X, y, validation_data, plan, optimizer):
        """Begin a fit of ``X``, ``y`` (and ``validation_data``, a pair or None) cut by ``plan``
        (an ``engines.fit_data.FitPlan``) with ``optimizer``; returns its ``FitShape``.

        Claims the model for this fit (RuntimeError if another thread's fit holds it), checks
        and keeps the data, and lays out the fit's buffers: batch buffers, workspaces, the
        gradient, and the optimizer's state for one kernel call
        (:meth:`fastmlp.Optimizer.kernel_state`). All kept until :meth:`end_fit`; nothing is
        kept when this raises."""
        with self._fit_lock.beginning():
            data = checked_fit_data(self, X, y, validation_data, plan)
            state = optimizer.kernel_state(views(self.params, self.layout.param_slots))
            self._fit_buffers(data.train, data.bounds)
            self._fit.update(data=data, optimizer=optimizer, state=state,
                             keys=[slot.key for slot in self.layout.param_slots],
                             bounds=records.update_bounds(self.params, state))
        return data.shape()

    def check_training(self):
        """RuntimeError when another thread's fit holds the model (see ``FitLock``)."""
        self._fit_lock.check_training()

    @property
    def fit_data(self):
        """The current fit's FitData (None outside a fit)."""
        return None if self._fit is None else self._fit.get("data")

    def _fit_buffers(self, placed, bounds):
        """Batch buffers, workspace and gradient for batches ``bounds`` of ``placed``, kept
        from the last fit when their sizes are the same."""
        sizes = np.diff(bounds)
        rows, first, last = int(sizes.max()), int(sizes[0]), int(sizes[-1])
        parts = self.parts(first, backward=True)
        key = (placed.X.shape[1], first, last, rows, bool(placed.labels.size),
               placed.targets.shape[1] if placed.targets.shape[0] else 0, parts)
        if self._fit is None or self._fit["key"] != key:
            layer_int = self.layout.layer_int
            batch = (np.empty((rows, placed.X.shape[1]), dtype=self.dtype),
                     np.empty(rows if placed.labels.size else 0, dtype=np.int64),
                     np.empty((rows if placed.targets.shape[0] else 0, placed.targets.shape[1]),
                              dtype=self.dtype))
            size = workspace_layout(layer_int, rows)[1]
            half = self._half(size, rows, own_params=True)
            work = records.workspace(
                np.zeros(size, dtype=self.dtype),
                workspace_layout(layer_int, first, parts)[0], parts, self.dtype,
                grads=np.zeros_like(self.params), batch=batch,
                ws_off_last=workspace_layout(layer_int, last, parts)[0],
                saved=np.empty_like(self.buffers), half=half)
            self._fit = {"key": key, "work": work, "parts": parts}

    def host_changed(self):
        """The parameters or the optimizer were changed from outside during a fit (by a callback,
        or a ``load_state_dict``): the optimizer's state is laid out for the kernel again and the
        magnitude bounds its updates start from are measured again."""
        fit = self._fit
        if fit is not None and "state" in fit:
            fit["state"] = fit["optimizer"].kernel_state(views(self.params,
                                                               self.layout.param_slots))
            records.update_bounds(self.params, fit["state"], out=fit["bounds"])

    def _failure(self, work):
        return describe_stop(work.result, self.layout.param_slots,
                             self._fit["optimizer"].kernel_state_names(), self.dtype)

    def run_epoch(self, order, first_step, l1, l2, clip_norm):
        """One epoch of the fit's training rows, taken in the order ``order`` (a permutation of
        ``arange(rows)``, int64) in the fit's batches, from dropout step ``first_step``; one
        compiled call. Returns an :class:`EpochResult`; steps stop before the update at the first
        NaN/inf loss or gradient, or at an update that would make a value NaN/inf (the model, its
        statistics and the optimizer state are then those after the last finite step, and
        ``failure`` says which value)."""
        fit = self._fit
        optimizer, keys = fit["optimizer"], fit["keys"]
        placed, bounds = fit["data"].train, fit["data"].bounds
        coefficients = optimizer.coefficient_table(keys, bounds.shape[0] - 1, self.dtype)
        work = run_task(TASK_EPOCH, self._network(),
                        records.data(placed.X, placed.labels, placed.targets, placed.code, order,
                                     bounds),
                        fit["work"], records.update(fit["state"], coefficients, fit["bounds"]),
                        records.run(self.seed, first_step, l1, l2, clip_norm, fit["parts"],
                                    training=True, update_stats=True, count=True, gathered=True))
        done = int(work.result[R_DONE])
        optimizer.advance(keys, done)
        if done:  # the state's "first step" flag (SGD momentum) no longer applies
            fit["state"] = fit["state"][:5] + (False,)
        return EpochResult(done, float(work.result[R_TOTAL]), int(work.result[R_CORRECT]),
                           int(work.result[R_COUNTED]), self._failure(work))

    # the pieces a data-parallel strategy composes one step from (parallel.mpi)
    def local_gradient(self, order, lo, hi, step, l1, l2, seed, work, members=None):
        """The gradient of the fit's training rows order[lo:hi] into ``work.grads`` (one kernel
        task); returns (mean loss + penalty, correct, counted)."""
        placed = self._fit["data"].train
        work = run_task(TASK_LOCAL_GRADIENT, self._network(),
                        records.data(placed.X, placed.labels, placed.targets, placed.code, order,
                                     np.array([lo, hi], dtype=np.int64)),
                        work, records.no_update(self.dtype),
                        records.run(seed, step, l1, l2, parts=work.partials.shape[0],
                                    training=True, update_stats=True, count=True, gathered=True),
                        members)
        return float(work.result[0]), int(work.result[2]), int(work.result[3])

    def apply_update(self, work, loss, coefficients, clip_norm, members=None):
        """Check ``loss`` and ``work.grads`` finite, clip, and update the parameters with the
        current fit's optimizer state and one row of ``coefficients``; returns None, or (nothing
        changed) the reason it was not made, as :class:`EpochResult`'s ``failure``."""
        fit = self._fit
        work.shared[SHARED_LOSS] = loss
        work = run_task(TASK_UPDATE, self._network(),
                        records.features_only(np.empty((0, self.layout.layer_int[0, 0]),
                                                       dtype=self.dtype), self.n_outputs),
                        work, records.update(fit["state"], coefficients, fit["bounds"]),
                        records.run(parts=work.partials.shape[0], clip_norm=clip_norm), members)
        if work.result[R_DONE] == 1:
            fit["optimizer"].advance(fit["keys"], 1)
            fit["state"] = fit["state"][:5] + (False,)
            return None
        return self._failure(work)

    def step_workspace(self, rows, batch, grads):
        """A Workspace for one step of ``rows`` rows gathered into ``batch`` = (Xb, lb, tb),
        computing its gradient into ``grads`` (P,)."""
        parts = self.parts(rows, backward=True)
        ws_off, size = workspace_layout(self.layout.layer_int, rows, parts)
        return records.workspace(np.zeros(size, dtype=self.dtype), ws_off, parts, self.dtype,
                                 grads=grads, batch=batch,
                                 half=self._half(size, rows, own_params=True))

    def fit_coefficients(self, steps):
        """The current fit's optimizer scalars for its next ``steps`` updates."""
        fit = self._fit
        return fit["optimizer"].coefficient_table(fit["keys"], steps, self.dtype)

    def sync_host(self):
        """Make the host arrays current (nothing to do on the CPU)."""

    def end_fit(self):
        """Forget the fit's data and optimizer (the buffers are kept for the next fit)."""
        if self._fit is not None:
            for key in ("data", "optimizer", "state"):
                self._fit.pop(key, None)
        self._fit_lock.release()
