"""Optimizer updates through the public ``Optimizer.step`` on one flat array, as the Trainer calls
it (``{"params": flat}``): 669,706 elements, the parameter count of 784-512-512-10.
"""

import numpy as np

import fastmlp as fm

from . import DTYPES

SIZE = 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
OPTIMIZERS = {
    "SGD": lambda: fm.SGD(lr=1e-3),
    "SGD-nesterov": lambda: fm.SGD(lr=1e-3, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "Adagrad": lambda: fm.Adagrad(lr=1e-2),
    "RMSprop": lambda: fm.RMSProp(lr=1e-3),
    "RMSprop-centered-momentum": lambda: fm.RMSProp(lr=1e-3, centered=True, momentum=0.9),
    "Adam": lambda: fm.Adam(lr=1e-3),
    "Adam-amsgrad": lambda: fm.Adam(lr=1e-3, amsgrad=True),
    "AdamW": lambda: fm.AdamW(lr=1e-3),
    "Rprop": lambda: fm.Rprop(lr=1e-2),
}


class OptimizerStep:
    params = [list(OPTIMIZERS), list(DTYPES)]
    param_names = ["optimizer", "dtype"]

    def setup(self, optimizer, dtype):
        rng = np.random.default_rng(0)
        self.params = {"params": (0.05 * rng.standard_normal(SIZE)).astype(dtype)}
        self.grads = {"params": (1e-3 * rng.standard_normal(SIZE)).astype(dtype)}
        self.optimizer = OPTIMIZERS[optimizer]()
        self.optimizer.step(self.params, self.grads)

    def time_step(self, optimizer, dtype):
        self.optimizer.step(self.params, self.grads)
