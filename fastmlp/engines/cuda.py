"""The CUDA engine: every computation of a ``device="cuda"`` model on the GPU (numba.cuda).

The host arrays of the model (``params``, ``buffers``) are the reference copy. Before each
device computation they are uploaded (allocated on first use); after each computation that
changes device state (training-mode passes) the changed arrays come back, so the host copy is
current whenever control returns to the caller. A fit is the exception: between
:meth:`CudaEngine.begin_fit` and :meth:`CudaEngine.end_fit` the device holds the newer values
(``device_ahead``: uploads are skipped), and :meth:`CudaEngine.sync_host` copies them back when
host code needs them (early stopping, callbacks, the end of the fit).

Data may be host arrays (copied up) or GPU arrays (anything with ``__cuda_array_interface__``:
CuPy, PyTorch CUDA tensors, numba.cuda device arrays), checked on the device with the host's rules
and used in place. :meth:`begin_fit` puts a fit's data on the device once and keeps them
(``engines.fit_data``); only the row order, the optimizer coefficients and scalars cross per
epoch.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..kernels.contract import (
    N_RESULT,
    R_CORRECT,
    R_COUNTED,
    R_DONE,
    R_TOTAL,
    Data,
    Network,
    Run,
    Update,
    Workspace,
)
from ..losses import prepare_targets
from .cpu import EVAL_CHUNK_ROWS, Placed
from .cuda_support import require_cuda
from .device_inputs import device_features, device_targets, is_device_input, take_rows
from .fit_data import checked_fit_data
from .layout import views, workspace_layout
from .outcomes import EpochResult, FitLock, describe_stop
from .records import update_bounds

_MAX_CACHED_WORKSPACES = 4


class CudaEngine:
    """Computations of one model on the GPU; the same methods as :class:`.cpu.CpuEngine`."""

    device = "cuda"

    def __init__(self, layout, params, buffers, dtype, seed, n_outputs, loss):
        self._fit_lock = FitLock()
        require_cuda()  # CudaUnavailableError saying what is missing
        self.layout = layout
        self.params = params
        self.buffers = buffers
        self.dtype = np.dtype(dtype)
        self.seed = seed
        self.n_outputs = n_outputs
        self.loss_name = loss
        self.d_params = self.d_buffers = None
        self.device_ahead = False
        self._workspaces = OrderedDict()
        self._fit = None

    # ----------------------------------------------------------------- host <-> device
    def upload(self):
        """Copy the host parameters and buffers to the device (nothing while it is ahead)."""
        from numba import cuda
        if self.device_ahead:
            return
        if self.d_params is None:
            self.d_params = cuda.to_device(self.params)
            self.d_buffers = cuda.to_device(self.buffers)
        else:
            self.d_params.copy_to_device(self.params)
            if self.buffers.size:
                self.d_buffers.copy_to_device(self.buffers)

    def download(self, params=True, buffers=True):
        """Copy the device parameters and/or buffers back into the host arrays (in place)."""
        if params:
            self.d_params.copy_to_host(self.params)
        if buffers and self.buffers.size:
            self.d_buffers.copy_to_host(self.buffers)

    def _up(self, array):
        from numba import cuda
        return cuda.to_device(np.ascontiguousarray(array)) if isinstance(array, np.ndarray) \
            else array

    def _workspace(self, rows):
        """(ws_off, device ws) for ``rows`` rows, cached (the layouts used last are kept)."""
        from numba import cuda
        entry = self._workspaces.get(rows)
        if entry is None:
            ws_off, size = workspace_layout(self.layout.layer_int, rows)
            entry = self._workspaces[rows] = (ws_off, cuda.to_device(np.zeros(size, self.dtype)))
            while len(self._workspaces) > _MAX_CACHED_WORKSPACES:
                self._workspaces.popitem(last=False)
        else:
            self._workspaces.move_to_end(rows)
        return entry

    # ----------------------------------------------------------------- data
    def check_features(self, X, name="X"):
        """X validated: a host array (``_validation.check_features``) or a GPU array checked on
        the device and used in place."""
        from .._validation import check_features
        n_in = int(self.layout.layer_int[0, 0])
        if is_device_input(X):
            return device_features(X, n_in, self.dtype, name)
        return check_features(X, n_in, self.dtype, name)

    def check_inputs(self, X, y, name_X="X", name_y="y"):
        """(X, labels, targets, loss code), host or GPU arrays, validated."""
        X = self.check_features(X, name_X)
        if is_device_input(y):
            labels, targets, code = device_targets(self.loss_name, y, X.shape[0], self.n_outputs,
                                                   self.dtype, name_y)
        else:
            labels, targets, code = prepare_targets(self.loss_name, y, X.shape[0],
                                                    self.n_outputs, self.dtype, name_y)
        return X, labels, targets, code

    def place(self, X, labels, targets, code):
        """The data on the device: host arrays copied up, GPU arrays as they are; empty labels or
        targets become empty device arrays of the right dtype and width."""
        from numba import cuda
        d_labels = self._up(labels) if labels.size else cuda.device_array(0, dtype=np.int64)
        d_targets = (self._up(targets) if targets.shape[0]
                     else cuda.device_array((0, targets.shape[1]), dtype=self.dtype))
        return Placed(self._up(X), d_labels, d_targets, code)

    def take_rows(self, placed, rows):
        """The rows ``rows`` (sorted int64) of placed data, gathered on the device."""
        X, labels, targets = take_rows(placed.X, placed.labels, placed.targets, rows)
        return Placed(X, labels, targets, placed.code)

    # ----------------------------------------------------------------- single passes
    def _forward_rows(self, d_X, training, update_stats, step):
        from ..kernels.cuda import network as cuda_net
        ws_off, ws = self._workspace(d_X.shape[0])
        lay = self.layout
        z = cuda_net.network_forward(d_X, self.d_params, self.d_buffers, lay.layer_int,
                                     lay.layer_float, ws_off, ws, training, update_stats,
                                     self.seed, step)
        return z.copy_to_host()

    def forward(self, X, training, update_stats, step):
        """The (n, C) outputs of the last layer as a host array (see CpuEngine.forward)."""
        self.upload()
        d_X = self._up(X)
        if training:
            out = self._forward_rows(d_X, True, update_stats, step)
            self.download(params=False)
            return out
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        for start in range(0, X.shape[0], EVAL_CHUNK_ROWS):
            rows = d_X[start:start + EVAL_CHUNK_ROWS]
            out[start:start + rows.shape[0]] = self._forward_rows(rows, False, False, 0)
        return out

    def loss_and_grad(self, X, labels, targets, code, training, step, l1, l2):
        """(mean loss + penalty, gradient (P,) host array) of one batch."""
        from numba import cuda

        from ..kernels.cuda import network as cuda_net
        self.upload()
        placed = self.place(X, labels, targets, code)
        d_grads = cuda.device_array_like(self.params)
        ws_off, ws = self._workspace(placed.rows)
        lay = self.layout
        loss = cuda_net.network_loss_and_grad(
            placed.X, placed.labels, placed.targets, code, self.d_params, d_grads,
            self.d_buffers, lay.layer_int, lay.layer_float, ws_off, ws, bool(training),
            bool(training), self.seed, step, l1, l2)
        if training:
            self.download(params=False)
        return float(loss), d_grads.copy_to_host()

    def training_loss(self, X, labels, targets, code, step, l1, l2):
        """Mean loss + penalty of one batch in training mode (running statistics updated)."""
        from ..kernels.cuda import network as cuda_net
        self.upload()
        placed = self.place(X, labels, targets, code)
        ws_off, ws = self._workspace(placed.rows)
        lay = self.layout
        value = cuda_net.network_loss(placed.X, placed.labels, placed.targets, code,
                                      self.d_params, self.d_buffers, lay.layer_int,
                                      lay.layer_float, ws_off, ws, True, True, self.seed, step,
                                      l1, l2)
        self.download(params=False)
        return float(value)

    def evaluate(self, placed, count=True, l1=0.0, l2=0.0):
        """(mean loss + penalty, correct, counted) in evaluation mode over placed (device) data,
        in chunks of EVAL_CHUNK_ROWS rows; only scalars come back."""
        from ..kernels.cuda import network as cuda_net
        from ..kernels.cuda.metrics import count_correct
        self.upload()
        lay = self.layout
        n = placed.rows
        total, correct, counted = 0.0, 0, 0
        for start in range(0, n, EVAL_CHUNK_ROWS):
            stop = min(start + EVAL_CHUNK_ROWS, n)
            ws_off, ws = self._workspace(stop - start)
            labels = placed.labels[start:stop] if placed.labels.shape[0] else placed.labels
            targets = placed.targets[start:stop] if placed.targets.shape[0] else placed.targets
            part = cuda_net.network_loss(placed.X[start:stop], labels, targets, placed.code,
                                         self.d_params, self.d_buffers, lay.layer_int,
                                         lay.layer_float, ws_off, ws, False, False, self.seed, 0,
                                         0.0, 0.0)
            total += part * (stop - start)
            if count:
                z = cuda_net.network_output(ws, ws_off, lay.layer_int, stop - start, False)
                c, k = count_correct(z, labels, targets, placed.code)
                correct, counted = correct + int(c), counted + int(k)
        return total / n + self.penalty(l1, l2), correct, counted

    def evaluate_validation(self, count=True, l1=0.0, l2=0.0):
        """:meth:`evaluate` of the current fit's validation data."""
        return self.evaluate(self._fit["data"].validation, count, l1, l2)

    def evaluation_outputs(self, placed):
        """(mean data loss, outputs (n, C) on the host) in evaluation mode."""
        loss = self.evaluate(placed, count=False)[0]
        return loss, self.forward(placed.X, False, False, 0)

    def penalty(self, l1, l2):
        """l1·Σ|W| + l2·ΣW² over the weight matrices, computed on the device."""
        from ..kernels.cuda import network as cuda_net
        self.upload()
        return float(cuda_net.network_penalty(self.d_params, self.layout.layer_int, l1, l2))

    # ----------------------------------------------------------------- training
    def begin_fit(self, X, y, validation_data, plan, optimizer):
        """Begin a fit (see CpuEngine.begin_fit); returns its ``FitShape``. The data, the batch
        buffers, the workspace, the gradient and the optimizer state are put on the device once
        and kept across the epochs, with the model uploaded."""
        with self._fit_lock.beginning():
            self.device_ahead = False
            self.upload()
            data = checked_fit_data(self, X, y, validation_data, plan)
            self._fit = self._fit_buffers(data, optimizer)
            self.device_ahead = True
        return data.shape()

    def check_training(self):
        """RuntimeError when another thread's fit holds the model (see ``FitLock``)."""
        self._fit_lock.check_training()

    @property
    def fit_data(self):
        """The current fit's FitData (None outside a fit)."""
        return None if self._fit is None else self._fit["data"]

    def _fit_buffers(self, data, optimizer):
        from numba import cuda
        placed, sizes = data.train, np.diff(data.bounds)
        rows = int(sizes.max())
        layer_int = self.layout.layer_int
        host_state = optimizer.kernel_state(views(self.params, self.layout.param_slots))
        code, s0, s1, s2, flag, init = host_state
        empty = cuda.device_array(0, dtype=self.dtype)
        return {
            "data": data, "optimizer": optimizer, "host_state": (s0, s1, s2), "code": code,
            "flag": flag, "init": init, "keys": [slot.key for slot in self.layout.param_slots],
            "state": tuple(cuda.to_device(s) if s.size else empty for s in (s0, s1, s2)),
            "batch": (cuda.device_array((rows, placed.X.shape[1]), dtype=self.dtype),
                      cuda.device_array(rows if placed.labels.shape[0] else 0, dtype=np.int64),
                      cuda.device_array((rows if placed.targets.shape[0] else 0,
                                         placed.targets.shape[1]), dtype=self.dtype)),
            "ws": cuda.to_device(np.zeros(workspace_layout(layer_int, rows)[1], self.dtype)),
            "ws_off": (workspace_layout(layer_int, int(sizes[0]))[0],
                       workspace_layout(layer_int, int(sizes[-1]))[0]),
            "grads": cuda.to_device(np.zeros_like(self.params)),
            "bounds": update_bounds(self.params, host_state),
            "result": np.zeros(N_RESULT),
        }

    def host_changed(self):
        """Nothing: changes to the host arrays during a fit reach the device at the next fit."""

    def run_epoch(self, order, first_step, l1, l2, clip_norm):
        """One epoch on the device (see CpuEngine.run_epoch); only the row order and the
        coefficients go up and scalars come back."""
        from numba import cuda

        from ..kernels.cuda.train import train_epoch
        fit = self._fit
        placed, bounds = fit["data"].train, fit["data"].bounds
        coefficients = fit["optimizer"].coefficient_table(fit["keys"], bounds.shape[0] - 1,
                                                          self.dtype)
        Xb, lb, tb = fit["batch"]
        ws_off, ws_off_last = fit["ws_off"]
        work = Workspace(fit["ws"], ws_off, ws_off_last, fit["grads"], None, Xb, lb, tb, None,
                         None, None, fit["result"])
        result = train_epoch(
            Network(self.d_params, self.d_buffers, self.layout.layer_int, self.layout.layer_float),
            Data(placed.X, placed.labels, placed.targets, placed.code,
                 cuda.to_device(order.astype(np.int64)), bounds),
            work, Update(fit["code"], *fit["state"], fit["flag"], fit["init"],
                         cuda.to_device(coefficients), fit["bounds"]),
            Run(self.seed, first_step, l1, l2, clip_norm, 1, 1, True, True, True, True))
        done = int(result[R_DONE])
        fit["optimizer"].advance(fit["keys"], done)
        if done:
            fit["init"] = False
        failure = describe_stop(result, self.layout.param_slots,
                                fit["optimizer"].kernel_state_names(), self.dtype)
        return EpochResult(done, float(result[R_TOTAL]), int(result[R_CORRECT]),
                           int(result[R_COUNTED]), failure)

    def sync_host(self):
        """Copy the model and the optimizer state to the host arrays when the device holds newer
        values."""
        if not self.device_ahead:
            return
        self.download()
        if self._fit is not None:
            for d_s, s in zip(self._fit["state"], self._fit["host_state"]):
                if s.size:
                    d_s.copy_to_host(s)

    def end_fit(self):
        """Bring the fit's state back to the host and release its device buffers."""
        try:
            self.sync_host()
        finally:
            self.device_ahead = False
            self._fit = None
            self._fit_lock.release()
