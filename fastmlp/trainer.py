"""Minibatch training: shuffling, validation, schedules, clipping, early stopping, checkpoints."""

from __future__ import annotations

import time
import warnings

import numpy as np

from . import __version__
from ._checkpoint import read_checkpoint
from ._validation import (
    check_real,
    check_seed,
    check_shuffle_state,
    check_size,
    check_step,
    resolve_dtype,
)
from .callbacks import Callback, EarlyStopping
from .engines.fit_data import FitPlan
from .io import FileFormatError, atomic_save_npz
from .model import MLP
from .optimizers import OPTIMIZERS, Adam, Optimizer
from .progress import epoch_progress
from .schedules import SCHEDULES, Schedule

# checkpoints of format 1 kept a model's optimizer state under this one key, in flat arrays
_FORMAT_1_OPTIMIZER_KEY = "params"


class NonFiniteLossWarning(RuntimeWarning):
    """Training met a NaN/inf loss or gradient, or an update that would have made a parameter or
    optimizer state value NaN/inf, and stopped at the last finite state; the message says which
    value and at which step."""


class Trainer:
    """Trains an :class:`MLP` with minibatches.

    Parameters
    ----------
    model : MLP
    optimizer : Optimizer, default ``Adam(lr=1e-3)``
    batch_size : int
        Rows per step, 1 to 2**31 - 1; the last partial batch of an epoch is used, not dropped
        (with batchnorm, a last batch of one row is merged into the previous batch, since batch
        statistics need two).
    epochs : int
        Total epochs of the run, 0 to 2**62; ``fit`` trains until ``epoch == epochs`` (a resumed
        trainer finishes the run). Raise ``epochs`` to train further.
    shuffle : bool
        Reshuffle the rows each epoch with a generator seeded by ``seed`` (seed 003).
    seed : int
        Seeds the shuffling and the ``validation_split``; 0 to 2**63 - 1.
    l1, l2 : float
        Penalties l1·Σ|W| + l2·ΣW² on the weight matrices (included in every reported loss).
    early_stopping : EarlyStopping, optional
    callbacks : list of Callback
    lr_schedule : Schedule, optional (StepLR, CosineAnnealingLR, ReduceLROnPlateau)
    clip_norm : float, optional
        Rescale the gradient when its global L2 norm exceeds this.
    progress : bool
        Per-epoch progress bar (tqdm if installed) when stderr is a terminal.

    Each step is one compiled call for the whole network (forward, loss, backward, penalties) and
    one for the optimizer update of all parameters. A NaN/inf loss or gradient, or an update that
    would make a parameter or optimizer state value NaN/inf (an overflow of the model's dtype),
    stops training with a :class:`NonFiniteLossWarning` before that step's update: the
    parameters, batchnorm statistics, optimizer state and dropout step are those after the last
    finite step, and the warning names the value. No copy of the model is kept for this: an
    update is computed on copies first only when bounds of the magnitudes it can produce reach
    1/16 of the dtype's largest value. The partial epoch is not counted in ``epoch`` or the
    history.

    With a model on ``device="cuda"``, ``fit`` uploads the training data, the validation data,
    the model and the optimizer state once and keeps them (with the batch buffers, workspace and
    gradients) on the device for the whole run; each epoch only the row order and the optimizer
    coefficients go up and scalars come back. The model and optimizer state are copied to the host
    when ``fit`` returns and, when there are early stopping or callbacks, after each epoch before
    they run, so they read current host arrays. Changes made to the model's host arrays during a
    run (e.g. by a callback) reach the device at the next ``fit``. Data given as GPU arrays
    (``__cuda_array_interface__``: CuPy, PyTorch CUDA tensors) are checked on the device and used
    in place, without a copy (``validation_split`` gathers its two parts on the device).
    """

    FILE_FORMAT = "fastmlp.checkpoint"
    FORMAT_VERSION = 2  # 2: the optimizer state per parameter key (1: one flat "params" key)

    def __init__(self, model, optimizer=None, batch_size=128, epochs=20, shuffle=True, seed=0,
                 l1=0.0, l2=0.0, early_stopping=None, callbacks=(), lr_schedule=None,
                 clip_norm=None, progress=True):
        if not isinstance(model, MLP):
            raise TypeError(f"model must be a fastmlp.MLP; got {type(model).__name__}")
        optimizer = Adam(lr=1e-3) if optimizer is None else optimizer
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastmlp optimizer such as fm.Adam(1e-3); got "
                            f"{type(optimizer).__name__}")
        if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
            raise TypeError("early_stopping must be a fastmlp.EarlyStopping")
        if lr_schedule is not None and not isinstance(lr_schedule, Schedule):
            raise TypeError("lr_schedule must be a fastmlp schedule such as fm.StepLR(10)")
        callbacks = list(callbacks)
        for i, callback in enumerate(callbacks):
            if not callable(getattr(callback, "on_epoch_end", None)):
                raise TypeError(f"callbacks[{i}] must have an on_epoch_end(epoch, metrics) method")
        self.model = model
        self.optimizer = optimizer
        self.batch_size = check_size(batch_size, "batch_size")
        self.epochs = check_step(epochs, "epochs")
        self.shuffle = bool(shuffle)
        self.seed = check_seed(seed)
        self.l1 = check_real(l1, "l1", minimum=0.0)
        self.l2 = check_real(l2, "l2", minimum=0.0)
        self.clip_norm = None if clip_norm is None else check_real(clip_norm, "clip_norm", minimum=0.0)
        if self.clip_norm == 0.0:
            raise ValueError("clip_norm must be > 0 (or None for no clipping)")
        self.early_stopping = early_stopping
        self.callbacks = callbacks
        self.lr_schedule = lr_schedule
        self.progress = bool(progress)
        self.epoch = 0
        self.history = {}
        self.stop_reason = None
        self._rng = np.random.default_rng(self.seed)
        self.engine = model.engine

    @property
    def shuffle_state(self):
        """The state of the generator that shuffles the rows each epoch (seeded by ``seed``), as
        a dict like ``numpy.random.default_rng().bit_generator.state`` (a PCG64 state; a fresh
        copy on every read). Setting it, e.g. to a value read earlier, makes the next epochs
        shuffle as they would have from there; the value is checked first (keys, types and
        ranges) and a bad one raises TypeError/ValueError with the generator unchanged."""
        return self._rng.bit_generator.state

    @shuffle_state.setter
    def shuffle_state(self, state):
        self._rng.bit_generator.state = check_shuffle_state(state)

    # ----------------------------------------------------------------- data
    def _fit_plan(self, validation_split, ranks=1):
        """How this fit cuts its data (checks ``validation_split``): see
        ``engines.fit_data.FitPlan``."""
        return FitPlan(self.batch_size, any(layer.batchnorm for layer in self.model.layers),
                       self.seed, validation_split, ranks)

    # ----------------------------------------------------------------- training
    def _before_training(self):
        """Called by ``fit`` once the fit has begun (its data checked and kept by the engine),
        before the first epoch."""

    def _check_monitors(self, validating):
        """ValueError, before any epoch, when early stopping or the schedule monitors a metric
        that this fit's epochs will not report (e.g. ``val_loss`` without validation data)."""
        names = {"loss", "lr", "epoch_time"}
        if self.model.is_classifier:
            names.add("accuracy")
        if validating:
            names.update({f"val_{name}" for name in names & {"loss", "accuracy"}})
        for owner, hook in (("early_stopping", self.early_stopping),
                            ("lr_schedule", self.lr_schedule)):
            monitor = getattr(hook, "monitor", None)
            if monitor is not None and monitor not in names:
                hint = ("; pass validation_data or validation_split"
                        if monitor.startswith("val_") and not validating else "")
                raise ValueError(f"{owner} monitors {monitor!r}, which this fit does not report "
                                 f"(its metrics: {sorted(names)}){hint}")

    def _callbacks_stop(self, requested):
        """Whether a callback's stop request ends the run."""
        return requested

    def _run_epoch(self, shape):
        """One pass over the fit's data, of ``shape`` (a ``FitShape``), in one engine call;
        returns (loss, accuracy or None, None), or (None, None, why) when a step stopped before
        its update (a NaN/inf loss or gradient, or an update that would make a value NaN/inf)."""
        n = shape.rows
        order = (self._rng.permutation(n) if self.shuffle else np.arange(n)).astype(np.int64)
        result = self.engine.run_epoch(order, self.model.dropout_step, self.l1, self.l2,
                                       0.0 if self.clip_norm is None else self.clip_norm)
        self.model.dropout_step += result.done
        if result.done < shape.steps:
            return None, None, result.failure or "a step did not finish"
        counted = result.counted
        return result.total / n, (result.correct / counted if counted else None), None

    def fit(self, X, y, validation_data=None, validation_split=None):
        """Train until ``self.epochs`` epochs are done (or a stop); returns ``self.history``.

        history keys: ``loss`` and ``accuracy`` (classification) on the training batches as
        trained, ``val_loss`` and ``val_accuracy`` with validation data, ``lr`` and
        ``epoch_time`` (seconds), one entry per epoch.
        """
        if validation_data is not None and validation_split is not None:
            raise ValueError("pass validation_data or validation_split, not both")
        if validation_data is not None and (not isinstance(validation_data, (tuple, list))
                                            or len(validation_data) != 2):
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        plan = self._fit_plan(validation_split)
        self._check_monitors(validation_data is not None or validation_split is not None)
        # the data go to the engine once, which checks and keeps them for the whole fit
        shape = self.engine.begin_fit(X, y, validation_data, plan, self.optimizer)
        hooks = ([self.early_stopping] if self.early_stopping else []) + self.callbacks
        bar = None
        try:
            self._before_training()
            if self.epoch >= self.epochs:
                warnings.warn(f"the trainer has already run its {self.epochs} epochs; raise "
                              f"trainer.epochs to train further", stacklevel=2)
                return self.history
            for hook in hooks:
                if hasattr(hook, "on_train_begin"):
                    hook.on_train_begin(self)
            if self.lr_schedule is not None:
                self.lr_schedule.start(self.optimizer.lr)
            self.stop_reason = None
            bar = epoch_progress(self.progress, self.epochs, self.epoch)
            while self.epoch < self.epochs:
                began = time.perf_counter()
                lr = self.optimizer.lr
                loss, accuracy, failure = self._run_epoch(shape)
                if failure is not None:
                    self.stop_reason = "non-finite loss"
                    warnings.warn(f"non-finite step: training stopped in epoch {self.epoch + 1}, "
                                  f"at step {self.model.dropout_step + 1}: {failure}. The step's "
                                  f"update was not made: the model and optimizer are as after "
                                  f"the last finite step (the partial epoch is not in the "
                                  f"history)",
                                  NonFiniteLossWarning, stacklevel=2)
                    break
                self.epoch += 1
                metrics = {"loss": loss}
                if accuracy is not None:
                    metrics["accuracy"] = accuracy
                if shape.validating:
                    for key, value in self._evaluation_metrics().items():
                        metrics[f"val_{key}"] = value
                metrics["lr"] = lr
                metrics["epoch_time"] = time.perf_counter() - began
                for key, value in metrics.items():
                    self.history.setdefault(key, []).append(value)
                bar.update(self.epoch, metrics)
                if self.lr_schedule is not None:
                    self.optimizer.lr = self.lr_schedule.step(self.epoch, metrics, self.optimizer.lr)
                if hooks:
                    self.engine.sync_host()  # early stopping and callbacks read the host arrays
                if self.early_stopping is not None and self.early_stopping.on_epoch_end(self.epoch,
                                                                                         metrics):
                    self.stop_reason = "early stopping"
                stop_requested = [bool(cb.on_epoch_end(self.epoch, metrics)) for cb in self.callbacks]
                if self.stop_reason is None and self._callbacks_stop(any(stop_requested)):
                    self.stop_reason = "callback"
                if hooks:
                    self.engine.host_changed()  # they may have changed the model or optimizer
                if self.stop_reason is not None:
                    break
        finally:
            if bar is not None:
                bar.close()
            self.engine.end_fit()
        finished = self.stop_reason == "early stopping" or self.epoch >= self.epochs
        if self.early_stopping is not None and self.early_stopping.restore_best and finished:
            self.early_stopping.restore()
        for hook in hooks:
            if hasattr(hook, "on_train_end"):
                hook.on_train_end(self)
        return self.history

    # ----------------------------------------------------------------- evaluation
    def _evaluation_metrics(self, placed=None):
        """Loss (+ penalty) and accuracy from one evaluation-mode pass over placed data, or
        (None) over the current fit's validation data."""
        engine, count = self.engine, self.model.is_classifier
        loss, correct, counted = (engine.evaluate_validation(count, self.l1, self.l2)
                                  if placed is None else
                                  engine.evaluate(placed, count, self.l1, self.l2))
        return self._metrics(loss, correct, counted)

    def _metrics(self, loss, correct, counted):
        """{"loss": loss, "accuracy": correct / counted}, the accuracy only for a classifier."""
        metrics = {"loss": loss}
        if self.model.is_classifier:
            metrics["accuracy"] = correct / counted
        return metrics

    def evaluate(self, X, y):
        """{"loss": mean loss + penalty, "accuracy": …} in evaluation mode (accuracy only for
        classification losses)."""
        return self._evaluation_metrics(self.engine.place(*self.engine.check_inputs(X, y)))

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self, path):
        """Write everything needed to resume bit-identically: model, buffers, optimizer state,
        epoch, history, schedule, early stopping and the shuffling generator. Atomic, no pickle."""
        arrays = self.model.state_arrays()
        opt_state = self.optimizer.state_dict()
        opt_scalars = {}
        for key, value in opt_state.items():
            if isinstance(value, np.ndarray):
                arrays[f"optimizer/{key}"] = value
            else:
                opt_scalars[key] = value
        es = self.early_stopping
        if es is not None and es.best_params is not None:
            arrays["early_stopping/params"] = es.best_params
            arrays["early_stopping/buffers"] = es.best_buffers
        meta = {
            "format": self.FILE_FORMAT, "format_version": self.FORMAT_VERSION,
            "library_version": __version__,
            "model": {"config": self.model.get_config(), "dropout_step": self.model.dropout_step},
            "trainer": {"batch_size": self.batch_size, "epochs": self.epochs,
                        "shuffle": self.shuffle, "seed": self.seed, "l1": self.l1, "l2": self.l2,
                        "clip_norm": self.clip_norm, "progress": self.progress},
            "optimizer": opt_scalars,
            "schedule": None if self.lr_schedule is None else {
                "class": type(self.lr_schedule).__name__, "config": self.lr_schedule.get_config(),
                "state": self.lr_schedule.get_state()},
            "early_stopping": None if es is None else {"config": es.get_config(),
                                                        "state": es.get_state()},
            "epoch": self.epoch, "history": self.history, "stop_reason": self.stop_reason,
            "rng": self.shuffle_state,
        }
        atomic_save_npz(path, arrays, meta)

    @classmethod
    def load_checkpoint(cls, path, callbacks=(), progress=None, **options):
        """Rebuild a Trainer (with its model) from :meth:`save_checkpoint`; callbacks are not stored
        in the file and can be passed again here, and ``options`` go to the constructor of a
        subclass (e.g. ``comm`` of ``fastmlp.parallel.mpi.DistributedTrainer``). Raises FileFormatError for
        bad files."""
        checked = read_checkpoint(path, cls.FILE_FORMAT, cls.FORMAT_VERSION)
        arrays, meta, config = checked.arrays, checked.meta, checked.config
        try:  # everything but the model first: it is the large allocation
            opt_state = dict(meta["optimizer"])
            opt_state.update({k[len("optimizer/"):]: v for k, v in arrays.items()
                              if k.startswith("optimizer/")})
            optimizer = OPTIMIZERS[opt_state["class"]].from_state_dict(opt_state)
            schedule = None
            if meta["schedule"] is not None:
                schedule = SCHEDULES[meta["schedule"]["class"]](**meta["schedule"]["config"])
                schedule.set_state(meta["schedule"]["state"])
            early = None
            if meta["early_stopping"] is not None:
                early = EarlyStopping(**meta["early_stopping"]["config"])
                early.set_state(meta["early_stopping"]["state"])
                if "early_stopping/params" in arrays:
                    dtype = resolve_dtype(config["dtype"])
                    early.best_params = arrays["early_stopping/params"].astype(dtype)
                    early.best_buffers = arrays["early_stopping/buffers"].astype(dtype)
            model = MLP(**config)
            model.load_state_arrays({k: v for k, v in arrays.items()
                                     if k.startswith(("params/", "buffers/"))}, repr(str(path)))
            model.dropout_step = meta["model"]["dropout_step"]
            if meta["format_version"] == 1 and _FORMAT_1_OPTIMIZER_KEY in optimizer.state:
                optimizer.split_flat_state(_FORMAT_1_OPTIMIZER_KEY, model.layout.param_slots)
            stored = dict(meta["trainer"])
            if progress is not None:
                stored["progress"] = progress
            trainer = cls(model, optimizer=optimizer, early_stopping=early, callbacks=callbacks,
                          lr_schedule=schedule, **stored, **options)
            trainer.epoch = meta["epoch"]
            trainer.history = {k: list(v) for k, v in meta["history"].items()}
            trainer.stop_reason = meta["stop_reason"]
            trainer.shuffle_state = meta["rng"]
        except FileFormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise FileFormatError(f"{str(path)!r} is not a consistent fastmlp checkpoint: "
                                  f"{exc!r}") from None
        return trainer


__all__ = ["Trainer", "NonFiniteLossWarning", "Callback"]
