"""Measure how the thread count of BLAS and Numba affects a fastmlp training step.

For each configuration (layer sizes, batch) it times one training step (forward, cross-entropy,
backward, Adam update) inside whole epochs with 1 thread and with every core (``fm.num_threads``,
which caps the kernels' team of threads; their BLAS calls are single-threaded either way), and
prints a markdown table of medians.

    python scripts/thread_policy.py            # the three reference configurations
    python scripts/thread_policy.py --quick    # small, for CI
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

import fastmlp as fm

CONFIGS = {"40-256-256-10/32": ((40, 256, 256, 10), 32),
           "784-512-512-10/128": ((784, 512, 512, 10), 128),
           "1024-4096-4096-10/512": ((1024, 4096, 4096, 10), 512)}


def step_time(sizes, batch, dtype, repeats, min_seconds, steps=20):
    """Median seconds of one training step inside whole epochs of ``steps`` batches
    (``Trainer.fit``, one epoch per call, no shuffling)."""
    rng = np.random.default_rng(0)
    layers = [fm.Dense(u, "relu") for u in sizes[1:-1]] + [fm.Dense(sizes[-1])]
    model = fm.MLP(sizes[0], layers, dtype=dtype, seed=0)
    X = rng.normal(size=(batch * steps, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], batch * steps)
    trainer = fm.Trainer(model, fm.Adam(1e-3), batch_size=batch, epochs=0, shuffle=False,
                         progress=False)

    def epoch():
        trainer.epochs += 1
        trainer.fit(X, y)

    epoch()  # compile and warm up
    samples = []
    for _ in range(repeats):
        count, began = 0, time.perf_counter()
        while True:
            epoch()
            count += 1
            elapsed = time.perf_counter() - began
            if elapsed >= min_seconds:
                break
        samples.append(elapsed / count / steps)
    return statistics.median(samples)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.3,
                        help="time each sample over at least this many seconds")
    parser.add_argument("--quick", action="store_true", help="smallest config, 2 short repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.repeats, args.min_seconds = [next(iter(CONFIGS))], 2, 0.02
    cores = os.cpu_count()
    print(f"| config | 1 thread (µs) | {cores} threads (µs) | ratio |")
    print("| --- | --- | --- | --- |")
    for name in args.configs:
        sizes, batch = CONFIGS[name]
        times = {}
        for threads in (1, cores):
            with fm.num_threads(threads):
                times[threads] = step_time(sizes, batch, args.dtype, args.repeats, args.min_seconds)
        print(f"| {name} | {times[1] * 1e6:.0f} | {times[cores] * 1e6:.0f} | "
              f"{times[cores] / times[1]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
