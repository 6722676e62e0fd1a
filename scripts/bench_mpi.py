"""Time per epoch of MPI data-parallel training against one process, in one run.

Trains the 784-512-512-10 ReLU network (float32, Adam, cross-entropy) on random data and prints a
markdown table of the median epoch time of: the plain ``fm.Trainer`` (one compiled call per
epoch) with 1 thread and with every core, and ``fastmlp.parallel.mpi.DistributedTrainer`` under
``mpiexec -n R`` for each R of ``--ranks`` (each rank gets cores/R threads).

    python scripts/bench_mpi.py                 # 8192 rows, batch 128, ranks 1 and 2
    python scripts/bench_mpi.py --batch 512 --ranks 1 2
    python scripts/bench_mpi.py --quick         # tiny, for CI

Needs ``pip install "fastmlp[mpi]"`` (mpi4py and the MPICH wheel, which brings ``mpiexec``).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

SIZES = (784, 512, 512, 10)
QUICK_SIZES = (40, 64, 10)


def build(sizes, rows, seed=0):
    import fastmlp as fm
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], rows)
    layers = [fm.Dense(u, "relu") for u in sizes[1:-1]] + [fm.Dense(sizes[-1])]
    return fm.MLP(sizes[0], layers, dtype="float32", seed=seed), X, y


def epoch_times(args, distributed, threads):
    """Per-epoch seconds after one warm-up epoch (rank 0's clock under MPI)."""
    import fastmlp as fm
    model, X, y = build(tuple(args.sizes), args.rows)
    options = dict(batch_size=args.batch, epochs=args.epochs + 1, seed=0, progress=False)
    if distributed:
        from fastmlp.parallel.mpi import DistributedTrainer
        trainer = DistributedTrainer(model, fm.Adam(1e-3), timeout=600, **options)
    else:
        trainer = fm.Trainer(model, fm.Adam(1e-3), **options)
    with fm.num_threads(threads):
        trainer.fit(X, y)
    return trainer.history["epoch_time"][1:], getattr(trainer, "rank", 0)


def worker(args):
    from fastmlp.parallel.mpi import default_threads
    threads = default_threads()
    times, rank = epoch_times(args, True, threads)
    if rank == 0:
        print(json.dumps({"times": times, "threads": threads}))


def mpiexec():
    from fastmlp.parallel.mpi import find_mpiexec
    path = find_mpiexec()
    if path is None:
        sys.exit('mpiexec not found: pip install "fastmlp[mpi]"')
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8192, help="training rows (default 8192)")
    parser.add_argument("--batch", type=int, default=128, help="global batch size (default 128)")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs (default 5)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2],
                        help="MPI job sizes to time (default: 1 2)")
    parser.add_argument("--quick", action="store_true", help="a tiny network, for CI")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.batch, args.epochs, args.sizes = 512, 64, 2, list(QUICK_SIZES)
    if args.worker:
        return worker(args)
    cores = os.cpu_count() or 1
    rows = []
    for threads in sorted({1, cores}):
        times, _ = epoch_times(args, False, threads)
        rows.append(("fm.Trainer, 1 process", threads, statistics.median(times)))
    for ranks in args.ranks:
        command = [mpiexec(), "-n", str(ranks), sys.executable, os.path.abspath(__file__),
                   "--worker", "--rows", str(args.rows), "--batch", str(args.batch),
                   "--epochs", str(args.epochs), "--sizes", *map(str, args.sizes)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            sys.exit(f"mpiexec -n {ranks} failed:\n{proc.stdout}\n{proc.stderr}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append((f"DistributedTrainer, {ranks} rank{'s' if ranks > 1 else ''}",
                     result["threads"], statistics.median(result["times"])))
    base = next(t for name, _, t in rows if name.startswith("DistributedTrainer"))
    sizes = "-".join(map(str, args.sizes))
    print(f"{sizes}, float32, Adam, {args.rows} rows, global batch {args.batch}, median of "
          f"{args.epochs} epochs, {time.strftime('%Y-%m-%d')}, {cores} cores\n")
    print("| run | threads per process | ms per epoch | samples/s | vs 1 rank |")
    print("| --- | --- | --- | --- | --- |")
    for name, threads, seconds in rows:
        print(f"| {name} | {threads} | {1e3 * seconds:.1f} | {args.rows / seconds:,.0f} | "
              f"{base / seconds:.2f}× |")


if __name__ == "__main__":
    main()
