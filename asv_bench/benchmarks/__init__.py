"""asv benchmarks for fastmlp, plus the shared helpers they use.

Modules (one per area):

- ``bench_training``: one Trainer step, one Trainer epoch, peak memory of an epoch, inference;
  parametrized over ``CONFIGS`` × ``DTYPES``.
- ``bench_dense``, ``bench_batchnorm``, ``bench_losses``, ``bench_optimizers``, ``bench_dropout``:
  one kernel family each.
- ``bench_startup``: ``timeraw_`` benchmarks of a cold ``import fastmlp`` and of import plus the
  first training step in a fresh process.
- ``bench_gpu``: a device-resident training epoch on ``device="cuda"`` against PyTorch CUDA
  (TF32 off and on); skipped (``NotImplementedError`` in setup) without a usable GPU.

Every ``setup`` runs the code under test once, so the JIT is compiled (or loaded from Numba's
cache) before anything is timed.

Entry points used, besides the public API (``fastmlp.MLP``, ``Dense``, ``Trainer.fit``,
``MLP.predict``, ``MLP.loss_and_grad``, the optimizers' ``step``):

- ``Trainer._prepare``, ``Trainer._batches`` and ``Trainer._run_epoch`` (:class:`TrainerStep`):
  the Trainer's own step loop run over a data set of exactly one batch;
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
    """Standard-normal features (rows, n_features) in ``dtype`` and uniform int64 class labels."""
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


class TrainerStep:
    """One training step on a fixed batch, exactly as :class:`fastmlp.Trainer` runs it.

    The batch is validated once (``Trainer._prepare``, ``Trainer._batches``); each call runs
    ``Trainer._run_epoch`` without shuffling over a data set of exactly one batch, so it does what
    the Trainer does for every step of an epoch: forward, loss, backward and the Adam update of
    the flat parameter array, plus its per-step bookkeeping. The first call checks that exactly
    one step was made.
    """

    def __init__(self, model, optimizer, X, y):
        self.model = model
        self.trainer = fm.Trainer(model, optimizer, batch_size=X.shape[0], epochs=1,
                                  shuffle=False, progress=False)
        self.prepared = self.trainer._prepare(X, y)
        self.bounds = self.trainer._batches(X.shape[0])
        before = model.dropout_step
        self()
        if model.dropout_step - before != 1:
            raise AssertionError(f"one call made {model.dropout_step - before} steps, not 1")

    def __call__(self):
        result = self.trainer._run_epoch(*self.prepared, self.bounds)
        if result is None:
            raise FloatingPointError("non-finite loss or gradient in a benchmark step")
        return result


def public_step(model, optimizer, X, y):
    """One step through the public API only: ``loss_and_grad`` then ``optimizer.step``."""
    loss, grads = model.loss_and_grad(X, y)
    optimizer.step(model.params, grads)
    return loss
