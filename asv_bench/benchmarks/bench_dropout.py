"""Inverted-dropout kernels from ``fastmlp.kernels.cpu.dropout`` (mask drawn from the counter-based
generator of ``fastmlp.kernels.cpu.random``). Shape: 512 rows × 4096 units, p = 0.1.
"""

import numpy as np

from fastmlp.kernels.cpu import dropout
from fastmlp.kernels.cpu.random import stream_key

from . import DTYPES

ROWS, UNITS, P = 512, 4096, 0.1


class DropoutKernels:
    params = [list(DTYPES)]
    param_names = ["dtype"]

    def setup(self, dtype):
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((ROWS, UNITS)).astype(dtype)
        self.out = np.empty_like(self.x)
        self.mask = np.empty_like(self.x)
        self.dx = np.empty_like(self.x)
        self.key = stream_key(0, 0, 0)
        self.time_forward(dtype)
        self.time_backward(dtype)

    def time_forward(self, dtype):
        dropout.dropout_forward(self.out, self.mask, self.x, P, self.key)

    def time_backward(self, dtype):
        dropout.dropout_backward(self.dx, self.out, self.mask)
