"""Batch-normalization kernels from ``fastmlp.kernels.cpu.batchnorm``: training forward (batch
statistics and running-statistics update), evaluation forward, training and evaluation backward.

Shape: 512 rows × 512 features.
"""

import numpy as np

from fastmlp.kernels.cpu import batchnorm

from . import DTYPES

ROWS, FEATURES = 512, 512
EPS, MOMENTUM = 1e-5, 0.1


class BatchNormKernels:
    params = [list(DTYPES)]
    param_names = ["dtype"]

    def setup(self, dtype):
        rng = np.random.default_rng(0)
        shape = (ROWS, FEATURES)
        self.x = rng.standard_normal(shape).astype(dtype)
        self.dy = rng.standard_normal(shape).astype(dtype)
        self.y = np.empty(shape, dtype=dtype)
        self.xhat = np.empty(shape, dtype=dtype)
        self.dx = np.empty(shape, dtype=dtype)
        self.gamma = np.ones(FEATURES, dtype=dtype)
        self.beta = np.zeros(FEATURES, dtype=dtype)
        self.running_mean = np.zeros(FEATURES, dtype=dtype)
        self.running_var = np.ones(FEATURES, dtype=dtype)
        self.mean = np.empty(FEATURES, dtype=dtype)
        self.invstd = np.empty(FEATURES, dtype=dtype)
        self.dgamma = np.empty(FEATURES, dtype=dtype)
        self.dbeta = np.empty(FEATURES, dtype=dtype)
        self.time_forward_eval(dtype)
        self.time_backward_eval(dtype)
        self.time_forward_train(dtype)
        self.time_backward_train(dtype)

    def time_forward_train(self, dtype):
        batchnorm.batchnorm_forward_train(self.y, self.xhat, self.mean, self.invstd, self.x,
                                          self.gamma, self.beta, self.running_mean,
                                          self.running_var, MOMENTUM, EPS, True)

    def time_forward_eval(self, dtype):
        batchnorm.batchnorm_forward_eval(self.y, self.xhat, self.invstd, self.x, self.gamma,
                                         self.beta, self.running_mean, self.running_var, EPS)

    def time_backward_train(self, dtype):
        batchnorm.batchnorm_backward(self.dx, self.dgamma, self.dbeta, self.dy, self.xhat,
                                     self.gamma, self.invstd)

    def time_backward_eval(self, dtype):
        batchnorm.batchnorm_backward_eval(self.dx, self.dgamma, self.dbeta, self.dy, self.xhat,
                                          self.gamma, self.invstd)
