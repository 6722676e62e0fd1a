"""The multilayer perceptron: parameters, forward pass, loss and gradients, prediction, saving."""

from __future__ import annotations

import numbers
import threading
from collections import OrderedDict

import numpy as np

from . import __version__
from ._device_inputs import device_features, device_targets, is_device_input, reject_device_input
from ._layout import ArrayViews, build_layout, views, workspace_layout
from ._validation import check_features, check_int, check_real, resolve_dtype
from .initializers import INITIALIZERS, INITS
from .cuda_support import require_cuda
from .io import FileFormatError, atomic_save_npz, load_npz
from . import _records as records
from ._team import run_task
from .kernels.config import ROW_ALIGN
from .kernels.cpu import network as net
from .kernels.cpu import train as tasks
from .layers import RELU_FAMILY, Dense
from .preprocessing import Standardizer
from .threads import kernel_parts
from .losses import CLASSIFICATION_LOSSES, LABEL_LOSSES, check_loss_name, prepare_targets

DEVICES = ("cpu", "cuda")
# evaluation-mode passes run over at most this many rows at a time to bound the workspace
EVAL_CHUNK_ROWS = 1024
_MAX_CACHED_WORKSPACES = 4


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z):
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


class MLP:
    """A multilayer perceptron.

    Parameters
    ----------
    input_dim : int
        Number of input features.
    layers : list of Dense
        The layers, first to last; the last layer's outputs are the logits / predictions.
    loss : str
        ``cross_entropy`` (softmax + log-likelihood), ``binary_cross_entropy`` (sigmoid per output),
        ``mse`` or ``hinge`` (multiclass SVM). See :mod:`fastmlp.losses` for accepted targets.
    dtype : str
        ``float32`` or ``float64`` for parameters and computation.
    device : str
        ``cpu`` or ``cuda``. With ``cuda`` the computation runs on the GPU (numba.cuda); the
        parameters and buffers keep a host copy (``params``/``buffers`` stay NumPy arrays) that is
        uploaded before each device computation and refreshed after each one that changes them.
        Inputs may then also be GPU arrays (anything with ``__cuda_array_interface__``: CuPy,
        PyTorch CUDA tensors, numba.cuda device arrays), used in place and checked on the device;
        features and float targets must have the model's dtype. Outputs are NumPy arrays.
    init : str
        ``auto`` (he for relu, leaky_relu, elu, gelu, maxout; xavier otherwise), ``he`` or ``xavier``.
    seed : int or None
        Seeds the initial weights and the dropout masks; the same seed gives the same model and the
        same masks on every run. None draws a fresh seed (kept in ``model.seed``).

    Attributes
    ----------
    params : dict[str, ndarray]
        ``"0.W"`` (in, out), ``"0.b"`` (out,), ``"0.gamma"``, ``"0.beta"`` (batchnorm layers),
        ``"1.W"``, … — views into the model's storage: modify them in place, or assign
        ``model.params[key] = array`` (copied in).
    buffers : dict[str, ndarray]
        ``"0.running_mean"``, ``"0.running_var"``, … of the batchnorm layers.

    A model is not safe to use from several threads at once (it reuses workspaces).
    """

    FILE_FORMAT = "fastmlp.model"
    FORMAT_VERSION = 1

    def __init__(self, input_dim, layers, loss="cross_entropy", dtype="float32", device="cpu",
                 init="auto", seed=0):
        self.input_dim = check_int(input_dim, "input_dim", minimum=1)
        if isinstance(layers, Dense) or not isinstance(layers, (list, tuple)):
            raise TypeError("layers must be a list of fastmlp.Dense")
        if not layers:
            raise ValueError("layers must contain at least one Dense layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise TypeError(f"layers[{i}] must be a fastmlp.Dense; got {type(layer).__name__}")
        self.layers = [Dense.from_config(layer.get_config()) for layer in layers]
        self.loss = check_loss_name(loss)
        self.dtype = resolve_dtype(dtype)
        if not isinstance(device, str) or device not in DEVICES:
            raise ValueError(f"device must be 'cpu' or 'cuda'; got {device!r}")
        if device == "cuda":
            require_cuda()  # CudaUnavailableError saying what is missing
        self.device = device
        if not isinstance(init, str) or init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {init!r}")
        self.init = init
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        self.seed = check_int(seed, "seed", minimum=0)
        self.n_outputs = self.layers[-1].units
        if self.loss in LABEL_LOSSES and self.n_outputs < 2:
            raise ValueError(f"loss {self.loss!r} needs a last layer with at least 2 units (one per "
                             f"class); got {self.n_outputs}")
        self._layout = build_layout(self.input_dim, self.layers)
        self._params = np.zeros(self._layout.n_params, dtype=self.dtype)
        self._buffers = np.zeros(self._layout.n_buffers, dtype=self.dtype)
        self._params_view = views(self._params, self._layout.param_slots, ArrayViews)
        self._buffers_view = views(self._buffers, self._layout.buffer_slots, ArrayViews)
        self._host_work = threading.local()  # per thread: OrderedDict of Workspace records
        self._d_params = self._d_buffers = None
        self._d_workspaces = OrderedDict()
        self._device_ahead = False  # the device arrays are newer than the host ones (in a fit)
        self.dropout_step = 0
        self.standardizer = None  # an optional fitted Standardizer saved with the model
        self._initialize()

    # ----------------------------------------------------------------- construction
    def _initialize(self):
        rng = np.random.default_rng(self.seed)
        fan_in = self.input_dim
        for l, layer in enumerate(self.layers):
            scheme = self.init
            if scheme == "auto":
                scheme = "he" if layer.activation in RELU_FAMILY else "xavier"
            self.params[f"{l}.W"][...] = INITIALIZERS[scheme](rng, fan_in, layer.width)
            if layer.batchnorm:
                self.params[f"{l}.gamma"][...] = 1.0
                self.buffers[f"{l}.running_var"][...] = 1.0
            fan_in = layer.units

    def get_config(self):
        """JSON-able constructor arguments (``MLP(**config)`` rebuilds the architecture)."""
        return {"input_dim": self.input_dim, "layers": [layer.get_config() for layer in self.layers],
                "loss": self.loss, "dtype": self.dtype.name, "device": self.device,
                "init": self.init, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layers"] = [Dense.from_config(c) for c in config["layers"]]
        return cls(**config)

    def __repr__(self):
        layers = ", ".join(repr(layer) for layer in self.layers)
        return (f"MLP(input_dim={self.input_dim}, layers=[{layers}], loss={self.loss!r}, "
                f"dtype={self.dtype.name!r})")

    @property
    def params(self):
        return self._params_view

    @property
    def buffers(self):
        return self._buffers_view

    @property
    def n_params(self):
        """Total number of trainable numbers."""
        return self._layout.n_params

    @property
    def is_classifier(self):
        return self.loss in CLASSIFICATION_LOSSES

    # ----------------------------------------------------------------- kernel plumbing
    def _parts(self, rows, backward=False):
        """Parts the phases of a CPU pass over ``rows`` rows (forward, or forward + backward) are
        cut into (1 for fewer rows than two row blocks: evaluation cuts rows)."""
        if rows < 2 * ROW_ALIGN:
            return 1
        return kernel_parts(rows * self._layout.macs_per_row * (3 if backward else 1))

    def _work(self, batch_size, parts=1):
        """The kernel Workspace record for ``batch_size`` rows cut into ``parts`` parts: made
        once per thread and reused (the few layouts used last are kept), so concurrent calls
        from several threads never share scratch memory."""
        cache = getattr(self._host_work, "cache", None)
        if cache is None:
            cache = self._host_work.cache = OrderedDict()
        key = (batch_size, parts)
        work = cache.get(key)
        if work is None:
            ws_off, size = workspace_layout(self._layout.layer_int, batch_size, parts)
            work = cache[key] = records.workspace(np.zeros(size, dtype=self.dtype), ws_off, parts,
                                                  self.dtype)
            while len(cache) > _MAX_CACHED_WORKSPACES:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return work

    def _cached_workspace(self, cache, batch_size, zeros, parts=1):
        """(ws_off, zeros(size, dtype)) for ``batch_size`` rows (planned for ``parts``) from the
        OrderedDict ``cache``, which keeps the _MAX_CACHED_WORKSPACES layouts used last."""
        key = (batch_size, parts)
        entry = cache.get(key)
        if entry is None:
            ws_off, size = workspace_layout(self._layout.layer_int, batch_size, parts)
            entry = cache[key] = (ws_off, zeros(size, dtype=self.dtype))
            while len(cache) > _MAX_CACHED_WORKSPACES:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return entry

    def _check_training_batch(self, n):
        if n < 2 and any(layer.batchnorm for layer in self.layers):
            raise ValueError("batchnorm in training mode needs at least 2 samples per batch "
                             "(the running variance uses B/(B-1))")

    def _next_dropout_step(self, dropout_step):
        if dropout_step is None:
            step = self.dropout_step
            self.dropout_step += 1
            return step
        return check_int(dropout_step, "dropout_step", minimum=0)

    def _network(self):
        return records.network(self._params, self._buffers, self._layout)

    def _forward_rows(self, X, training, update_stats, step):
        work = self._work(X.shape[0], self._parts(X.shape[0]))
        run_task(tasks.TASK_FORWARD, self._network(), records.features_only(X, self.n_outputs),
                 work, records.no_update(self.dtype),
                 records.run(self.seed, step, parts=work.partials.shape[0], training=training,
                             update_stats=update_stats))
        return net.network_output(work.ws, work.ws_off, self._layout.layer_int, X.shape[0],
                                  training)

    # ----------------------------------------------------------------- device plumbing
    # Sync protocol (device="cuda"): the host arrays ``_params``/``_buffers`` are the reference.
    # Every device computation first uploads them to ``_d_params``/``_d_buffers``; every device
    # computation that changes device state (training-mode passes) downloads it afterwards, so the
    # host copy is current whenever control returns to the caller. ``Trainer.fit`` is the one
    # exception: while it runs, the device state is the newer one (``_device_ahead``: uploads are
    # skipped), and it downloads the state only when host code needs it (early stopping and
    # callbacks, after each epoch) and when it returns.
    def _upload(self):
        """Copy the host parameters and buffers to the device (allocated on first use); nothing
        while the device holds the newer values."""
        from numba import cuda
        if self._device_ahead:
            return
        if self._d_params is None:
            self._d_params = cuda.to_device(self._params)
            self._d_buffers = cuda.to_device(self._buffers)
        else:
            self._d_params.copy_to_device(self._params)
            if self._buffers.size:
                self._d_buffers.copy_to_device(self._buffers)

    def _download(self, params=True, buffers=True):
        """Copy the device parameters and/or buffers back into the host arrays (in place)."""
        if params:
            self._d_params.copy_to_host(self._params)
        if buffers and self._buffers.size:
            self._d_buffers.copy_to_host(self._buffers)

    def _device_workspace(self, batch_size):
        """(ws_off, device ws) for ``batch_size`` rows, cached like :meth:`_work`."""
        from numba import cuda
        return self._cached_workspace(self._d_workspaces, batch_size,
                                      lambda size, dtype: cuda.to_device(np.zeros(size, dtype)))

    def _device_data(self, X, labels=None, targets=None):
        """Validated X (and labels/targets) on the device: host arrays are copied up, device
        arrays (checked GPU inputs) are used as they are; an unused (empty) labels/targets becomes
        an empty device array of the right dtype and width."""
        from numba import cuda

        def up(a):
            return cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a

        d_X = up(X)
        if labels is None:
            return d_X
        d_labels = up(labels) if labels.size else cuda.device_array(0, dtype=np.int64)
        d_targets = (up(targets) if targets.shape[0]
                     else cuda.device_array((0, targets.shape[1]), dtype=self.dtype))
        return d_X, d_labels, d_targets

    def _checked_features(self, X, name="X"):
        """X validated (``_validation.check_features``): a host array, or, on device="cuda", a
        GPU array checked on the device and used in place."""
        if is_device_input(X):
            if self.device != "cuda":
                reject_device_input(X, name)
            return device_features(X, self.input_dim, self.dtype, name)
        return check_features(X, self.input_dim, self.dtype, name)

    def _checked_inputs(self, X, y, name_X="X", name_y="y"):
        """(X, labels, targets, loss code) validated for this model; see
        :meth:`_checked_features` (y likewise, ``losses.prepare_targets`` on the host)."""
        X = self._checked_features(X, name_X)
        if is_device_input(y):
            if self.device != "cuda":
                reject_device_input(y, name_y)
            labels, targets, code = device_targets(self.loss, y, X.shape[0], self.n_outputs,
                                                   self.dtype, name_y)
        else:
            labels, targets, code = prepare_targets(self.loss, y, X.shape[0], self.n_outputs,
                                                    self.dtype, name_y)
        return X, labels, targets, code

    def _forward_rows_cuda(self, d_X, training, update_stats, step):
        """Host copy of the output of a device forward pass over the device rows ``d_X``."""
        from .kernels.cuda import network as cuda_net
        ws_off, ws = self._device_workspace(d_X.shape[0])
        lay = self._layout
        z = cuda_net.network_forward(d_X, self._d_params, self._d_buffers, lay.layer_int,
                                     lay.layer_float, ws_off, ws, training, update_stats,
                                     self.seed, step)
        return z.copy_to_host()

    # ----------------------------------------------------------------- public computation
    def forward(self, X, training=False, dropout_step=None):
        """Raw outputs (logits) of the last layer, shape (n, n_outputs).

        ``training=True`` uses batch statistics (and updates the running statistics) and dropout,
        like a training step; ``dropout_step`` replays the masks of that step.
        """
        X = self._checked_features(X)
        if self.device == "cuda":
            return self._forward_cuda(X, training, dropout_step)
        if training:
            self._check_training_batch(X.shape[0])
            step = self._next_dropout_step(dropout_step)
            return self._forward_rows(X, True, True, step).copy()
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        for start in range(0, X.shape[0], EVAL_CHUNK_ROWS):
            rows = X[start:start + EVAL_CHUNK_ROWS]
            out[start:start + rows.shape[0]] = self._forward_rows(rows, False, False, 0)
        return out

    def _forward_cuda(self, X, training, dropout_step):
        """:meth:`forward` on the device (X validated, on the host or the device)."""
        if training:
            self._check_training_batch(X.shape[0])
        step = self._next_dropout_step(dropout_step) if training else 0
        self._upload()
        d_X = self._device_data(X)
        if training:
            out = self._forward_rows_cuda(d_X, True, True, step)
            self._download(params=False)
            return out
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        for start in range(0, X.shape[0], EVAL_CHUNK_ROWS):
            rows = d_X[start:start + EVAL_CHUNK_ROWS]
            out[start:start + rows.shape[0]] = self._forward_rows_cuda(rows, False, False, 0)
        return out

    def _prepare(self, X, y, l1, l2):
        X, labels, targets, code = self._checked_inputs(X, y)
        l1 = check_real(l1, "l1", minimum=0.0)
        l2 = check_real(l2, "l2", minimum=0.0)
        return X, labels, targets, code, l1, l2

    def loss_and_grad(self, X, y, training=True, l1=0.0, l2=0.0, dropout_step=None):
        """(mean loss + penalty, gradients) for one batch, in one compiled call.

        The penalty is l1·Σ|W| + l2·ΣW² over weight matrices. Gradients are a dict shaped like
        ``params`` (fresh arrays). In training mode the batchnorm running statistics are updated
        and a new dropout mask is drawn unless ``dropout_step`` names the step to replay.
        """
        X, labels, targets, code, l1, l2 = self._prepare(X, y, l1, l2)
        step = 0
        if training:
            self._check_training_batch(X.shape[0])
            step = self._next_dropout_step(dropout_step)
        lay = self._layout
        if self.device == "cuda":
            from numba import cuda
            from .kernels.cuda import network as cuda_net
            self._upload()
            d_X, d_labels, d_targets = self._device_data(X, labels, targets)
            d_grads = cuda.device_array_like(self._params)
            ws_off, ws = self._device_workspace(X.shape[0])
            loss = cuda_net.network_loss_and_grad(
                d_X, d_labels, d_targets, code, self._d_params, d_grads, self._d_buffers,
                lay.layer_int, lay.layer_float, ws_off, ws, bool(training), bool(training),
                self.seed, step, l1, l2)
            if training:
                self._download(params=False)
            return float(loss), views(d_grads.copy_to_host(), lay.param_slots)
        grads = np.empty_like(self._params)
        parts = self._parts(X.shape[0], backward=True)
        work = run_task(tasks.TASK_GRADIENT, self._network(),
                        records.data(X, labels, targets, code),
                        self._work(X.shape[0], parts)._replace(grads=grads),
                        records.no_update(self.dtype),
                        records.run(self.seed, step, l1, l2, parts=parts, training=training,
                                    update_stats=training))
        return float(work.result[0]), views(grads, lay.param_slots)

    def loss_value(self, X, y, training=False, l1=0.0, l2=0.0, dropout_step=None):
        """Mean loss + penalty without gradients (evaluation mode by default)."""
        X, labels, targets, code, l1, l2 = self._prepare(X, y, l1, l2)
        lay = self._layout
        if self.device == "cuda":
            return self._loss_value_cuda(X, labels, targets, code, training, l1, l2, dropout_step)
        if training:
            self._check_training_batch(X.shape[0])
            step = self._next_dropout_step(dropout_step)
            parts = self._parts(X.shape[0])
            work = run_task(tasks.TASK_LOSS, self._network(),
                            records.data(X, labels, targets, code),
                            self._work(X.shape[0], parts), records.no_update(self.dtype),
                            records.run(self.seed, step, l1, l2, parts=parts, training=True,
                                        update_stats=True))
            return float(work.result[0])
        loss, _ = self._evaluation_loss_and_output(X, labels, targets, code)
        return loss + float(net.network_penalty(self._params, lay.layer_int, l1, l2))

    def _evaluation_loss_and_output(self, X, labels, targets, code):
        """(mean data loss, outputs (n, n_outputs)) in evaluation mode, from one forward pass over
        validated host arrays, in chunks of EVAL_CHUNK_ROWS rows (CPU)."""
        lay = self._layout
        n = X.shape[0]
        out = np.empty((n, self.n_outputs), dtype=self.dtype)
        total = 0.0
        for start in range(0, n, EVAL_CHUNK_ROWS):
            stop = min(start + EVAL_CHUNK_ROWS, n)
            parts = self._parts(stop - start)
            work = self._work(stop - start, parts)
            chunk_labels = labels[start:stop] if labels.size else labels
            chunk_targets = targets[start:stop] if targets.size else targets
            work = run_task(tasks.TASK_LOSS, self._network(),
                            records.data(X[start:stop], chunk_labels, chunk_targets, code),
                            work, records.no_update(self.dtype),
                            records.run(self.seed, parts=parts))
            part = float(work.result[0])
            out[start:stop] = net.network_output(work.ws, work.ws_off, lay.layer_int,
                                                 stop - start, False)
            total += part * (stop - start)
        return total / n, out

    def _loss_value_cuda(self, X, labels, targets, code, training, l1, l2, dropout_step):
        """:meth:`loss_value` on the device (inputs validated, on the host or the device)."""
        from .kernels.cuda import network as cuda_net
        lay = self._layout
        if training:
            self._check_training_batch(X.shape[0])
            step = self._next_dropout_step(dropout_step)
        self._upload()
        d_X, d_labels, d_targets = self._device_data(X, labels, targets)
        if training:
            ws_off, ws = self._device_workspace(X.shape[0])
            value = cuda_net.network_loss(d_X, d_labels, d_targets, code, self._d_params,
                                          self._d_buffers, lay.layer_int, lay.layer_float, ws_off,
                                          ws, True, True, self.seed, step, l1, l2)
            self._download(params=False)
            return float(value)
        loss, _, _ = self._evaluation_cuda(d_X, d_labels, d_targets, code, count=False)
        return loss + float(cuda_net.network_penalty(self._d_params, lay.layer_int, l1, l2))

    def _evaluation_cuda(self, d_X, d_labels, d_targets, code, count=True):
        """(mean data loss, correct, counted) in evaluation mode over device rows (labels or
        targets as the loss uses), in chunks of EVAL_CHUNK_ROWS rows; only scalars come back.
        The counts are 0 unless ``count``."""
        from .kernels.cuda import network as cuda_net
        from .kernels.cuda.metrics import count_correct as cuda_count_correct
        lay = self._layout
        n = d_X.shape[0]
        total, correct, counted = 0.0, 0, 0
        for start in range(0, n, EVAL_CHUNK_ROWS):
            stop = min(start + EVAL_CHUNK_ROWS, n)
            ws_off, ws = self._device_workspace(stop - start)
            chunk_labels = d_labels[start:stop] if d_labels.shape[0] else d_labels
            chunk_targets = d_targets[start:stop] if d_targets.shape[0] else d_targets
            part = cuda_net.network_loss(d_X[start:stop], chunk_labels, chunk_targets, code,
                                         self._d_params, self._d_buffers, lay.layer_int,
                                         lay.layer_float, ws_off, ws, False, False, self.seed, 0,
                                         0.0, 0.0)
            total += part * (stop - start)
            if count:
                z = cuda_net.network_output(ws, ws_off, lay.layer_int, stop - start, False)
                c, k = cuda_count_correct(z, chunk_labels, chunk_targets, code)
                correct, counted = correct + int(c), counted + int(k)
        return total / n, correct, counted

    def predict_proba(self, X):
        """Class probabilities: softmax rows (cross_entropy) or per-output sigmoids
        (binary_cross_entropy), shape (n, n_outputs)."""
        if self.loss == "cross_entropy":
            return _softmax(self.forward(X))
        if self.loss == "binary_cross_entropy":
            return _sigmoid(self.forward(X))
        raise ValueError(f"predict_proba needs loss 'cross_entropy' or 'binary_cross_entropy'; this "
                         f"model uses {self.loss!r}")

    def predict(self, X):
        """Class indices (n,) for cross_entropy/hinge; 0/1 labels for binary_cross_entropy, (n,) for
        one output or (n, k); the raw outputs (n, n_outputs) for mse."""
        z = self.forward(X)
        if self.loss in LABEL_LOSSES:
            return np.argmax(z, axis=1)
        if self.loss == "binary_cross_entropy":
            labels = (z > 0).astype(np.int64)
            return labels[:, 0] if self.n_outputs == 1 else labels
        return z

    # ----------------------------------------------------------------- persistence
    def __getstate__(self):
        """Pickle as configuration + state arrays (the storage views are rebuilt on unpickling)."""
        return {"config": self.get_config(), "arrays": self.state_arrays(),
                "dropout_step": self.dropout_step, "standardizer": self.standardizer}

    def __setstate__(self, state):
        config = dict(state["config"])
        config["layers"] = [Dense.from_config(c) for c in config["layers"]]
        self.__init__(**config)
        self.load_state_arrays(state["arrays"])
        self.dropout_step = state["dropout_step"]
        self.standardizer = state["standardizer"]

    def _constructor_args(self):
        return dict(self.get_config(), layers=self.layers)

    def copy(self, dtype=None):
        """An independent copy (optionally in another dtype) with the same parameters, buffers,
        dropout step and standardizer."""
        config = self._constructor_args()
        if dtype is not None:
            config["dtype"] = dtype
        clone = type(self)(**config)
        for mine, theirs in ((self.params, clone.params), (self.buffers, clone.buffers)):
            for key, value in mine.items():
                theirs[key][...] = value
        clone.dropout_step = self.dropout_step
        clone.standardizer = self.standardizer
        return clone

    def _metadata(self):
        return {"format": self.FILE_FORMAT, "format_version": self.FORMAT_VERSION,
                "library_version": __version__, "config": self.get_config(),
                "dropout_step": self.dropout_step}

    def state_arrays(self):
        """Named copies of every parameter ("params/…") and buffer ("buffers/…")."""
        arrays = {f"params/{k}": v.copy() for k, v in self.params.items()}
        arrays.update({f"buffers/{k}": v.copy() for k, v in self.buffers.items()})
        return arrays

    def load_state_arrays(self, arrays, source="state"):
        """Copy arrays named as by :meth:`state_arrays` into the model, checking names, shapes and
        dtype first (nothing is changed when a check fails)."""
        expected = set(self.state_arrays())
        missing = sorted(expected - set(arrays))
        extra = sorted(set(arrays) - expected)
        if missing or extra:
            raise FileFormatError(f"{source} does not match the architecture: missing {missing}, "
                                  f"unexpected {extra}")
        for group, mapping in (("params", self.params), ("buffers", self.buffers)):
            for key, target in mapping.items():
                value = arrays[f"{group}/{key}"]
                if value.shape != target.shape or value.dtype != target.dtype:
                    raise FileFormatError(f"{source}: {group}/{key} has shape {value.shape} and "
                                          f"dtype {value.dtype}; expected {target.shape} "
                                          f"{target.dtype}")
        for group, mapping in (("params", self.params), ("buffers", self.buffers)):
            for key, target in mapping.items():
                target[...] = arrays[f"{group}/{key}"]

    def save(self, path, standardizer=None):
        """Write the model to ``path`` (an .npz without pickle, with JSON metadata), atomically:
        an interrupted save leaves any previous file at ``path`` intact.

        ``standardizer`` (a fitted :class:`fastmlp.Standardizer`, default ``self.standardizer``)
        is stored in the same file; :meth:`load` puts it back in ``model.standardizer``.
        """
        arrays = self.state_arrays()
        standardizer = self.standardizer if standardizer is None else standardizer
        if standardizer is not None:
            if getattr(standardizer, "n_features_in_", self.input_dim) != self.input_dim:
                raise ValueError(f"standardizer was fitted on {standardizer.n_features_in_} "
                                 f"features; the model takes {self.input_dim}")
            for key, value in standardizer.state_dict().items():
                arrays[f"standardizer/{key}"] = value
        atomic_save_npz(path, arrays, self._metadata())

    @classmethod
    def load(cls, path, device=None):
        """Read a model written by :meth:`save`. Raises FileFormatError (a ValueError) for truncated,
        foreign or newer-format files; nothing in the file is executed.

        ``device`` (``"cpu"`` or ``"cuda"``) overrides the device stored in the file, e.g. to use
        a model trained on the GPU on a machine without one; None keeps the stored device."""
        arrays, meta = load_npz(path, cls.FILE_FORMAT, cls.FORMAT_VERSION)
        if device is not None and (not isinstance(device, str) or device not in DEVICES):
            raise ValueError(f"device must be 'cpu', 'cuda' or None; got {device!r}")
        try:
            config = dict(meta["config"])
            if device is not None:
                config["device"] = device
            model = cls.from_config(config)
        except (KeyError, TypeError, ValueError) as exc:
            raise FileFormatError(f"{path!r} has an invalid architecture: {exc}") from None
        standardizer_state = {k.split("/", 1)[1]: arrays.pop(k) for k in list(arrays)
                              if k.startswith("standardizer/")}
        model.load_state_arrays(arrays, source=repr(str(path)))
        if standardizer_state:
            try:
                model.standardizer = Standardizer.from_state_dict(standardizer_state)
            except (KeyError, TypeError, ValueError) as exc:
                raise FileFormatError(f"{path!r} has an invalid standardizer: {exc}") from None
        step = meta.get("dropout_step", 0)
        if isinstance(step, numbers.Integral) and not isinstance(step, bool) and step >= 0:
            model.dropout_step = int(step)
        return model

    # ----------------------------------------------------------------- interoperability
    def to_onnx(self, path, opset=None):
        """Write the model as an ONNX file (needs ``pip install "fastmlp[onnx]"``), atomically.

        One input ``X`` (n, input_dim) in the model's dtype, raw features (a stored
        ``standardizer`` is folded in); outputs ``label`` (int64, = :meth:`predict`) and
        ``probabilities`` (= :meth:`predict_proba`) for the cross-entropy losses, ``label`` and
        ``scores`` (raw outputs) for hinge, ``output`` (= :meth:`forward`) for mse. ``opset`` is
        the ai.onnx opset (None: ``fastmlp.interop.DEFAULT_OPSET``). Returns ``path`` as a str.
        See :mod:`fastmlp.interop.onnx_export`.
        """
        from .interop.onnx_export import save_onnx
        return save_onnx(self, path, opset=opset)

    @classmethod
    def from_torch(cls, module, loss="cross_entropy", dtype=None, seed=0):
        """An MLP from a ``torch.nn.Sequential`` of Linear, BatchNorm1d, activation and Dropout
        modules, with its weights and running statistics; ``dtype`` defaults to the module's.
        See :func:`fastmlp.interop.torch_convert.from_torch`."""
        from .interop.torch_convert import from_torch
        return from_torch(module, loss=loss, dtype=dtype, seed=seed, model_class=cls)

    def to_torch(self):
        """The equivalent ``torch.nn.Sequential`` in evaluation mode (maxout is refused).
        See :func:`fastmlp.interop.torch_convert.to_torch`."""
        from .interop.torch_convert import to_torch
        return to_torch(self)
