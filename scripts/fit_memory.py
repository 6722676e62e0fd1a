"""Peak memory of ``Trainer.fit`` against what training inherently needs.

For each configuration it builds the data and the model, then traces every NumPy allocation
(tracemalloc) while a Trainer with Adam trains for two epochs, and prints a markdown table of

    reference = data (X, y) + parameters + optimizer state + one batch of activations,

where one batch of activations is batch × Σ layer widths values, and of the peak of the bytes
held (data and model included) against it.

    python scripts/fit_memory.py            # the three reference configurations
    python scripts/fit_memory.py --quick    # small, for CI
"""

import argparse
import tracemalloc

import numpy as np

import fastmlp as fm

CONFIGS = {"40-256-256-10/32": ((40, 256, 256, 10), 32, 4096),
           "784-512-512-10/128": ((784, 512, 512, 10), 128, 8192),
           "1024-4096-4096-10/512": ((1024, 4096, 4096, 10), 512, 2048)}
QUICK = {"40-64-10/32": ((40, 64, 10), 32, 256)}


def warm_up(sizes, dtype):
    """Load the kernels (compiler objects are Python allocations too) with a tiny fit."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, sizes[0])).astype(dtype)
    tiny = fm.MLP(sizes[0], [fm.Dense(3, "relu"), fm.Dense(sizes[-1])], dtype=dtype, seed=0)
    fm.Trainer(tiny, fm.Adam(1e-3), batch_size=4, epochs=1, progress=False).fit(
        X, rng.integers(0, sizes[-1], 8))


def measure(sizes, batch, rows, dtype):
    """(reference bytes, peak bytes held during fit)."""
    warm_up(sizes, dtype)
    tracemalloc.start()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], rows)
    layers = [fm.Dense(u, "relu") for u in sizes[1:-1]] + [fm.Dense(sizes[-1])]
    model = fm.MLP(sizes[0], layers, dtype=dtype, seed=0)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    trainer = fm.Trainer(model, fm.Adam(1e-3), batch_size=batch, epochs=2, progress=False)
    trainer.fit(X, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    itemsize = np.dtype(dtype).itemsize
    state = sum(v.nbytes for v in trainer.optimizer.state_dict().values()
                if isinstance(v, np.ndarray))
    activations = batch * sum(sizes[1:]) * itemsize
    reference = X.nbytes + y.nbytes + model._params.nbytes + state + activations
    return reference, max(peak, held)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--quick", action="store_true", help="one tiny configuration")
    args = parser.parse_args(argv)
    configs = QUICK if args.quick else {name: CONFIGS[name] for name in args.configs}
    print(f"{args.dtype}, Adam, 2 epochs; MB = 10^6 bytes\n")
    print("| config | rows | reference MB | peak during fit MB | peak / reference |")
    print("| --- | --- | --- | --- | --- |")
    for name, (sizes, batch, rows) in configs.items():
        reference, peak = measure(sizes, batch, rows, args.dtype)
        print(f"| {name} | {rows} | {reference / 1e6:.1f} | {peak / 1e6:.1f} | "
              f"{peak / reference:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
