"""A training step's float32 products through OpenBLAS and through fastmlp's register tiles
(``fastmlp.kernels.cpu.tiles``), one block per product as a single thread computes it.

Shapes: the hidden layer of the 40-256-256-10 network (batch 32, 256 → 256), which takes the
tiles, and of the MNIST-1D recipe's 40-100-100-10 network (batch 100, 100 → 100), which keeps
BLAS; for each the forward x·W, the weight gradient xᵀ·dY and the input gradient dY·Wᵀ.
"""

import numpy as np
from numba import njit

from fastmlp.engines.blas_threads import single_threaded_blas
from fastmlp.kernels.cpu.blas import gemm
from fastmlp.kernels.cpu.tiles import tiled_gemm

LAYERS = {"256x256/32": (32, 256, 256), "100x100/100": (100, 100, 100)}
PRODUCTS = {"forward": (False, False), "weight_grad": (True, False), "input_grad": (False, True)}


@njit(nogil=True)
def _blas(C, A, B, trans_a, trans_b):
    gemm(C, A, B, trans_a, trans_b, False)


@njit(nogil=True)
def _tiles(C, A, B, trans_a, trans_b):
    tiled_gemm(C, A, B, trans_a, trans_b, False)


class Products:
    params = [list(LAYERS), list(PRODUCTS), ["blas", "tiles"]]
    param_names = ["layer", "product", "path"]

    def setup(self, layer, product, path):
        batch, fan_in, units = LAYERS[layer]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, fan_in)).astype(np.float32)
        W = rng.standard_normal((fan_in, units)).astype(np.float32)
        dY = rng.standard_normal((batch, units)).astype(np.float32)
        self.operands = {"forward": (np.empty((batch, units), np.float32), x, W),
                         "weight_grad": (np.empty((fan_in, units), np.float32), x, dY),
                         "input_grad": (np.empty((batch, fan_in), np.float32), dY, W)}[product]
        self.transposes = PRODUCTS[product]
        self.call = _blas if path == "blas" else _tiles
        self.blas_threads = single_threaded_blas()
        self.blas_threads.__enter__()
        self.time_product(layer, product, path)

    def teardown(self, layer, product, path):
        self.blas_threads.__exit__(None, None, None)

    def time_product(self, layer, product, path):
        self.call(*self.operands, *self.transposes)
