"""Learning-rate schedules, stepped once per epoch, with torch.optim.lr_scheduler's names.

Each schedule sees the optimizer's learning rate when training starts (``base_lr``) and, after
epoch e (1-based count of completed epochs), returns the learning rate for the next epoch:

- ``StepLR(step_size, gamma=0.1)``: base_lr · gamma^⌊e / step_size⌋
- ``CosineAnnealingLR(T_max, eta_min=0)``: eta_min + (base_lr - eta_min)(1 + cos(π·min(e, T_max)/T_max))/2
- ``ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=10, threshold=1e-4, min_lr=0,
  cooldown=0)``: multiplies the rate by ``factor`` (not below ``min_lr``) after ``patience`` epochs
  without a relative improvement of ``threshold`` of the monitored metric (lower is better).

State (``get_state``/``set_state``) is JSON-able so checkpoints can carry it.
"""

from __future__ import annotations

import math

from ._repr import ConstructorRepr
from ._validation import check_int, check_real


class Schedule(ConstructorRepr):
    """Base class: ``start(lr)`` once, then ``step(epoch, metrics) -> lr`` after each epoch."""

    def __init__(self):
        self.base_lr = None

    def start(self, lr):
        if self.base_lr is None:
            self.base_lr = float(lr)

    def step(self, epoch, metrics, lr):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    def get_state(self):
        return {"base_lr": self.base_lr}

    def set_state(self, state):
        self.base_lr = state["base_lr"]


class StepLR(Schedule):
    def __init__(self, step_size, gamma=0.1):
        super().__init__()
        self.step_size = check_int(step_size, "step_size", minimum=1)
        self.gamma = check_real(gamma, "gamma", minimum=0.0)

    def step(self, epoch, metrics, lr):
        return self.base_lr * self.gamma ** (epoch // self.step_size)

    def get_config(self):
        return {"step_size": self.step_size, "gamma": self.gamma}


class CosineAnnealingLR(Schedule):
    def __init__(self, T_max, eta_min=0.0):  # noqa: N803 (torch's name)
        super().__init__()
        self.T_max = check_int(T_max, "T_max", minimum=1)
        self.eta_min = check_real(eta_min, "eta_min", minimum=0.0)

    def step(self, epoch, metrics, lr):
        progress = min(epoch, self.T_max) / self.T_max
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * progress)) / 2

    def get_config(self):
        return {"T_max": self.T_max, "eta_min": self.eta_min}


class ReduceLROnPlateau(Schedule):
    def __init__(self, monitor="val_loss", factor=0.1, patience=10, threshold=1e-4, min_lr=0.0,
                 cooldown=0):
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a metric name such as 'val_loss'; got {monitor!r}")
        self.monitor = monitor
        self.factor = check_real(factor, "factor", minimum=0.0)
        if not self.factor < 1.0:
            raise ValueError(f"factor must be < 1; got {factor}")
        self.patience = check_int(patience, "patience", minimum=0)
        self.threshold = check_real(threshold, "threshold", minimum=0.0)
        self.min_lr = check_real(min_lr, "min_lr", minimum=0.0)
        self.cooldown = check_int(cooldown, "cooldown", minimum=0)
        self.best = math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0

    def step(self, epoch, metrics, lr):
        if self.monitor not in metrics:
            raise ValueError(f"ReduceLROnPlateau monitors {self.monitor!r}, which is not among the "
                             f"epoch metrics {sorted(metrics)}")
        value = metrics[self.monitor]
        if value < self.best * (1 - self.threshold):  # torch's mode='min', threshold_mode='rel'
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            lr = max(lr * self.factor, self.min_lr)
            self.cooldown_left = self.cooldown
            self.bad_epochs = 0
        return lr

    def get_config(self):
        return {"monitor": self.monitor, "factor": self.factor, "patience": self.patience,
                "threshold": self.threshold, "min_lr": self.min_lr, "cooldown": self.cooldown}

    def get_state(self):
        return {"base_lr": self.base_lr, "best": self.best if math.isfinite(self.best) else None,
                "bad_epochs": self.bad_epochs, "cooldown_left": self.cooldown_left}

    def set_state(self, state):
        self.base_lr = state["base_lr"]
        self.best = math.inf if state["best"] is None else state["best"]
        self.bad_epochs = state["bad_epochs"]
        self.cooldown_left = state["cooldown_left"]


SCHEDULES = {cls.__name__: cls for cls in (StepLR, CosineAnnealingLR, ReduceLROnPlateau)}
