"""Measure how the thread count of BLAS and Numba affects a fastmlp training step.

For each configuration (layer sizes, batch) it times one training step (forward, cross-entropy,
backward, Adam update) inside whole epochs with 1 thread and with every core (``fm.num_threads``,
which caps the kernels' team of threads; their BLAS calls are single-threaded either way), and
prints a markdown table of medians.

With ``--busy N`` it also times the step at the library's defaults (no thread setting) with the
machine quiet and with N CPU-bound processes running beside it (one per core is the hard case: the
team must notice the busy cores and not wait on a thread that is not running), alternating the
two ``--rounds`` times, and prints the medians and their ratio.

    python scripts/thread_policy.py            # the three reference configurations
    python scripts/thread_policy.py --configs 40-256-256-10/32 --busy 2
    python scripts/thread_policy.py --quick    # small, for CI
"""

import argparse
import contextlib
import os
import statistics
import subprocess
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


@contextlib.contextmanager
def busy_processes(count, settle_seconds=0.5):
    """``count`` CPU-bound Python processes running until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(settle_seconds)
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def quiet_and_busy(sizes, batch, dtype, repeats, min_seconds, busy, rounds):
    """Medians over ``rounds`` alternating rounds of the default step time, quiet and beside
    ``busy`` CPU-bound processes: (quiet seconds, busy seconds)."""
    quiet, loaded = [], []
    for _ in range(rounds):
        quiet.append(step_time(sizes, batch, dtype, repeats, min_seconds))
        with busy_processes(busy):
            loaded.append(step_time(sizes, batch, dtype, repeats, min_seconds))
    return statistics.median(quiet), statistics.median(loaded)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.3,
                        help="time each sample over at least this many seconds")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="also time the default step beside N CPU-bound processes")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating quiet / busy rounds with --busy (default 3)")
    parser.add_argument("--quick", action="store_true", help="smallest config, 2 short repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.repeats, args.min_seconds = [next(iter(CONFIGS))], 2, 0.02
        args.rounds = 1
    if args.busy < 0 or args.rounds < 1:
        parser.error("--busy must be >= 0 and --rounds >= 1")
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
    if args.busy:
        print(f"\n| config | default, quiet (µs) | default, {args.busy} busy processes (µs) | "
              "busy / quiet |")
        print("| --- | --- | --- | --- |")
        for name in args.configs:
            sizes, batch = CONFIGS[name]
            quiet, loaded = quiet_and_busy(sizes, batch, args.dtype, args.repeats,
                                           args.min_seconds, args.busy, args.rounds)
            print(f"| {name} | {quiet * 1e6:.0f} | {loaded * 1e6:.0f} | {loaded / quiet:.2f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
