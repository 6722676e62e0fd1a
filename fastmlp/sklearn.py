"""scikit-learn estimators backed by fastmlp: :class:`MLPClassifier` and :class:`MLPRegressor`.

They follow scikit-learn's estimator contract (``get_params``/``set_params``, ``clone``, input
validation, ``n_features_in_``/``feature_names_in_``, pickling) and pass its common estimator
checks, so they work inside ``Pipeline``, ``GridSearchCV``, ``cross_val_score`` and friends::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from fastmlp.sklearn import MLPClassifier

    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), epochs=50,
                                                        random_state=0))
    clf.fit(X_train, y_train).score(X_test, y_test)

Nothing is standardized implicitly; put a ``StandardScaler`` in front when features differ in
scale. The networks are ``hidden_layer_sizes`` Dense layers with ``activation`` followed by a
linear output layer: one unit per class with softmax cross-entropy for the classifier (two units
for binary problems), one unit per target with mean squared error for the regressor.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, check_scalar
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import dtype_policy, resolve_dtype
from .callbacks import Callback, EarlyStopping
from .layers import ACTIVATIONS, Dense
from .model import MLP
from .optimizers import OPTIMIZERS, get_optimizer
from .trainer import Trainer

__all__ = ["MLPClassifier", "MLPRegressor"]

_SEED_BOUND = np.iinfo(np.int32).max
_OPTIMIZER_NAMES = tuple(sorted(name.lower() for name in OPTIMIZERS))


class _ValidationScore(Callback):
    """Records ``score(model outputs, y)`` on held-out data after every epoch."""

    def __init__(self, X, y, score):
        self.X, self.y, self.score = X, y, score
        self.scores = []
        self._model = None

    def on_train_begin(self, trainer):
        self._model = trainer.model

    def on_epoch_end(self, epoch, metrics):
        self.scores.append(float(self.score(self._model.forward(self.X), self.y)))
        return False


def _accuracy_from_logits(z, labels):
    return np.mean(np.argmax(z, axis=1) == labels)


def _r2_from_outputs(z, targets):
    return r2_score(targets, z.astype(np.float64))


def _writeable(arr):
    """``arr`` itself when writeable, otherwise a copy: a read-only array would make Numba
    compile (seconds) a separate specialization of every kernel it reaches."""
    return arr if arr.flags.writeable else arr.copy()


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {value!r}")
    return bool(value)


class _BaseMLP(BaseEstimator):
    """Shared machinery of :class:`MLPClassifier` and :class:`MLPRegressor`."""

    _loss = None  # set by the subclasses

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", optimizer="adam",
                 learning_rate=1e-3, optimizer_params=None, batch_size=200, epochs=200,
                 batchnorm=False, dropout=0.0, l1=0.0, l2=1e-4, early_stopping=False,
                 validation_fraction=0.1, patience=10, random_state=None, verbose=False,
                 warm_start=False, dtype="float32", shuffle=True):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.optimizer_params = optimizer_params
        self.batch_size = batch_size
        self.epochs = epochs
        self.batchnorm = batchnorm
        self.dropout = dropout
        self.l1 = l1
        self.l2 = l2
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.dtype = dtype
        self.shuffle = shuffle

    # ----------------------------------------------------------------- hyper-parameters
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, (bool, np.bool_)):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints; got "
                            f"{self.hidden_layer_sizes!r}") from None
        for size in sizes:
            if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral):
                raise TypeError(f"hidden_layer_sizes must hold positive integers; got "
                                f"{self.hidden_layer_sizes!r}")
            if size < 1:
                raise ValueError(f"hidden_layer_sizes must hold positive integers; got "
                                 f"{self.hidden_layer_sizes!r}")
        return tuple(int(s) for s in sizes)

    def _check_hyperparameters(self):
        """Validate every constructor parameter; returns the resolved architecture."""
        hidden = self._hidden_sizes()
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got "
                             f"{self.activation!r}")
        if not isinstance(self.optimizer, str) or self.optimizer.lower() not in _OPTIMIZER_NAMES:
            raise ValueError(f"optimizer must be one of {', '.join(_OPTIMIZER_NAMES)}; got "
                             f"{self.optimizer!r}")
        check_scalar(self.learning_rate, "learning_rate", numbers.Real, min_val=0.0,
                     include_boundaries="neither")
        if self.optimizer_params is not None:
            if not isinstance(self.optimizer_params, dict):
                raise TypeError(f"optimizer_params must be a dict or None; got "
                                f"{type(self.optimizer_params).__name__}")
            if "lr" in self.optimizer_params:
                raise ValueError("set the learning rate with learning_rate, not "
                                 "optimizer_params['lr']")
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            if isinstance(self.batch_size, str):
                raise ValueError(f"batch_size must be 'auto' or a positive integer; got "
                                 f"{self.batch_size!r}")
            check_scalar(self.batch_size, "batch_size", numbers.Integral, min_val=1)
        check_scalar(self.epochs, "epochs", numbers.Integral, min_val=1)
        batchnorm = _check_bool(self.batchnorm, "batchnorm")
        check_scalar(self.dropout, "dropout", numbers.Real, min_val=0.0, max_val=1.0,
                     include_boundaries="left")
        check_scalar(self.l1, "l1", numbers.Real, min_val=0.0)
        check_scalar(self.l2, "l2", numbers.Real, min_val=0.0)
        _check_bool(self.early_stopping, "early_stopping")
        check_scalar(self.validation_fraction, "validation_fraction", numbers.Real, min_val=0.0,
                     max_val=1.0, include_boundaries="neither")
        check_scalar(self.patience, "patience", numbers.Integral, min_val=1)
        _check_bool(self.warm_start, "warm_start")
        _check_bool(self.shuffle, "shuffle")
        return {"hidden": hidden, "activation": self.activation, "batchnorm": batchnorm,
                "dropout": float(self.dropout), "dtype": dtype_policy(self.dtype)}

    def _make_optimizer(self):
        params = dict(self.optimizer_params or {})
        try:
            return get_optimizer(self.optimizer, lr=float(self.learning_rate), **params)
        except TypeError as exc:
            raise ValueError(f"optimizer_params {params!r} do not fit optimizer "
                             f"{self.optimizer!r}: {exc}") from None

    # ----------------------------------------------------------------- hooks for subclasses
    def _validate_targets(self, y, first, classes=None):
        """(encoded targets for the model, number of network outputs, fitted attributes to set
        once training succeeds)."""
        raise NotImplementedError

    def _validation_scorer(self):
        raise NotImplementedError

    # ----------------------------------------------------------------- fitting
    def _fit(self, X, y, partial, classes=None):
        arch = self._check_hyperparameters()
        incremental = hasattr(self, "model_") and (partial or self.warm_start)
        if incremental and arch != self._architecture:
            raise ValueError(f"warm_start and partial_fit continue the fitted network, whose "
                             f"architecture {self._architecture} differs from the current "
                             f"parameters {arch}; set warm_start=False to fit a new network")
        dtype = resolve_dtype(arch["dtype"])
        X, y = validate_data(self, X, y, reset=not incremental, dtype=dtype,
                              **self._validate_y_kwargs())
        X = _writeable(np.ascontiguousarray(X))
        targets, n_outputs, target_attributes = self._validate_targets(
            y, first=not incremental, classes=classes)

        # a fresh fit builds everything aside and sets the fitted attributes only once it trained
        if incremental:
            model, rng = self.model_, self._rng
            if model.n_outputs != n_outputs:
                raise ValueError(f"y has {n_outputs} targets but the fitted network has "
                                 f"{model.n_outputs} outputs")
            optimizer = self._optimizer
            desired = self._make_optimizer()
            optimizer.lr = desired.lr
            if (type(desired) is not type(optimizer)
                    or desired.get_config() != optimizer.get_config()):
                optimizer = desired  # another optimizer or other hyper-parameters: fresh state
            history = {key: list(values) for key, values in self.history_.items()}
            n_iter, scores = self.n_iter_, list(self.validation_scores_ or [])
        else:
            rng = check_random_state(self.random_state)
            layers = [Dense(units, activation=arch["activation"], batchnorm=arch["batchnorm"],
                            dropout=arch["dropout"]) for units in arch["hidden"]]
            layers.append(Dense(n_outputs))
            model = MLP(X.shape[1], layers, loss=self._loss, dtype=arch["dtype"],
                        seed=int(rng.randint(_SEED_BOUND)))
            optimizer = self._make_optimizer()
            history, n_iter, scores = {}, 0, []

        early = bool(self.early_stopping) and not partial
        validation_data, stopper, callbacks = None, None, []
        if early:
            X, X_val, targets, y_val = self._split_validation(X, targets, rng)
            validation_data = (X_val, y_val)
            stopper = EarlyStopping(monitor="val_loss", patience=int(self.patience),
                                    restore_best=True)
            callbacks.append(_ValidationScore(X_val, y_val, self._validation_scorer()))

        n = X.shape[0]
        batch_size = min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)
        trainer = Trainer(model, optimizer=optimizer, batch_size=batch_size,
                          epochs=1 if partial else int(self.epochs), shuffle=bool(self.shuffle),
                          seed=int(rng.randint(_SEED_BOUND)), l1=float(self.l1),
                          l2=float(self.l2), early_stopping=stopper, callbacks=callbacks,
                          progress=bool(self.verbose))
        for key, values in trainer.fit(X, targets, validation_data=validation_data).items():
            history.setdefault(key, []).extend(values)

        for name, value in target_attributes.items():
            setattr(self, name, value)
        if not incremental:
            self.model_, self._rng, self._architecture = model, rng, arch
            self._inference = {}
            self.best_validation_score_ = None
        self._optimizer = optimizer
        self.history_ = history
        self.n_iter_ = n_iter + trainer.epoch
        self.loss_curve_ = list(history.get("loss", []))
        self.best_loss_ = float(min(self.loss_curve_)) if self.loss_curve_ else None
        if early:
            self.validation_scores_ = scores + callbacks[0].scores
            if stopper.best_epoch >= 1:
                self.best_validation_score_ = callbacks[0].scores[stopper.best_epoch - 1]
                self.best_loss_ = float(stopper.best)
        elif not incremental:
            self.validation_scores_ = None
        self._stop_reason = trainer.stop_reason
        return self

    def _split_validation(self, X, targets, rng):
        seed = int(rng.randint(_SEED_BOUND))
        stratify = targets if self._loss == "cross_entropy" else None
        try:
            parts = train_test_split(X, targets, test_size=float(self.validation_fraction),
                                     random_state=seed, stratify=stratify)
        except ValueError:
            if stratify is None:
                raise
            parts = train_test_split(X, targets, test_size=float(self.validation_fraction),
                                     random_state=seed)
        return [np.ascontiguousarray(p) for p in parts]

    # ----------------------------------------------------------------- prediction
    def _inference_model(self):
        """The network that predictions run on: ``model_`` itself when it is float64, otherwise a
        float64 copy of it, refreshed from ``model_``'s current parameters on every call.

        Evaluating in float64 makes each row's prediction independent of the other rows passed
        with it (BLAS sums in a batch-size-dependent order, which shows at float32 precision).
        """
        model = self.model_
        if model.dtype == np.float64:
            return model
        cache = self.__dict__.get("_inference")
        cache = {} if cache is None else cache
        config = dict(model.get_config(), dtype="float64")
        shadow = cache.get("model")
        if shadow is None or shadow.get_config() != config:
            shadow = cache["model"] = MLP.from_config(config)
        for key, value in model.params.items():
            shadow.params[key][...] = value
        for key, value in model.buffers.items():
            shadow.buffers[key][...] = value
        return shadow

    def _outputs(self, X):
        """Raw network outputs (n_samples, n_outputs) as float64."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        X = _writeable(np.ascontiguousarray(X))
        return self._inference_model().forward(X)

    # ----------------------------------------------------------------- protocol
    def __sklearn_is_fitted__(self):
        return hasattr(self, "model_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # a fixed random_state gives identical fits (weights, shuffling, dropout masks)
        tags.non_deterministic = False
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags

    def __getstate__(self):
        state = dict(super().__getstate__())
        if "_inference" in state:
            state["_inference"] = {}  # the float64 copy is rebuilt from model_ when needed
        return state


_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Units of each hidden layer, first to last; ``()`` gives a linear model.
    activation : str, default="relu"
        Hidden-layer activation: ``linear``, ``sigmoid``, ``tanh``, ``relu``, ``leaky_relu``,
        ``elu``, ``softplus``, ``gelu`` or ``maxout``.
    optimizer : str, default="adam"
        ``sgd``, ``adagrad``, ``rmsprop``, ``adam``, ``adamw`` or ``rprop`` (case-insensitive), with
        torch.optim's update rules.
    learning_rate : float, default=1e-3
        The optimizer's ``lr`` (> 0).
    optimizer_params : dict or None, default=None
        Further optimizer hyper-parameters with torch.optim's names, e.g.
        ``{"betas": (0.9, 0.99)}`` for adam or ``{"momentum": 0.9, "nesterov": True}`` for sgd.
    batch_size : int or "auto", default=200
        Rows per minibatch, capped at n_samples; ``"auto"`` is ``min(200, n_samples)``.
    epochs : int, default=200
        Passes over the training data per ``fit`` (fewer when early stopping ends training).
        With ``warm_start=True`` each ``fit`` trains ``epochs`` more epochs.
    batchnorm : bool, default=False
        Batch-normalize the pre-activations of the hidden layers.
    dropout : float, default=0.0
        Inverted-dropout probability in [0, 1) on the hidden-layer outputs (training only).
    l1, l2 : float, default=0.0, 1e-4
        Penalty ``l1·Σ|W| + l2·ΣW²`` on the weight matrices, added to the mean loss.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified for the classifier),
        stop when the validation loss has not improved for ``patience`` epochs and keep the
        weights of the best epoch. Not used by ``partial_fit``.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping, in (0, 1).
    patience : int, default=10
        Epochs without validation-loss improvement before early stopping ends training.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the dropout masks, the shuffling and the validation split;
        an int gives identical fits on every call.
    verbose : bool, default=False
        Show a per-epoch progress bar (when stderr is a terminal).
    warm_start : bool, default=False
        Continue training the fitted network in ``fit`` (same architecture, optimizer state
        kept) instead of starting anew.
    dtype : {"float32", "float64", "mixed_bfloat16"}, default="float32"
        Precision of the parameters and of training (``mixed_bfloat16``: float32 parameters and
        state with bfloat16 matrix products, see :class:`fastmlp.MLP`). Predictions
        (``predict``, ``predict_proba``, ``score``) evaluate the network in float64 from these
        parameters, so a row's prediction does not depend on the other rows passed with it;
        ``model_.forward`` evaluates in ``dtype``.
    shuffle : bool, default=True
        Reshuffle the training rows every epoch.
"""

_ATTRIBUTES_DOC = """
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` in ``fit`` had string column names (e.g. a DataFrame).
    model_ : fastmlp.MLP
        The trained network.
    n_iter_ : int
        Epochs trained in total (accumulated over ``warm_start`` fits and ``partial_fit`` calls).
    history_ : dict[str, list]
        The :class:`fastmlp.Trainer` history, one entry per epoch: ``loss``, ``lr``,
        ``epoch_time``, and ``val_loss`` (plus ``accuracy``/``val_accuracy`` for the classifier).
    loss_curve_ : list of float
        Training loss (mean loss + penalty) of every epoch.
    best_loss_ : float or None
        The lowest monitored loss: the best validation loss with early stopping, else the
        lowest training loss.
    validation_scores_ : list of float or None
        With early stopping, the score on the held-out data after every epoch (accuracy for the
        classifier, R² for the regressor); None otherwise.
    best_validation_score_ : float or None
        With early stopping, the validation score of the epoch whose weights were kept.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = ("""Multilayer-perceptron classifier trained with softmax cross-entropy.

    The output layer has one unit per class (two for binary problems); ``predict_proba`` is the
    softmax of the outputs.
""" + _PARAMETERS_DOC + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.""" + _ATTRIBUTES_DOC)

    _loss = "cross_entropy"

    def _validate_y_kwargs(self):
        return {}

    def _validate_targets(self, y, first, classes=None):
        check_classification_targets(y)
        if first:
            known = unique_labels(y if classes is None else classes)
            if len(known) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in "
                                 f"the data, but the data contains only one class: "
                                 f"{known[0]!r}")
        else:
            known = self.classes_
            if classes is not None and not np.array_equal(unique_labels(classes), known):
                raise ValueError(f"classes={classes!r} is not the same as on the first call to "
                                 f"partial_fit: {known!r}")
        unseen = np.setdiff1d(unique_labels(known, y), known)  # mixed label types raise here
        if unseen.size:
            raise ValueError(f"y has classes {unseen!r} that are not in classes_ {known!r}")
        encoded = np.searchsorted(known, y).astype(np.int64)
        return encoded, len(known), {"classes_": known}

    def _validation_scorer(self):
        return _accuracy_from_logits

    def fit(self, X, y):
        """Train the network on X (n_samples, n_features) and class labels y (n_samples,).

        Returns self.
        """
        return self._fit(X, y, partial=False)

    def partial_fit(self, X, y, classes=None):
        """Train one epoch on X (n_samples, n_features), y (n_samples,), continuing from the
        current weights and optimizer state.

        classes : array-like of shape (n_classes,)
            All labels that will ever appear; required on the first call (as in scikit-learn),
            optional afterwards (it must then equal ``classes_``).

        Returns self.
        """
        if not hasattr(self, "model_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, partial=True, classes=classes)

    def predict_log_proba(self, X):
        """Log class probabilities (n_samples, n_classes), columns ordered as ``classes_``."""
        z = self._outputs(X)
        z -= z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), rows summing to 1, columns ordered as
        ``classes_``."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X):
        """Predicted class labels (n_samples,), taken from ``classes_``."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        tags.target_tags.multi_output = False
        tags.target_tags.single_output = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = ("""Multilayer-perceptron regressor trained with mean squared error.

    The output layer is linear with one unit per target; y may be (n_samples,) or
    (n_samples, n_targets), and ``predict`` returns the same shape.
""" + _PARAMETERS_DOC + """
    Attributes
    ----------""" + _ATTRIBUTES_DOC)

    _loss = "mse"

    def _validate_y_kwargs(self):
        return {"multi_output": True, "y_numeric": True}

    def _validate_targets(self, y, first, classes=None):
        y = np.asarray(y)
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if y.ndim == 2 and n_outputs == 0:
            raise ValueError("y has no targets (shape (n_samples, 0))")
        dtype = resolve_dtype(self.dtype)
        with np.errstate(over="ignore"):
            targets = np.ascontiguousarray(y.reshape(y.shape[0], n_outputs), dtype=dtype)
        if not np.all(np.isfinite(targets)):
            raise ValueError(f"y contains values too large for {dtype.name}")
        return _writeable(targets), n_outputs, {"_y_ndim": y.ndim}

    def _validation_scorer(self):
        return _r2_from_outputs

    def fit(self, X, y):
        """Train the network on X (n_samples, n_features) and targets y (n_samples,) or
        (n_samples, n_targets). Returns self."""
        return self._fit(X, y, partial=False)

    def partial_fit(self, X, y):
        """Train one epoch on X (n_samples, n_features), y (n_samples,) or
        (n_samples, n_targets), continuing from the current weights and optimizer state.
        Returns self."""
        return self._fit(X, y, partial=True)

    def predict(self, X):
        """Predictions (n_samples,) when fitted on 1-D y, else (n_samples, n_targets); float64."""
        z = self._outputs(X)
        return z[:, 0] if self._y_ndim == 1 else z

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
