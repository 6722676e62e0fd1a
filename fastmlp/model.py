"""The multilayer perceptron: parameters, forward pass, loss and gradients, prediction, saving."""

from __future__ import annotations

import numpy as np

from . import __version__
from ._validation import (
    MIXED_BFLOAT16,
    allocate,
    check_memory,
    check_real,
    check_state_values,
    check_step,
    format_bytes,
    resolve_dtype,
)
from .architecture import checked_arguments, expected_state_arrays, file_config
from .engines import DEVICES, engine_for
from .engines.layout import ArrayViews, views
from .initializers import INITIALIZERS
from .io import FileFormatError, atomic_save_npz, check_arrays, open_npz
from .layers import RELU_FAMILY, Dense
from .losses import CLASSIFICATION_LOSSES, LABEL_LOSSES
from .preprocessing import Standardizer


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


def _standardizer_arrays(input_dim):
    """The arrays a Standardizer saved with a model of ``input_dim`` features adds to its file
    (dtype None: any float dtype)."""
    return {"standardizer/eps": ((), None), "standardizer/mean": ((input_dim,), None),
            "standardizer/var": ((input_dim,), None)}


def check_model_state_values(arrays, source):
    """FileFormatError naming the array unless the ``params/…`` and ``buffers/…`` of ``arrays``
    obey the rules that assigning ``model.params[key]`` applies: finite values, and running
    variances >= 0 (a negative one would make batchnorm divide by the square root of it)."""
    for name, value in arrays.items():
        if name.startswith(("params/", "buffers/")):
            check_state_values(value, f"{source}: {name}", error=FileFormatError,
                               non_negative=name.endswith(".running_var"))


class MLP:
    """A multilayer perceptron.

    Parameters
    ----------
    input_dim : int
        Number of input features, 1 to 2**31 - 1 (layer widths have the same limit, and a model
        holds at most 2**48 parameters; see ``fastmlp._validation``).
    layers : list of Dense
        The layers, first to last; the last layer's outputs are the logits / predictions.
    loss : str
        ``cross_entropy`` (softmax + log-likelihood), ``binary_cross_entropy`` (sigmoid per output),
        ``mse`` or ``hinge`` (multiclass SVM). See :mod:`fastmlp.losses` for accepted targets.
    dtype : str
        ``float32`` or ``float64`` for parameters and computation, or ``mixed_bfloat16``
        (Keras's policy name; CPU only): parameters, gradients, optimizer state, batchnorm
        statistics and the loss are float32 (``model.dtype``), and every matrix product takes
        its operands rounded to bfloat16 (to nearest even) and sums in float32, through oneDNN
        (``pip install "fastmlp[bf16]"``; the CPU needs AVX512_BF16 or AMX-BF16, else
        ``fastmlp.BFloat16UnavailableError`` names what is missing). Inputs are float32.
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
        same masks on every run; 0 to 2**63 - 1 (the kernels take int64). None draws a fresh seed
        (kept in ``model.seed``).

    Attributes
    ----------
    dtype : numpy.dtype
        The dtype of the parameters, buffers, gradients and inputs (float32 or float64).
    dtype_policy : str
        ``"float32"``, ``"float64"`` or ``"mixed_bfloat16"`` (the ``dtype`` argument).
    params : dict[str, ndarray]
        ``"0.W"`` (in, out), ``"0.b"`` (out,), ``"0.gamma"``, ``"0.beta"`` (batchnorm layers),
        ``"1.W"``, … — views into the model's storage: modify them in place, or assign
        ``model.params[key] = array`` (copied in).
    buffers : dict[str, ndarray]
        ``"0.running_mean"``, ``"0.running_var"``, … of the batchnorm layers.

    Inference (``forward``, ``predict``, ``predict_proba``, ``loss_value``) on one model is safe
    from several threads at once (each thread computes in scratch memory of its own); a model is
    trained by one Trainer at a time.
    """

    FILE_FORMAT = "fastmlp.model"
    FORMAT_VERSION = 1

    def __init__(self, input_dim, layers, loss="cross_entropy", dtype="float32", device="cpu",
                 init="auto", seed=0):
        checked = checked_arguments(input_dim, layers, loss, dtype, device, init, seed)
        self.input_dim = checked["input_dim"]
        self.layers = checked["layers"]
        self.loss = checked["loss"]
        self.dtype_policy = checked["dtype"]
        self.dtype = resolve_dtype(self.dtype_policy)
        self.device = checked["device"]
        self.init = checked["init"]
        self.seed = checked["seed"]
        self.n_outputs = self.layers[-1].units
        self._layout = checked["layout"]
        self._check_fits_in_memory()
        self._params = allocate(self._layout.n_params, self.dtype, "the model's parameters")
        self._buffers = allocate(self._layout.n_buffers, self.dtype, "its running statistics")
        self._params_view = views(self._params, self._layout.param_slots, ArrayViews)
        self._buffers_view = views(self._buffers, self._layout.buffer_slots, ArrayViews)
        self._engine = engine_for(device, self._layout, self._params, self._buffers, self.dtype,
                                  self.seed, self.n_outputs, self.loss,
                                  mixed=self.dtype_policy == MIXED_BFLOAT16)
        self.dropout_step = 0
        self.standardizer = None  # an optional fitted Standardizer saved with the model
        self._initialize()

    def _check_fits_in_memory(self):
        """MemoryError, before anything is allocated, when the parameters and running statistics
        together need more than the machine's physical memory."""
        layout, itemsize = self._layout, np.dtype(self.dtype).itemsize
        check_memory((layout.n_params + layout.n_buffers) * itemsize,
                     f"the model ({layout.n_params:,} parameters and {layout.n_buffers:,} running "
                     f"statistics as {np.dtype(self.dtype).name})")

    @property
    def dropout_step(self):
        """The training step whose dropout masks the next training pass draws (an integer in
        [0, 2**62]); each training pass advances it by one."""
        return self._dropout_step

    @dropout_step.setter
    def dropout_step(self, value):
        self._dropout_step = check_step(value, "dropout_step")

    # ----------------------------------------------------------------- construction
    def _initialize(self):
        rng = np.random.default_rng(self.seed)
        fan_in = self.input_dim
        for l, layer in enumerate(self.layers):
            scheme = self.init
            if scheme == "auto":
                scheme = "he" if layer.activation in RELU_FAMILY else "xavier"
            try:
                self.params[f"{l}.W"][...] = INITIALIZERS[scheme](rng, fan_in, layer.width)
            except MemoryError:
                raise MemoryError(f"not enough memory to initialize {l}.W, {fan_in} × "
                                  f"{layer.width} numbers "
                                  f"({format_bytes(8 * fan_in * layer.width)} as float64)") from None
            if layer.batchnorm:
                self.params[f"{l}.gamma"][...] = 1.0
                self.buffers[f"{l}.running_var"][...] = 1.0
            fan_in = layer.units

    def get_config(self):
        """JSON-able constructor arguments (``MLP(**config)`` rebuilds the architecture)."""
        return {"input_dim": self.input_dim, "layers": [layer.get_config() for layer in self.layers],
                "loss": self.loss, "dtype": self.dtype_policy, "device": self.device,
                "init": self.init, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layers"] = [Dense.from_config(c) for c in config["layers"]]
        return cls(**config)

    def __repr__(self):
        layers = ", ".join(repr(layer) for layer in self.layers)
        return (f"MLP(input_dim={self.input_dim}, layers=[{layers}], loss={self.loss!r}, "
                f"dtype={self.dtype_policy!r})")

    @property
    def params(self):
        return self._params_view

    @property
    def buffers(self):
        return self._buffers_view

    @property
    def layout(self):
        """Where every number of the network lives in its flat arrays
        (``fastmlp.engines.layout.NetworkLayout``)."""
        return self._layout

    @property
    def n_params(self):
        """Total number of trainable numbers."""
        return self._layout.n_params

    @property
    def is_classifier(self):
        return self.loss in CLASSIFICATION_LOSSES

    # ----------------------------------------------------------------- computation
    @property
    def engine(self):
        """The engine that runs this model's computations on its device (``fastmlp.engines``)."""
        return self._engine

    def _check_training_batch(self, n):
        self._engine.check_training()
        if n < 2 and any(layer.batchnorm for layer in self.layers):
            raise ValueError("batchnorm in training mode needs at least 2 samples per batch "
                             "(the running variance uses B/(B-1))")

    def _next_dropout_step(self, dropout_step):
        if dropout_step is None:
            step = self.dropout_step
            self.dropout_step += 1
            return step
        return check_step(dropout_step, "dropout_step")

    def forward(self, X, training=False, dropout_step=None):
        """Raw outputs (logits) of the last layer, shape (n, n_outputs).

        ``training=True`` uses batch statistics (and updates the running statistics) and dropout,
        like a training step; ``dropout_step`` replays the masks of that step.
        """
        X = self._engine.check_features(X)
        step = 0
        if training:
            self._check_training_batch(X.shape[0])
            step = self._next_dropout_step(dropout_step)
        return self._engine.forward(X, bool(training), bool(training), step)

    def _prepare(self, X, y, l1, l2):
        X, labels, targets, code = self._engine.check_inputs(X, y)
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
        loss, grads = self._engine.loss_and_grad(X, labels, targets, code, bool(training), step,
                                                 l1, l2)
        return loss, views(grads, self._layout.param_slots)

    def loss_value(self, X, y, training=False, l1=0.0, l2=0.0, dropout_step=None):
        """Mean loss + penalty without gradients (evaluation mode by default)."""
        X, labels, targets, code, l1, l2 = self._prepare(X, y, l1, l2)
        if training:
            self._check_training_batch(X.shape[0])
            step = self._next_dropout_step(dropout_step)
            return self._engine.training_loss(X, labels, targets, code, step, l1, l2)
        engine = self._engine
        return engine.evaluate(engine.place(X, labels, targets, code), False, l1, l2)[0]

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
        name = "model.standardizer" if standardizer is None else "standardizer"
        standardizer = self.standardizer if standardizer is None else standardizer
        arrays = self.state_arrays()
        if standardizer is not None:
            if not isinstance(standardizer, Standardizer):
                raise TypeError(f"{name} must be a fitted fastmlp.Standardizer or None; got "
                                f"{type(standardizer).__name__}")
            if getattr(standardizer, "n_features_in_", self.input_dim) != self.input_dim:
                raise ValueError(f"{name} was fitted on {standardizer.n_features_in_} "
                                 f"features; the model takes {self.input_dim}")
            for key, value in standardizer.state_dict().items():
                arrays[f"standardizer/{key}"] = value
        atomic_save_npz(path, arrays, self._metadata())

    @classmethod
    def load(cls, path, device=None):
        """Read a model written by :meth:`save`. Raises FileFormatError (a ValueError) for truncated,
        foreign or newer-format files; nothing in the file is executed.

        Everything is checked before the model is built: the metadata's fields and the
        architecture (held to the constructor's limits), the stored arrays' names, shapes and
        dtypes against those the architecture needs (read from the array headers, before any
        array data), and their values (finite; running variances >= 0).

        ``device`` (``"cpu"`` or ``"cuda"``) overrides the device stored in the file, e.g. to use
        a model trained on the GPU on a machine without one; None keeps the stored device."""
        if device is not None and (not isinstance(device, str) or device not in DEVICES):
            raise ValueError(f"device must be 'cpu', 'cuda' or None; got {device!r}")
        source = repr(str(path))
        with open_npz(path, cls.FILE_FORMAT, cls.FORMAT_VERSION) as npz:
            config = file_config(npz.meta.get("config"), source, "config", device)
            dropout_step = npz.meta.get("dropout_step", 0)
            if dropout_step is None:
                dropout_step = 0  # files of early versions may lack it
            try:
                dropout_step = check_step(dropout_step, "dropout_step")
            except (TypeError, ValueError) as exc:
                raise FileFormatError(f"{source}: metadata field {exc}") from None
            state_arrays = expected_state_arrays(config)
            check_arrays(npz.headers, source, state_arrays,
                         optional=_standardizer_arrays(config["input_dim"]), together=True)
            arrays = npz.read_all()
        check_model_state_values(arrays, source)
        standardizer_state = {k.split("/", 1)[1]: arrays.pop(k) for k in list(arrays)
                              if k.startswith("standardizer/")}
        standardizer = None
        if standardizer_state:
            try:
                standardizer = Standardizer.from_state_dict(standardizer_state)
            except (KeyError, TypeError, ValueError) as exc:
                raise FileFormatError(f"{source} has an invalid standardizer: {exc}") from None
        model = cls(**config)
        model.load_state_arrays(arrays, source=source)
        model.standardizer = standardizer
        model.dropout_step = dropout_step
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
