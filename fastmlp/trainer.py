"""Minibatch training: shuffling, validation, schedules, clipping, early stopping, checkpoints."""

from __future__ import annotations

import time
import warnings

import numpy as np

from . import __version__
from ._validation import check_int, check_real
from .callbacks import Callback, EarlyStopping
from .io import FileFormatError, atomic_save_npz, load_npz
from ._layout import workspace_layout
from .kernels.cpu.metrics import count_correct
from . import _records as records
from .kernels.cpu.network import network_penalty
from ._team import run_task
from .kernels.cpu.train import TASK_EPOCH
from .model import MLP
from .optimizers import OPTIMIZERS, Adam, Optimizer
from .progress import epoch_progress
from .schedules import SCHEDULES, Schedule

_FLAT_KEY = "params"


class NonFiniteLossWarning(RuntimeWarning):
    """Training met a NaN/inf loss or gradient and stopped at the last finite state."""


class Trainer:
    """Trains an :class:`MLP` with minibatches.

    Parameters
    ----------
    model : MLP
    optimizer : Optimizer, default ``Adam(lr=1e-3)``
    batch_size : int
        Rows per step; the last partial batch of an epoch is used, not dropped (with batchnorm, a
        last batch of one row is merged into the previous batch, since batch statistics need two).
    epochs : int
        Total epochs of the run; ``fit`` trains until ``epoch == epochs`` (a resumed trainer
        finishes the run). Raise ``epochs`` to train further.
    shuffle : bool
        Reshuffle the rows each epoch with a generator seeded by ``seed`` (seed 003).
    seed : int
        Seeds the shuffling and the ``validation_split``.
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
    one for the optimizer update of all parameters. A NaN/inf loss or gradient stops training with
    a :class:`NonFiniteLossWarning` before that step's update: the parameters, batchnorm statistics,
    optimizer state and dropout step are those after the last finite step (no copy of the model is
    kept for this, so training needs no memory beyond the gradients); the partial epoch is not
    counted in ``epoch`` or the history.

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
    FORMAT_VERSION = 1

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
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.epochs = check_int(epochs, "epochs", minimum=0)
        self.shuffle = bool(shuffle)
        self.seed = check_int(seed, "seed", minimum=0)
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
        self._grads = None  # host gradients of the CPU path, allocated on its first epoch
        self._buffers_cache = None  # (layout key, batch buffers) of _epoch_buffers
        # device="cuda": the fit's device arrays, made on its first epoch / first validation
        self._cuda_state = self._cuda_validation = None

    # ----------------------------------------------------------------- data
    def _prepare(self, X, y, name_X="X", name_y="y"):
        return self.model._checked_inputs(X, y, name_X, name_y)

    def _split(self, X, labels, targets, validation_split):
        fraction = check_real(validation_split, "validation_split")
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"validation_split must be in (0, 1); got {validation_split}")
        n = X.shape[0]
        n_val = int(round(n * fraction))
        if n_val < 1 or n - n_val < 1:
            raise ValueError(f"validation_split={validation_split} leaves an empty training or "
                             f"validation set for {n} samples")
        order = np.random.default_rng([self.seed, 1]).permutation(n)
        train, val = np.sort(order[n_val:]), np.sort(order[:n_val])

        if not all(isinstance(a, np.ndarray) for a in (X, labels, targets)):  # GPU inputs
            from ._device_inputs import take_rows
            data = self.model._device_data(X, labels, targets)
            return take_rows(*data, train), take_rows(*data, val)

        def pick(rows):
            return (X[rows], labels[rows] if labels.size else labels,
                    targets[rows] if targets.shape[0] else targets)
        return pick(train), pick(val)

    def _batches(self, n):
        """(steps + 1,) int64 row boundaries of the batches of an epoch."""
        size = min(self.batch_size, n)
        bounds = list(range(0, n, size)) + [n]
        has_bn = any(layer.batchnorm for layer in self.model.layers)
        if has_bn and len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
            del bounds[-2]  # a last batch of one row joins the previous batch
        if has_bn and bounds[1] - bounds[0] < 2:
            raise ValueError("batchnorm needs at least 2 training samples per batch")
        return np.asarray(bounds, dtype=np.int64)

    # ----------------------------------------------------------------- training
    def _before_training(self, X, labels, targets, bounds):
        """Called by ``fit`` once the data and batches are checked, before the first epoch."""

    def _callbacks_stop(self, requested):
        """Whether a callback's stop request ends the run."""
        return requested

    def _epoch_buffers(self, X, labels, targets, bounds):
        """Batch and workspace arrays for this data/batch layout, allocated once per fit."""
        model = self.model
        sizes = np.diff(bounds)
        rows = int(sizes.max())
        parts = model._parts(int(sizes[0]), backward=True) if model.device == "cpu" else 1
        key = (X.shape[1], int(sizes[0]), int(sizes[-1]), rows, bool(labels.size),
               targets.shape[1] if targets.shape[0] else 0, parts)
        cached = self._buffers_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        layer_int = model._layout.layer_int
        ws_off_full, _ = workspace_layout(layer_int, int(sizes[0]), parts)
        ws_off_last, _ = workspace_layout(layer_int, int(sizes[-1]), parts)
        _, ws_size = workspace_layout(layer_int, rows)
        if self._grads is None and model.device == "cpu":
            self._grads = np.zeros_like(model._params)
        batch = (np.empty((rows, X.shape[1]), dtype=model.dtype),
                 np.empty(rows if labels.size else 0, dtype=np.int64),
                 np.empty((rows if targets.shape[0] else 0, targets.shape[1]), dtype=model.dtype))
        buffers = (records.workspace(np.zeros(ws_size, dtype=model.dtype), ws_off_full, parts,
                                     model.dtype, grads=self._grads, batch=batch,
                                     ws_off_last=ws_off_last, saved=np.empty_like(model._buffers)),
                   parts)
        self._buffers_cache = (key, buffers)
        return buffers

    def _cuda_epoch_state(self, X, labels, targets, bounds, host_opt):
        """Device arrays kept across the epochs of a fit on ``device="cuda"``: the training data,
        the batch buffers, the workspace, the gradients and the optimizer state, created (and the
        model and the optimizer state ``host_opt`` = (s0, s1, s2) uploaded) on the first epoch
        over this ``X``/``bounds``."""
        from numba import cuda
        state = self._cuda_state
        if (state is not None and state["X"] is X and state["labels"] is labels
                and state["targets"] is targets and np.array_equal(state["bounds"], bounds)):
            return state
        model = self.model
        model._upload()
        d_X, d_labels, d_targets = model._device_data(X, labels, targets)
        work, _ = self._epoch_buffers(X, labels, targets, bounds)
        Xb, lb, tb, ws_off_full, ws_off_last, ws = (work.Xb, work.lb, work.tb, work.ws_off,
                                                    work.ws_off_last, work.ws)
        state = {
            "X": X, "labels": labels, "targets": targets, "bounds": bounds.copy(),
            "data": (d_X, d_labels, d_targets),
            "batch": (cuda.device_array(Xb.shape, dtype=Xb.dtype),
                      cuda.device_array(lb.shape, dtype=lb.dtype),
                      cuda.device_array(tb.shape, dtype=tb.dtype)),
            "ws": (ws_off_full, ws_off_last, cuda.to_device(np.zeros_like(ws))),
            "grads": cuda.to_device(np.zeros_like(model._params)),
            "host_opt": host_opt,
            "opt": tuple(cuda.to_device(s) if s.size else cuda.device_array(0, dtype=s.dtype)
                         for s in host_opt),
        }
        self._cuda_state = state
        return state

    def _sync_host(self):
        """device="cuda": copy the model and optimizer state to the host arrays when the device
        holds newer values (the model's ``_device_ahead``)."""
        model, state = self.model, self._cuda_state
        if model.device != "cuda" or not model._device_ahead:
            return
        model._device_ahead = False
        model._download()
        if state is not None:
            for d_s, s in zip(state["opt"], state["host_opt"]):
                if s.size:
                    d_s.copy_to_host(s)

    def _run_epoch_cuda(self, X, labels, targets, code, bounds):
        """:meth:`_run_epoch` on the device. Only the row order and the optimizer coefficients go
        up and the epoch's scalars come back; the model and optimizer state stay on the device
        (``fit`` copies them to the host when host code needs them: see :meth:`_sync_host`)."""
        from numba import cuda

        from .kernels.cuda.train import train_epoch as cuda_train_epoch
        model, lay, opt = self.model, self.model._layout, self.optimizer
        n = X.shape[0]
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        steps = bounds.shape[0] - 1
        opt_code, s0, s1, s2, flag, init = opt.fused_arguments(_FLAT_KEY, model._params)
        state = self._cuda_epoch_state(X, labels, targets, bounds, (s0, s1, s2))
        coefficients = opt.coefficient_table(_FLAT_KEY, steps, model.dtype)
        ws_off_full, ws_off_last, ws = state["ws"]
        d_s0, d_s1, d_s2 = state["opt"]
        done, total, correct, counted = cuda_train_epoch(
            *state["data"], code, cuda.to_device(order.astype(np.int64)), bounds, *state["batch"],
            model._d_params, state["grads"], model._d_buffers, lay.layer_int, lay.layer_float,
            ws_off_full, ws_off_last, ws, model.seed, model.dropout_step, self.l1, self.l2,
            0.0 if self.clip_norm is None else self.clip_norm, opt_code, d_s0, d_s1, d_s2, flag,
            init, cuda.to_device(coefficients))
        model._device_ahead = True
        opt.advance(_FLAT_KEY, done)
        model.dropout_step += done
        if done < steps:
            return None
        return total / n, (correct / counted if counted else None)

    def _run_epoch(self, X, labels, targets, code, bounds):
        """One pass over the data in one compiled call; returns (loss, accuracy or None), or None
        when a step met a NaN/inf loss or gradient (no update was made by that step)."""
        if self.model.device == "cuda":
            return self._run_epoch_cuda(X, labels, targets, code, bounds)
        model, lay, opt = self.model, self.model._layout, self.optimizer
        n = X.shape[0]
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        work, parts = self._epoch_buffers(X, labels, targets, bounds)
        steps = bounds.shape[0] - 1
        fused = opt.fused_arguments(_FLAT_KEY, model._params)
        coefficients = opt.coefficient_table(_FLAT_KEY, steps, model.dtype)
        work = run_task(TASK_EPOCH, records.network(model._params, model._buffers, lay),
                        records.data(X, labels, targets, code, order.astype(np.int64), bounds),
                        work, records.update(fused, coefficients),
                        records.run(model.seed, model.dropout_step, self.l1, self.l2,
                                    0.0 if self.clip_norm is None else self.clip_norm, parts,
                                    training=True, update_stats=True, count=True, gathered=True))
        done, total, correct, counted = (int(work.result[0]), float(work.result[1]),
                                         int(work.result[2]), int(work.result[3]))
        opt.advance(_FLAT_KEY, done)
        model.dropout_step += done
        if done < steps:
            return None
        return total / n, (correct / counted if counted else None)

    def fit(self, X, y, validation_data=None, validation_split=None):
        """Train until ``self.epochs`` epochs are done (or a stop); returns ``self.history``.

        history keys: ``loss`` and ``accuracy`` (classification) on the training batches as
        trained, ``val_loss`` and ``val_accuracy`` with validation data, ``lr`` and
        ``epoch_time`` (seconds), one entry per epoch.
        """
        X, labels, targets, code = self._prepare(X, y)
        if validation_data is not None and validation_split is not None:
            raise ValueError("pass validation_data or validation_split, not both")
        val = None
        if validation_split is not None:
            (X, labels, targets), val_rows = self._split(X, labels, targets, validation_split)
            val = (*val_rows, code)
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            val = self._prepare(*validation_data, name_X="validation_data X",
                                name_y="validation_data y")
        bounds = self._batches(X.shape[0])
        self._before_training(X, labels, targets, bounds)
        if self.epoch >= self.epochs:
            warnings.warn(f"the trainer has already run its {self.epochs} epochs; raise "
                          f"trainer.epochs to train further", stacklevel=2)
            return self.history
        hooks = ([self.early_stopping] if self.early_stopping else []) + self.callbacks
        for hook in hooks:
            if hasattr(hook, "on_train_begin"):
                hook.on_train_begin(self)
        if self.lr_schedule is not None:
            self.lr_schedule.start(self.optimizer.lr)
        self.stop_reason = None
        self._cuda_state = self._cuda_validation = None
        bar = epoch_progress(self.progress, self.epochs, self.epoch)
        try:
            while self.epoch < self.epochs:
                began = time.perf_counter()
                lr = self.optimizer.lr
                result = self._run_epoch(X, labels, targets, code, bounds)
                if result is None:
                    self.stop_reason = "non-finite loss"
                    warnings.warn(f"non-finite loss or gradient in epoch {self.epoch + 1}; training "
                                  f"stopped before that step's update, with the model and optimizer "
                                  f"as after the last finite step (the partial epoch is not in the "
                                  f"history)", NonFiniteLossWarning, stacklevel=2)
                    break
                self.epoch += 1
                metrics = {"loss": result[0]}
                if result[1] is not None:
                    metrics["accuracy"] = result[1]
                if val is not None:
                    for key, value in self._evaluate_prepared(*val).items():
                        metrics[f"val_{key}"] = value
                metrics["lr"] = lr
                metrics["epoch_time"] = time.perf_counter() - began
                for key, value in metrics.items():
                    self.history.setdefault(key, []).append(value)
                bar.update(self.epoch, metrics)
                if self.lr_schedule is not None:
                    self.optimizer.lr = self.lr_schedule.step(self.epoch, metrics, self.optimizer.lr)
                if hooks:
                    self._sync_host()  # early stopping and callbacks read the host arrays
                if self.early_stopping is not None and self.early_stopping.on_epoch_end(self.epoch,
                                                                                         metrics):
                    self.stop_reason = "early stopping"
                stop_requested = [bool(cb.on_epoch_end(self.epoch, metrics)) for cb in self.callbacks]
                if self.stop_reason is None and self._callbacks_stop(any(stop_requested)):
                    self.stop_reason = "callback"
                if self.stop_reason is not None:
                    break
        finally:
            bar.close()
            self._sync_host()
            self._cuda_state = self._cuda_validation = None
        finished = self.stop_reason == "early stopping" or self.epoch >= self.epochs
        if self.early_stopping is not None and self.early_stopping.restore_best and finished:
            self.early_stopping.restore()
        for hook in hooks:
            if hasattr(hook, "on_train_end"):
                hook.on_train_end(self)
        return self.history

    # ----------------------------------------------------------------- evaluation
    def _evaluate_prepared(self, X, labels, targets, code):
        """Loss (+ penalty) and accuracy of validated arrays from one forward pass; on the device
        (device="cuda") the arrays go up once per fit and only scalars come back."""
        model = self.model
        if model.device == "cpu":
            loss, z = model._evaluation_loss_and_output(X, labels, targets, code)
            loss += float(network_penalty(model._params, model._layout.layer_int, self.l1, self.l2))
            correct, counted = count_correct(z, labels, targets, code)
        else:
            from .kernels.cuda.network import network_penalty as cuda_network_penalty
            cached = self._cuda_validation
            if cached is None or cached[0] is not X:
                cached = (X, model._device_data(X, labels, targets))
                if self._cuda_state is not None:  # inside fit: keep them
                    self._cuda_validation = cached
            model._upload()
            loss, correct, counted = model._evaluation_cuda(*cached[1], code,
                                                            count=model.is_classifier)
            loss += float(cuda_network_penalty(model._d_params, model._layout.layer_int, self.l1,
                                               self.l2))
        metrics = {"loss": loss}
        if model.is_classifier:
            metrics["accuracy"] = correct / counted
        return metrics

    def evaluate(self, X, y):
        """{"loss": mean loss + penalty, "accuracy": …} in evaluation mode (accuracy only for
        classification losses)."""
        X, labels, targets, code = self._prepare(X, y)
        return self._evaluate_prepared(X, labels, targets, code)

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
            "rng": self._rng.bit_generator.state,
        }
        atomic_save_npz(path, arrays, meta)

    @classmethod
    def load_checkpoint(cls, path, callbacks=(), progress=None, **options):
        """Rebuild a Trainer (with its model) from :meth:`save_checkpoint`; callbacks are not stored
        in the file and can be passed again here, and ``options`` go to the constructor of a
        subclass (e.g. ``comm`` of ``fastmlp.mpi.DistributedTrainer``). Raises FileFormatError for
        bad files."""
        arrays, meta = load_npz(path, cls.FILE_FORMAT, cls.FORMAT_VERSION)
        try:
            model = MLP.from_config(meta["model"]["config"])
            model.load_state_arrays({k: v for k, v in arrays.items()
                                     if k.startswith(("params/", "buffers/"))}, repr(str(path)))
            model.dropout_step = int(meta["model"]["dropout_step"])
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
                    early.best_params = arrays["early_stopping/params"].astype(model.dtype)
                    early.best_buffers = arrays["early_stopping/buffers"].astype(model.dtype)
            stored = dict(meta["trainer"])
            if progress is not None:
                stored["progress"] = progress
            trainer = cls(model, optimizer=optimizer, early_stopping=early, callbacks=callbacks,
                          lr_schedule=schedule, **stored, **options)
            trainer.epoch = int(meta["epoch"])
            trainer.history = {k: list(v) for k, v in meta["history"].items()}
            trainer.stop_reason = meta["stop_reason"]
            trainer._rng.bit_generator.state = meta["rng"]
        except FileFormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise FileFormatError(f"{str(path)!r} is not a consistent fastmlp checkpoint: "
                                  f"{exc!r}") from None
        return trainer


__all__ = ["Trainer", "NonFiniteLossWarning", "Callback"]
