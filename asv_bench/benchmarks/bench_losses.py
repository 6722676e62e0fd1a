"""Loss kernels (mean loss and the gradient of the logits in one pass) through the dispatcher
``fastmlp.kernels.cpu.losses.loss_forward_backward``, as the network kernel calls it.

Shape: 4096 rows × 10 outputs. ``cross_entropy_probs`` is cross-entropy against probability rows.
"""

import numpy as np

from fastmlp.kernels.cpu import losses

from . import DTYPES

ROWS, CLASSES = 4096, 10
LOSSES = ("cross_entropy", "cross_entropy_probs", "binary_cross_entropy", "mse", "hinge")
LABEL_LOSSES = ("cross_entropy", "hinge")


class LossKernels:
    params = [list(LOSSES), list(DTYPES)]
    param_names = ["loss", "dtype"]

    def setup(self, loss, dtype):
        self.code = getattr(losses, loss.upper(), None)
        if self.code is None:
            raise NotImplementedError(f"no loss {loss!r} in this version")
        rng = np.random.default_rng(0)
        self.z = (3.0 * rng.standard_normal((ROWS, CLASSES))).astype(dtype)
        self.dz = np.empty_like(self.z)
        if loss in LABEL_LOSSES:
            self.labels = rng.integers(0, CLASSES, size=ROWS).astype(np.int64)
            self.targets = np.zeros((0, CLASSES), dtype=dtype)
        else:
            self.labels = np.zeros(0, dtype=np.int64)
            if loss == "cross_entropy_probs":
                targets = rng.dirichlet(np.ones(CLASSES), size=ROWS)
            elif loss == "binary_cross_entropy":
                targets = rng.uniform(0.0, 1.0, size=(ROWS, CLASSES))
            else:
                targets = rng.standard_normal((ROWS, CLASSES))
            self.targets = targets.astype(dtype)
        self.time_forward_backward(loss, dtype)

    def time_forward_backward(self, loss, dtype):
        losses.loss_forward_backward(self.dz, self.z, self.labels, self.targets, self.code)
