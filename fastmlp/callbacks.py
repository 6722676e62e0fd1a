"""Epoch-end hooks for :class:`fastmlp.Trainer`, and early stopping (seed 003)."""

from __future__ import annotations

import math

from ._repr import ConstructorRepr
from ._validation import check_int, check_real


class Callback(ConstructorRepr):
    """Subclass and override what you need.

    ``on_train_begin(trainer)`` runs when ``fit`` starts; ``on_epoch_end(epoch, metrics)`` after each
    epoch (``epoch`` counts completed epochs from 1; ``metrics`` holds loss, accuracy, val_loss, …)
    and may return True to request that training stop; ``on_train_end(trainer)`` when fit returns.

    A callback prints as ``ClassName(argument=value, ...)``: the arguments of its ``__init__``
    whose values are stored in attributes of the same names.
    """

    def on_train_begin(self, trainer):
        pass

    def on_epoch_end(self, epoch, metrics):
        return False

    def on_train_end(self, trainer):
        pass


class EarlyStopping(Callback):
    """Stop when the monitored metric has not improved by more than ``min_delta`` for ``patience``
    epochs. At every new best value a copy of the weights (and batchnorm statistics) is kept;
    with ``restore_best`` they are put back when training ends, so the model is the one of the
    best epoch — the seed-003 rule "keep a copy of the weights at each new validation low".

    ``mode`` is "min" (losses, default) or "max" (accuracies).
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, restore_best=True, mode="min"):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a metric name such as 'val_loss'; got {monitor!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}")
        self.monitor = monitor
        self.patience = check_int(patience, "patience", minimum=0)
        self.min_delta = check_real(min_delta, "min_delta", minimum=0.0)
        self.restore_best = bool(restore_best)
        self.mode = mode
        self.reset()

    def reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.wait = 0
        self.stopped_epoch = 0
        self.best_params = None
        self.best_buffers = None
        self._model = None

    def get_config(self):
        return {"monitor": self.monitor, "patience": self.patience, "min_delta": self.min_delta,
                "restore_best": self.restore_best, "mode": self.mode}

    def get_state(self):
        finite = math.isfinite(self.best)
        return {"best": self.best if finite else None, "best_epoch": self.best_epoch,
                "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def set_state(self, state):
        default = math.inf if self.mode == "min" else -math.inf
        self.best = default if state["best"] is None else state["best"]
        self.best_epoch, self.wait = state["best_epoch"], state["wait"]
        self.stopped_epoch = state["stopped_epoch"]

    def on_train_begin(self, trainer):
        self._model = trainer.model

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, metrics):
        if self.monitor not in metrics:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which is not among the epoch "
                             f"metrics {sorted(metrics)}; pass validation data or change monitor")
        value = metrics[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_params = self._model.params.flat.copy()
            self.best_buffers = self._model.buffers.flat.copy()
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def restore(self):
        """Put the best weights back into the model (no-op before the first epoch)."""
        if self.best_params is not None:
            self._model.params.flat[...] = self.best_params
            self._model.buffers.flat[...] = self.best_buffers
