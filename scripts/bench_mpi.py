"""Time per epoch of MPI data-parallel training against one process, in one run.

Trains the 784-512-512-10 ReLU network (float32, Adam, cross-entropy) on random data and prints a
markdown table of the median epoch time of: the plain ``fm.Trainer`` (one compiled call per
epoch) with 1 thread and with every core, and ``fastmlp.parallel.mpi.DistributedTrainer`` under
``mpiexec -n R`` for each R of ``--ranks`` (each rank gets cores/R threads).

    python scripts/bench_mpi.py                 # 8192 rows, batch 128, ranks 1 and 2
    python scripts/bench_mpi.py --batch 512 --ranks 1 2
    python scripts/bench_mpi.py --batch 256 --validation-split 0.1   # README's MPI example
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
        trainer.fit(X, y, validation_split=args.validation_split or None)
    return trainer.history["epoch_time"][1:], getattr(trainer, "rank", 0)


def sum_times(n, repeats=50):
    """Median µs of summing n float32 over the ranks: MPI Allreduce, then the shared-memory sum
    of ``fastmlp.parallel.node_sum`` (None when the ranks are not all on this machine)."""
    from mpi4py import MPI

    from fastmlp.parallel.mpi import Communicator
    from fastmlp.parallel.node_sum import NodeSum
    comm = Communicator(timeout=600)
    values = np.ones(n, dtype=np.float32)
    node_sum = NodeSum(comm, n, np.float32) if comm.node_size == comm.size else None

    def median_us(step):
        times = []
        for _ in range(repeats):
            comm.comm.Barrier()
            began = time.perf_counter()
            step()
            times.append(time.perf_counter() - began)
        return 1e6 * statistics.median(times)
    allreduce = median_us(lambda: comm.comm.Allreduce(MPI.IN_PLACE, values, op=MPI.SUM))
    shared = median_us(lambda: node_sum.sum("the sum")) if node_sum is not None else None
    return allreduce, shared


def worker(args):
    from fastmlp.parallel.mpi import default_threads
    threads = default_threads()
    times, rank = epoch_times(args, True, threads)
    model, _, _ = build(tuple(args.sizes), 1)
    allreduce, shared = sum_times(model.n_params)
    if rank == 0:
        print(json.dumps({"times": times, "threads": threads, "sum": [model.n_params, allreduce,
                                                                     shared]}))


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
    parser.add_argument("--validation-split", type=float, default=0.0,
                        help="fraction of the rows held out and evaluated each epoch (default 0)")
    parser.add_argument("--quick", action="store_true", help="a tiny network, for CI")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.batch, args.epochs, args.sizes = 512, 64, 2, list(QUICK_SIZES)
    if args.worker:
        return worker(args)
    cores = os.cpu_count() or 1
    rows, sums = [], []
    for threads in sorted({1, cores}):
        times, _ = epoch_times(args, False, threads)
        rows.append(("fm.Trainer, 1 process", threads, statistics.median(times)))
    for ranks in args.ranks:
        command = [mpiexec(), "-n", str(ranks), sys.executable, os.path.abspath(__file__),
                   "--worker", "--rows", str(args.rows), "--batch", str(args.batch),
                   "--epochs", str(args.epochs), "--validation-split", str(args.validation_split),
                   "--sizes", *map(str, args.sizes)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            sys.exit(f"mpiexec -n {ranks} failed:\n{proc.stdout}\n{proc.stderr}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append((f"DistributedTrainer, {ranks} rank{'s' if ranks > 1 else ''}",
                     result["threads"], statistics.median(result["times"])))
        if ranks > 1:
            sums.append((ranks, *result["sum"]))
    base = next(t for name, _, t in rows if name.startswith("DistributedTrainer"))
    sizes = "-".join(map(str, args.sizes))
    trained = args.rows - int(round(args.rows * args.validation_split))  # rows of an epoch
    held_out = f", validation split {args.validation_split:g}" if args.validation_split else ""
    print(f"{sizes}, float32, Adam, {args.rows} rows{held_out}, global batch {args.batch}, median "
          f"of {args.epochs} epochs, {time.strftime('%Y-%m-%d')}, {cores} cores\n")
    print("| run | threads per process | ms per epoch | samples/s | vs 1 rank |")
    print("| --- | --- | --- | --- | --- |")
    for name, threads, seconds in rows:
        print(f"| {name} | {threads} | {1e3 * seconds:.1f} | {trained / seconds:,.0f} | "
              f"{base / seconds:.2f}× |")
    if sums:
        print("\nThe step's gradient sum alone (median of 50):\n")
        print("| ranks | float32 values | MPI Allreduce µs | shared-memory sum µs |")
        print("| --- | ---: | ---: | ---: |")
        for ranks, n, allreduce, shared in sums:
            shared = "-" if shared is None else f"{shared:,.0f}"
            print(f"| {ranks} | {n:,} | {allreduce:,.0f} | {shared} |")


if __name__ == "__main__":
    main()
