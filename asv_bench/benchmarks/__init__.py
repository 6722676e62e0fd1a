"""asv benchmarks for fastmlp, plus the shared helpers they use.

Modules (one per area):

- ``bench_training``: the time of a step inside whole epochs and its ratio to the step's matrix
  products alone (the GEMM floor, measured in the same process), one Trainer epoch, peak memory
  of an epoch, inference; parametrized over ``CONFIGS`` × ``DTYPES``.
- ``bench_dense``, ``bench_batchnorm``, ``bench_losses``, ``bench_optimizers``, ``bench_dropout``:
  one kernel family each; ``bench_products``: a step's float32 products through OpenBLAS and
  through the register tiles.
- ``bench_startup``: ``timeraw_`` benchmarks of a cold ``import fastmlp`` and of import plus the
  first training step in a fresh process.
- ``bench_gpu``: a device-resident training epoch on ``device="cuda"`` against PyTorch CUDA
  (TF32 off and on); skipped (``NotImplementedError`` in setup) without a usable GPU.

Every ``setup`` runs the code under test once, so the JIT is compiled (or loaded from Numba's
cache) before anything is timed.

Entry points used, besides the public API (``fastmlp.MLP``, ``Dense``, ``Trainer.fit``,
``MLP.predict``, ``MLP.loss_and_grad``, the optimizers' ``step``):

- the CPU kernels in ``fastmlp.kernels.cpu`` (``dense``, ``batchnorm``, ``losses``, ``dropout``,
  ``random``, ``activations.ACTIVATION_CODES``), called with preallocated outputs.
"""

import numpy as np

import fastmlp as fm

# name -> (layer sizes input-hidden…-classes, batch size, rows in one benchmark epoch)
# The epoch row counts keep the large configuration affordable under `asv run --quick`.
CONFIGS = {
    "40-256-256-10/32": ((40, 256, 256, 10), 32, 2048),
    "784-512-512-10/128": ((784, 512, 512, 10), 128, 2048),
    "1024-4096-4096-10/512": ((1024, 4096, 4096, 10), 512, 1024),
}
CONFIG_NAMES = tuple(CONFIGS)
SMALLEST_CONFIG = CONFIG_NAMES[0]
DTYPES = ("float32", "float64")


def layer_sizes(config):
    return CONFIGS[config][0]


def batch_size(config):
    return CONFIGS[config][1]


def epoch_rows(config):
    return CONFIGS[config][2]


def make_data(n_features, n_classes, rows, dtype, seed=0):
    """Standard-normal features (rows, n_features) in ``dtype`` (float32 for the
    ``mixed_bfloat16`` policy) and uniform int64 class labels."""
    dtype = "float32" if dtype == "mixed_bfloat16" else dtype
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, n_features)).astype(dtype)
    y = rng.integers(0, n_classes, size=rows).astype(np.int64)
    return X, y


def config_data(config, dtype, rows=None, seed=0):
    """Synthetic data for ``config``: one batch by default, or ``rows`` rows."""
    sizes = layer_sizes(config)
    return make_data(sizes[0], sizes[-1], batch_size(config) if rows is None else rows, dtype, seed)


def build_model(config, dtype, seed=0):
    """ReLU hidden layers, a linear output layer and cross-entropy, as in every comparison."""
    sizes = layer_sizes(config)
    layers = [fm.Dense(units, activation="relu") for units in sizes[1:-1]]
    layers.append(fm.Dense(sizes[-1]))
    return fm.MLP(sizes[0], layers, loss="cross_entropy", dtype=dtype, seed=seed)


class EpochSteps:
    """Per-step time inside whole epochs, through the public API only.

    ``Trainer.fit`` runs one epoch at a time, without shuffling, over ``steps`` batches of the
    configuration; :meth:`per_step_seconds` is the best of ``epochs`` epochs divided by the steps.
    :func:`floor_per_step_seconds` times the step's matrix products alone through NumPy in the
    same process (best of 1 and 2 BLAS threads, when threadpoolctl is installed), the reference
    the ratio benchmarks divide by.
    """

    def __init__(self, config, dtype, steps):
        sizes = layer_sizes(config)
        self.batch = batch_size(config)
        self.X, self.y = config_data(config, dtype, rows=self.batch * steps)
        self.steps = steps
        self.trainer = fm.Trainer(build_model(config, dtype), fm.Adam(lr=1e-3),
                                  batch_size=self.batch, epochs=0, shuffle=False, progress=False)
        self.epoch()
        self.sizes = sizes

    def epoch(self):
        self.trainer.epochs += 1
        self.trainer.fit(self.X, self.y)
        if self.trainer.stop_reason is not None:
            raise FloatingPointError("non-finite loss or gradient in a benchmark epoch")

    def per_step_seconds(self, epochs):
        import time
        best = float("inf")
        for _ in range(epochs):
            began = time.perf_counter()
            self.epoch()
            best = min(best, time.perf_counter() - began)
        return best / self.steps


def floor_per_step_seconds(config, dtype, repeats):
    """Best seconds of one step's matrix products through NumPy (forward x·W per layer, dY·Wᵀ
    and xᵀ·dY backward, no dX for the first layer), over 1 and 2 BLAS threads."""
    import contextlib
    import time
    sizes, batch = layer_sizes(config), batch_size(config)
    rng = np.random.default_rng(1)
    n = len(sizes) - 1
    W = [rng.standard_normal((sizes[i], sizes[i + 1])).astype(dtype) for i in range(n)]
    Z = [np.empty((batch, sizes[i + 1]), dtype=dtype) for i in range(n)]
    dZ = [rng.standard_normal((batch, sizes[i + 1])).astype(dtype) for i in range(n)]
    dW = [np.empty_like(w) for w in W]
    dH = [np.empty((batch, sizes[i]), dtype=dtype) for i in range(n)]
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)

    def products():
        h = x
        for i in range(n):
            np.dot(h, W[i], out=Z[i])
            h = Z[i]
        for i in range(n - 1, -1, -1):
            np.dot(x.T if i == 0 else Z[i - 1].T, dZ[i], out=dW[i])
            if i > 0:
                np.dot(dZ[i], W[i].T, out=dH[i])

    try:
        from threadpoolctl import threadpool_limits
        limits = [threadpool_limits(limits=1, user_api="blas"),
                  threadpool_limits(limits=2, user_api="blas")]
    except ImportError:
        limits = [contextlib.nullcontext()]
    best = float("inf")
    for limit in limits:
        with limit:
            products()
            for _ in range(repeats):
                began = time.perf_counter()
                products()
                best = min(best, time.perf_counter() - began)
    return best


def public_step(model, optimizer, X, y):
    """One step through the public API only: ``loss_and_grad`` then ``optimizer.step``."""
    loss, grads = model.loss_and_grad(X, y)
    optimizer.step(model.params, grads)
    return loss
