"""Dense layer kernels with the activation fused in, per activation: ``dense_activation_forward``
and ``dense_activation_backward`` (input gradient included) from ``fastmlp.kernels.cpu.dense``.

Shape: a batch of 128 rows through a 512 → 512 layer (the 784-512-512-10 network's hidden layer);
maxout uses 2 pieces (a 512 → 1024 product).
"""

import numpy as np

from fastmlp.kernels.contract import ACTIVATION_CODES
from fastmlp.kernels.cpu import dense

from . import DTYPES

ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu",
               "maxout")
ALPHA = {"leaky_relu": 0.01, "elu": 1.0}
ROWS, FAN_IN, UNITS = 128, 512, 512


class DenseKernels:
    params = [list(ACTIVATIONS), list(DTYPES)]
    param_names = ["activation", "dtype"]

    def setup(self, activation, dtype):
        if activation not in ACTIVATION_CODES:
            raise NotImplementedError(f"no activation {activation!r} in this version")
        rng = np.random.default_rng(0)
        self.code = ACTIVATION_CODES[activation]
        self.alpha = float(ALPHA.get(activation, 0.0))
        self.pieces = 2 if activation == "maxout" else 1
        width = UNITS * self.pieces
        self.x = rng.standard_normal((ROWS, FAN_IN)).astype(dtype)
        self.W = (rng.standard_normal((FAN_IN, width)) * np.sqrt(2.0 / FAN_IN)).astype(dtype)
        self.b = np.zeros(width, dtype=dtype)
        self.pre = np.empty((ROWS, width), dtype=dtype)
        self.out = np.empty((ROWS, UNITS), dtype=dtype)
        self.dout = rng.standard_normal((ROWS, UNITS)).astype(dtype)
        self.dpre = np.empty((ROWS, width), dtype=dtype)
        self.dx = np.empty((ROWS, FAN_IN), dtype=dtype)
        self.dW = np.empty((FAN_IN, width), dtype=dtype)
        self.db = np.empty(width, dtype=dtype)
        self.time_forward(activation, dtype)
        self.time_backward(activation, dtype)

    def time_forward(self, activation, dtype):
        dense.dense_activation_forward(self.out, self.pre, self.x, self.W, self.b, self.code,
                                       self.alpha, self.pieces)

    def time_backward(self, activation, dtype):
        dense.dense_activation_backward(self.dx, self.dW, self.db, self.dpre, self.dout, self.x,
                                        self.W, self.pre, self.out, self.code, self.alpha,
                                        self.pieces, True)
