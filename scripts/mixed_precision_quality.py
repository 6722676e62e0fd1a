#!/usr/bin/env python
"""Test accuracy of dtype="mixed_bfloat16" against float32, over many seeds.

Two tasks, each trained with both policies from the same seed (the same initial weights and batch
order; only the precision of the matrix products differs):

- digits: scikit-learn's digits (fastmlp.datasets.load_digits, 80/20 split), 64-256-128-10 ReLU,
  Adam 1e-3, batch 64, 30 epochs;
- mnist1d: the MNIST-1D paper recipe, 40-100-100-10 ReLU, Adam 1e-2, batch 100, 150 epochs
  (6,000 steps) on the 4,000 training samples, scored on the 1,000 test samples.

For each task it prints the mean test accuracy of each policy over ``--seeds`` seeds with its
standard error, and the mean paired difference (mixed - float32) with its standard error. On
MNIST-1D a single run's accuracy moves by about 2 points from seed to seed, and the two policies'
runs from one seed part ways early, so a 1-point claim needs many seeds: with 20 the standard
error of the difference is about 0.6 points.

Examples::

    python scripts/mixed_precision_quality.py                 # 20 seeds, both tasks (~1 min)
    python scripts/mixed_precision_quality.py --seeds 40 --tasks mnist1d
    python scripts/mixed_precision_quality.py --quick         # 2 seeds, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys

TASKS = {
    "digits": {"sizes": (64, 256, 128, 10), "lr": 1e-3, "batch": 64, "epochs": 30},
    "mnist1d": {"sizes": (40, 100, 100, 10), "lr": 1e-2, "batch": 100, "epochs": 150},
}
POLICIES = ("float32", "mixed_bfloat16")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per task and policy (default 20; 2 with --quick)")
    parser.add_argument("--tasks", default="digits,mnist1d",
                        help="comma-separated subset of: " + ", ".join(TASKS))
    parser.add_argument("--json", metavar="FILE.json", help="also write every accuracy here")
    parser.add_argument("--quick", action="store_true",
                        help="2 seeds, and 10 epochs of MNIST-1D: a smoke run")
    return parser


def load(task):
    import fastmlp as fm
    return fm.datasets.load_digits(seed=0) if task == "digits" else fm.datasets.load_mnist1d()


def accuracy(data, policy, setup, seed, epochs):
    import numpy as np

    import fastmlp as fm
    sizes = setup["sizes"]
    layers = [fm.Dense(units, "relu") for units in sizes[1:-1]] + [fm.Dense(sizes[-1])]
    model = fm.MLP(sizes[0], layers, dtype=policy, seed=seed)
    fm.Trainer(model, fm.Adam(setup["lr"]), batch_size=setup["batch"], epochs=epochs, seed=seed,
               progress=False).fit(data.X_train, data.y_train)
    return float(np.mean(model.predict(data.X_test) == data.y_test))


def mean_and_error(values):
    """(mean, standard error of the mean) of a list; the error is nan for fewer than 2 values."""
    if len(values) < 2:
        return statistics.fmean(values), math.nan
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


def main(argv=None):
    args = build_parser().parse_args(argv)
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 20)
    if seeds < 1:
        raise SystemExit("--seeds must be >= 1")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise SystemExit(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    from fastmlp.engines.bf16_support import require_bf16
    require_bf16()
    results = {}
    lines = ["| task | seeds | float32 (%) | mixed_bfloat16 (%) | mixed - float32 (points) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for task in tasks:
        setup = TASKS[task]
        epochs = 10 if args.quick and task == "mnist1d" else setup["epochs"]
        data = load(task)
        runs = {policy: [] for policy in POLICIES}
        for seed in range(seeds):
            for policy in POLICIES:
                runs[policy].append(accuracy(data, policy, setup, seed, epochs))
            print(f"[{task}] seed {seed}: float32 {runs['float32'][-1]:.3f}, "
                  f"mixed {runs['mixed_bfloat16'][-1]:.3f}", file=sys.stderr, flush=True)
        differences = [m - f for m, f in zip(runs["mixed_bfloat16"], runs["float32"])]
        cells = [mean_and_error([100 * v for v in runs[p]]) for p in POLICIES]
        diff = mean_and_error([100 * d for d in differences])
        lines.append(f"| {task} ({epochs} epochs) | {seeds} | "
                     + " | ".join(f"{m:.2f} ± {e:.2f}" for m, e in cells)
                     + f" | {diff[0]:+.2f} ± {diff[1]:.2f} |")
        results[task] = {"epochs": epochs, **runs}
    print("\n".join(lines))
    print("\n(mean ± standard error of the mean over the seeds; the same seed gives both "
          "policies the same initial weights and batch order)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
