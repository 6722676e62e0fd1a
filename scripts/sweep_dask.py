"""A hyper-parameter sweep of fastmlp MLPs on MNIST-1D over a Dask cluster.

Every configuration (hidden widths x learning rate x dropout) is one task: it trains an MLP with
Adam on 3200 of the 4000 MNIST-1D training rows (a seeded split) and scores it on the other 800
(validation) and on the 1000 test rows. The tasks run on a local cluster of worker processes by
default (``--workers`` processes, ``--threads-per-worker`` tasks each), or on an existing cluster
with ``--scheduler ADDRESS``. Each worker pins its BLAS and Numba threads
(:class:`fastmlp.parallel.dask.PinThreads`) so that the tasks do not oversubscribe the cores.

Output: a markdown table of the configurations (validation and test accuracy, wall time of each
fit on its worker), best validation accuracy marked, and the sweep's total wall time.

    python scripts/sweep_dask.py                            # local cluster, 2 workers
    python scripts/sweep_dask.py --quick                    # tiny, for CI
    python scripts/sweep_dask.py --scheduler tcp://host:8786

The workers of a real cluster need fastmlp installed; the data are generated here (``mnist1d``)
and sent to them.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np

import fastmlp as fm
from fastmlp.parallel.dask import PinThreads, dask_client

WIDTHS = {"100-100": (100, 100), "256-256": (256, 256), "512-512": (512, 512)}
LEARNING_RATES = (1e-3, 3e-3, 1e-2)
DROPOUTS = (0.0, 0.1)


def fit_config(config, data, epochs, batch_size, seed):
    """Train one configuration; returns it with validation/test accuracy and fit seconds."""
    X_fit, y_fit, X_val, y_val, X_test, y_test = data
    layers = [fm.Dense(units, "relu", dropout=config["dropout"]) for units in config["widths"]]
    model = fm.MLP(X_fit.shape[1], layers + [fm.Dense(10)], seed=seed)
    trainer = fm.Trainer(model, fm.Adam(config["lr"]), batch_size=batch_size, epochs=epochs,
                         seed=seed, progress=False)
    began = time.perf_counter()
    trainer.fit(X_fit, y_fit)
    seconds = time.perf_counter() - began
    return dict(config, val=float(np.mean(model.predict(X_val) == y_val)),
                test=float(np.mean(model.predict(X_test) == y_test)), seconds=seconds)


def split(dataset, seed):
    """3200 fitting rows and 800 validation rows of the training set (seeded), and the test set."""
    order = np.random.default_rng(seed).permutation(len(dataset.X_train))
    fit_rows, val_rows = order[:3200], order[3200:]
    return (dataset.X_train[fit_rows], dataset.y_train[fit_rows], dataset.X_train[val_rows],
            dataset.y_train[val_rows], dataset.X_test, dataset.y_test)


def configurations(quick):
    if quick:
        return [dict(name="100-100", widths=(100, 100), lr=1e-2, dropout=0.0),
                dict(name="100-100", widths=(100, 100), lr=3e-3, dropout=0.1)]
    return [dict(name=name, widths=widths, lr=lr, dropout=dropout)
            for (name, widths), lr, dropout in itertools.product(WIDTHS.items(), LEARNING_RATES,
                                                                 DROPOUTS)]


def table(results):
    best = max(range(len(results)), key=lambda i: results[i]["val"])
    lines = ["| hidden | lr | dropout | val acc | test acc | fit s |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for i, r in enumerate(results):
        mark = " (best)" if i == best else ""
        lines.append(f"| {r['name']}{mark} | {r['lr']:g} | {r['dropout']:g} | {r['val']:.3f} | "
                     f"{r['test']:.3f} | {r['seconds']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="address of a running Dask scheduler (default: a local cluster)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes")
    parser.add_argument("--threads-per-worker", type=int, default=1,
                        help="tasks each local worker runs at once")
    parser.add_argument("--pin", type=int, default=1,
                        help="BLAS threads per worker process and Numba threads per task thread")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="split and initialization seed")
    parser.add_argument("--quick", action="store_true",
                        help="two small configurations, 2 epochs, one local worker")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.workers = 2, 1

    dataset = fm.datasets.load_mnist1d()
    data = split(dataset, args.seed)
    configs = configurations(args.quick)

    if args.scheduler:
        import distributed

        client = distributed.Client(args.scheduler, timeout=60)
        client.register_plugin(PinThreads(args.pin))
        where = f"scheduler {args.scheduler}"
    else:
        client = dask_client(n_workers=args.workers, threads_per_worker=args.threads_per_worker,
                             pin=args.pin)
        where = (f"local cluster, {args.workers} worker processes x "
                 f"{args.threads_per_worker} threads")
    try:
        began = time.perf_counter()
        shared = client.scatter(data, broadcast=True)
        futures = [client.submit(fit_config, config, shared, args.epochs, args.batch_size,
                                 args.seed, pure=False) for config in configs]
        results = client.gather(futures)
        total = time.perf_counter() - began
    finally:
        client.close()

    print(f"MNIST-1D sweep: {len(configs)} configurations, {args.epochs} epochs, batch "
          f"{args.batch_size}, seed {args.seed}; {where}, pin {args.pin}\n")
    print(table(results))
    print(f"\ntotal wall time: {total:.1f} s (fit time summed over tasks: "
          f"{sum(r['seconds'] for r in results):.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
