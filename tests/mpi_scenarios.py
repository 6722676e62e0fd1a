"""Programs that tests/test_mpi.py runs under ``mpiexec -n R`` (or alone, as one rank).

Usage: python tests/mpi_scenarios.py SCENARIO OUTPUT_DIR. Each rank writes what the test checks
into OUTPUT_DIR (files named by scenario and rank) or exits with a status the test checks.
"""

import sys
import time
import warnings
from pathlib import Path

import numpy as np

import fastmlp as fm
from fastmlp.parallel.mpi import DistributedError, DistributedTrainer


def data(n=240, d=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, :classes].argmax(axis=1) + (rng.random(n) < 0.1)) % classes
    return X, y


def model(batchnorm=False, dropout=0.0):
    return fm.MLP(12, [fm.Dense(24, "tanh", batchnorm=batchnorm, dropout=dropout),
                       fm.Dense(16, "relu"), fm.Dense(3)], dtype="float64", seed=5)


def options(**extra):
    base = dict(batch_size=40, epochs=4, l2=1e-3, clip_norm=2.0, seed=1, progress=False,
                lr_schedule=fm.StepLR(step_size=2, gamma=0.5))
    base.update(extra)
    return base


def equality(out, plain):
    """Train the same run with the DistributedTrainer (and, alone, with the plain Trainer)."""
    X, y = data()
    optimizers = {"adam": lambda: fm.Adam(1e-2),
                  "nesterov": lambda: fm.SGD(0.05, momentum=0.9, nesterov=True)}
    for name, make_optimizer in optimizers.items():
        net = model()
        trainer = DistributedTrainer(net, make_optimizer(), timeout=60, **options())
        history = trainer.fit(X, y, validation_split=0.25)
        np.savez(out / f"{name}_{trainer.size}_{trainer.rank}.npz", params=net._params,
                 loss=history["loss"], val_loss=history["val_loss"],
                 val_accuracy=history["val_accuracy"])
        trainer.save_checkpoint(out / f"checkpoint_{name}_rank{trainer.rank}.npz")
        if plain:  # one process: the checkpoint it wrote loads back as a DistributedTrainer
            loaded = DistributedTrainer.load_checkpoint(out / f"checkpoint_{name}_rank0.npz",
                                                        timeout=60, batchnorm="sync")
            assert type(loaded) is DistributedTrainer and loaded.batchnorm == "sync"
            assert loaded.epoch == trainer.epoch and loaded.history == trainer.history
            assert np.array_equal(loaded.model._params, net._params)
            assert loaded.comm.timeout == 60
            net = model()
            history = fm.Trainer(net, make_optimizer(), **options()).fit(
                X, y, validation_split=0.25)
            np.savez(out / f"{name}_plain.npz", params=net._params, loss=history["loss"])


def batchnorm(out):
    """Local batchnorm and dropout: every rank must still hold the same model."""
    X, y = data()
    net = model(batchnorm=True, dropout=0.2)
    trainer = DistributedTrainer(net, fm.Adam(1e-2), timeout=60, **options())
    trainer.fit(X, y)
    np.savez(out / f"bn_{trainer.rank}.npz", params=net._params, buffers=net._buffers,
             accuracy=trainer.evaluate(X, y)["accuracy"])


def sync_batchnorm(out, plain):
    """batchnorm="sync": the step of the whole global batch (written alone: the plain Trainer)."""
    X, y = data()

    def bn_model():
        return fm.MLP(12, [fm.Dense(24, "relu", batchnorm=True),
                           fm.Dense(16, "maxout", pieces=2, batchnorm=True), fm.Dense(3)],
                      dtype="float64", seed=5)
    # SGD: Adam would turn the rounding noise of the biases in front of batchnorm (whose exact
    # gradient is 0) into steps of about lr * noise / eps, which differ between the two runs
    net = bn_model()
    if plain:
        trainer = fm.Trainer(net, fm.SGD(0.05, momentum=0.9), **options())
        name = "plain"
    else:
        trainer = DistributedTrainer(net, fm.SGD(0.05, momentum=0.9), batchnorm="sync",
                                     timeout=60, **options())
        name = f"sync_{trainer.size}_{trainer.rank}"
    history = trainer.fit(X, y, validation_split=0.25)
    np.savez(out / f"{name}.npz", params=net._params, buffers=net._buffers, loss=history["loss"],
             val_loss=history["val_loss"])


def non_finite(out):
    """Batch 3 of epoch 3 overflows: every rank keeps the state after batch 2 of epoch 3, the
    same as a run that trained on those two batches only."""
    X, _ = data()
    y = X[:, :2] * 0.5
    broken = y.copy()
    broken[100, 0] = 1e200  # third batch of 40 rows (no shuffling)
    results = {}
    for name in ("stopped", "reference"):
        net = fm.MLP(12, [fm.Dense(24, "tanh", batchnorm=True), fm.Dense(2)], loss="mse",
                     dtype="float64", seed=5)
        trainer = DistributedTrainer(net, fm.Adam(1e-2), timeout=60, batch_size=40, epochs=2,
                                     shuffle=False, progress=False)
        trainer.fit(X, y)
        trainer.epochs = 5 if name == "stopped" else 3
        if name == "stopped":
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("always")
                trainer.fit(X, broken)
        else:
            trainer.fit(X[:80], y[:80])
        results[name] = (net._params.copy(), net._buffers.copy(), trainer.epoch)
    np.savez(out / f"non_finite_{trainer.rank}.npz",
             **{f"{name}_{i}": value for name, values in results.items()
                for i, value in enumerate(values)})


class Fail(fm.Callback):
    def __init__(self, rank, how):
        self.rank, self.how = rank, how

    def on_epoch_end(self, epoch, metrics):
        if epoch == 2 and self.rank == 1:
            if self.how == "raise":
                raise RuntimeError("simulated failure on rank 1")
            time.sleep(600)
        return False


def failure(out, how):
    from mpi4py import MPI
    X, y = data()
    rank = MPI.COMM_WORLD.Get_rank()
    trainer = DistributedTrainer(model(), fm.Adam(1e-2), timeout=4, callbacks=[Fail(rank, how)],
                                 **options(epochs=50))
    trainer.fit(X, y)


def bad_input(out):
    """Rank 1 passes labels of the wrong length: both ranks must end with an error, not hang."""
    from mpi4py import MPI
    X, y = data()
    if MPI.COMM_WORLD.Get_rank() == 1:
        y = y[:-1]
    trainer = DistributedTrainer(model(), fm.Adam(1e-2), timeout=30, **options())
    try:
        trainer.fit(X, y)
    except (ValueError, DistributedError) as exc:
        (out / f"bad_input_{trainer.rank}.txt").write_text(f"{type(exc).__name__}: {exc}")
        sys.exit(3)


def other_data(out):
    """The ranks pass different X: DistributedError on every rank."""
    from mpi4py import MPI
    X, y = data(seed=MPI.COMM_WORLD.Get_rank())
    trainer = DistributedTrainer(model(), fm.Adam(1e-2), timeout=30, **options())
    try:
        trainer.fit(X, y)
    except DistributedError as exc:
        (out / f"other_data_{trainer.rank}.txt").write_text(str(exc))
        sys.exit(3)


def mixed(out, plain):
    """A mixed_bfloat16 model with the DistributedTrainer (and, alone, with the plain Trainer)."""
    X, y = data()
    X = X.astype(np.float32)
    def mixed_model():
        return fm.MLP(12, [fm.Dense(24, "tanh"), fm.Dense(16, "relu"), fm.Dense(3)],
                      dtype="mixed_bfloat16", seed=5)
    net = mixed_model()
    trainer = DistributedTrainer(net, fm.Adam(1e-2), timeout=60, **options())
    history = trainer.fit(X, y)
    np.savez(out / f"mixed_{trainer.size}_{trainer.rank}.npz", params=net._params,
             loss=history["loss"])
    if plain:
        net = mixed_model()
        history = fm.Trainer(net, fm.Adam(1e-2), **options()).fit(X, y)
        np.savez(out / "mixed_plain.npz", params=net._params, loss=history["loss"])


def sums(out):
    """The shared-memory sum on its own, then the same run through it and through Allreduce."""
    from fastmlp.parallel import node_sum as node_sum_module
    from fastmlp.parallel.mpi import Communicator
    from fastmlp.parallel.node_sum import NodeSum
    comm = Communicator(timeout=60)
    node_sum = NodeSum(comm, 1001, np.float32)
    for trial in range(3):
        node_sum.pack[:] = np.random.default_rng([trial, comm.rank]).normal(size=1001)
        node_sum.scalars[:] = np.arange(8) * (comm.rank + 1) + trial
        scalars = node_sum.sum("the test's sum")
        np.savez(out / f"sum_{trial}_{comm.rank}.npz", pack=node_sum.pack, scalars=scalars)
    X, y = data()
    for path in ("node", "allreduce"):
        net = model()
        trainer = DistributedTrainer(net, fm.Adam(1e-2), timeout=60, **options())
        if path == "allreduce":
            trainer.comm.node_size = 1  # as if every rank were on a machine of its own
        history = trainer.fit(X, y, validation_split=0.25)
        np.savez(out / f"{path}_{trainer.rank}.npz", params=net._params, loss=history["loss"],
                 val_loss=history["val_loss"], used_node_sum=trainer.engine.shared_memory_sum)
    # the next fit of the same size takes the window the first one gave back
    key = (net._params.size, "<f8")
    [window] = node_sum_module._POOL[key]
    trainer = DistributedTrainer(model(), fm.Adam(1e-2), timeout=60, **options(epochs=1))
    trainer.fit(X, y)
    assert trainer.engine.shared_memory_sum and node_sum_module._POOL[key] == [window]
    # a window of another size that /dev/shm has no room for: the fit sums with Allreduce
    node_sum_module._shared_memory_free = lambda: 4096
    trainer = DistributedTrainer(model(batchnorm=True), fm.Adam(1e-2), timeout=60,
                                 **options(epochs=1))
    trainer.fit(X, y)
    assert not trainer.engine.shared_memory_sum


if __name__ == "__main__":
    scenario, out = sys.argv[1], Path(sys.argv[2])
    fm.set_num_threads(1)
    if scenario == "equality":
        equality(out, plain=len(sys.argv) > 3)
    elif scenario == "batchnorm":
        batchnorm(out)
    elif scenario in ("raise", "stall"):
        failure(out, scenario)
    elif scenario == "sync_batchnorm":
        sync_batchnorm(out, plain=len(sys.argv) > 3)
    elif scenario == "non_finite":
        non_finite(out)
    elif scenario == "bad_input":
        bad_input(out)
    elif scenario == "other_data":
        other_data(out)
    elif scenario == "mixed":
        mixed(out, plain=len(sys.argv) > 3)
    elif scenario == "sums":
        sums(out)
    else:
        sys.exit(f"unknown scenario {scenario!r}")
