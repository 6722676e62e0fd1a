"""Optimizer study on MNIST-1D: every fastmlp optimizer trains the same MLP.

What it measures
----------------
One network, 40-100-100-10 with ReLU hidden layers (the MNIST-1D paper's MLP), the same
initial weights (``--seed``) and the same data order, trained on the 4000 MNIST-1D training
samples with each optimizer in turn:

- SGD, SGD with momentum 0.9, SGD with Nesterov momentum 0.9, Adagrad, RMSProp, Adam, AdamW:
  minibatches of 100 rows for ``--epochs`` epochs (40 updates per epoch);
- Rprop: a full-batch method (its sign-based step-size adaptation assumes the gradient of one
  fixed objective, which minibatch noise breaks), so it is trained with ``batch_size`` = the whole
  training set. It gets the same number of parameter updates as the minibatch runs
  (``epochs`` x 40), which means 40 times as many passes over the data; its wall time shows the
  cost.

The learning rates (listed in the table) come from a coarse sweep in steps of about 3x, scored
by validation accuracy after 40 epochs on a 3200/800 split of the training set (never on the test
set); the best rates sit at the upper end of the usual ranges (Adam's 1e-2 is also the paper's).
The three SGD variants share one effective step: lr 0.3 for plain SGD, lr 0.03 with momentum 0.9
(lr / (1 - momentum) = 0.3); plain SGD also trained stably at lr 1.0. Rprop's lr is its initial
per-weight step (its sweep over 1e-3..3e-2 barely mattered).

For each optimizer it reports the final training loss (mean cross-entropy over the whole training
set, evaluation mode, after training), the test accuracy on the 1000 test samples and the training
wall time, as a markdown table on stdout. It saves a plot of the per-epoch training-loss curves
(against parameter updates and against wall time) to ``--output`` and the numbers, curves
included, to a JSON file beside it (same name, ``.json``).

Run
---
    python scripts/optimizer_study.py                       # full study, 1-3 min on 2 cores
    python scripts/optimizer_study.py --epochs 50 --seed 1 --output out/opt.png
    python scripts/optimizer_study.py --quick               # a few seconds: CI smoke run

``--quick`` trains 3 epochs on 800 training and 500 test rows: it checks that everything runs,
its numbers mean little. Wall times include nothing but ``Trainer.fit`` (the JIT kernels are
compiled before the first timed run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import fastmlp as fm

HIDDEN = (100, 100)
BATCH_SIZE = 100
DEFAULT_EPOCHS = 60
QUICK_EPOCHS = 3
QUICK_TRAIN_ROWS = 800
QUICK_TEST_ROWS = 500

# (name, optimizer factory, full_batch)
OPTIMIZERS = (
    ("SGD", lambda: fm.SGD(lr=0.3), False),
    ("SGD+momentum", lambda: fm.SGD(lr=0.03, momentum=0.9), False),
    ("SGD+Nesterov", lambda: fm.SGD(lr=0.03, momentum=0.9, nesterov=True), False),
    ("Adagrad", lambda: fm.Adagrad(lr=0.1), False),
    ("RMSProp", lambda: fm.RMSProp(lr=3e-3), False),
    ("Adam", lambda: fm.Adam(lr=1e-2), False),
    ("AdamW", lambda: fm.AdamW(lr=1e-2, weight_decay=1e-2), False),
    ("Rprop", lambda: fm.Rprop(lr=1e-3), True),
)


def build_model(seed):
    """The MNIST-1D paper's MLP: 40-100-100-10, ReLU, He initialization."""
    layers = [fm.Dense(units, activation="relu") for units in HIDDEN] + [fm.Dense(10)]
    return fm.MLP(40, layers, loss="cross_entropy", seed=seed)


def hyper_string(optimizer):
    """lr, any non-zero weight_decay, and the hyper-parameters that differ from the class defaults."""
    config = optimizer.get_config()
    defaults = type(optimizer)().get_config()
    parts = [f"lr={config['lr']:g}"]
    for key, value in config.items():
        shown = defaults.get(key) != value or (key == "weight_decay" and value)
        if key != "lr" and shown:
            parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    return ", ".join(parts)


def load_data(quick):
    data = fm.datasets.load_mnist1d(seed=42)
    X_train, y_train, X_test, y_test = data
    if quick:
        X_train, y_train = X_train[:QUICK_TRAIN_ROWS], y_train[:QUICK_TRAIN_ROWS]
        X_test, y_test = X_test[:QUICK_TEST_ROWS], y_test[:QUICK_TEST_ROWS]
    return X_train, y_train, X_test, y_test


def warm_up(X, y):
    """Compile (or load from the cache) the kernels outside the timed runs."""
    for name, factory, _ in OPTIMIZERS:
        trainer = fm.Trainer(build_model(0), optimizer=factory(), batch_size=BATCH_SIZE, epochs=1,
                             progress=False)
        trainer.fit(X[:2 * BATCH_SIZE], y[:2 * BATCH_SIZE])


def run_one(name, factory, full_batch, data, epochs, seed):
    X_train, y_train, X_test, y_test = data
    n = X_train.shape[0]
    updates_per_epoch = math.ceil(n / BATCH_SIZE)
    batch = n if full_batch else BATCH_SIZE
    run_epochs = epochs * updates_per_epoch if full_batch else epochs
    optimizer = factory()
    model = build_model(seed)
    trainer = fm.Trainer(model, optimizer=optimizer, batch_size=batch, epochs=run_epochs,
                         shuffle=True, seed=seed, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", fm.NonFiniteLossWarning)
        began = time.perf_counter()
        history = trainer.fit(X_train, y_train)
        wall = time.perf_counter() - began
    diverged = any(issubclass(w.category, fm.NonFiniteLossWarning) for w in caught)
    train = trainer.evaluate(X_train, y_train)
    test = trainer.evaluate(X_test, y_test)
    steps_per_epoch = 1 if full_batch else updates_per_epoch
    return {
        "optimizer": name,
        "hyperparameters": hyper_string(optimizer),
        "config": optimizer.get_config(),
        "batch_size": batch,
        "full_batch": full_batch,
        "epochs": trainer.epoch,
        "updates": trainer.epoch * steps_per_epoch,
        "final_train_loss": float(train["loss"]),
        "train_accuracy": float(train["accuracy"]),
        "test_loss": float(test["loss"]),
        "test_accuracy": float(test["accuracy"]),
        "wall_time_s": wall,
        "diverged": diverged,
        "loss_curve": [float(v) for v in history.get("loss", [])],
        "updates_curve": [(i + 1) * steps_per_epoch for i in range(len(history.get("loss", [])))],
        "time_curve": list(np.cumsum(history.get("epoch_time", [])).astype(float)),
    }


def markdown_table(results):
    lines = ["| optimizer | hyper-parameters | batch | updates | final train loss | test accuracy "
             "| wall time (s) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        name = r["optimizer"] + (" (full batch)" if r["full_batch"] else "")
        loss = f"{r['final_train_loss']:.4g}" + (" (diverged)" if r["diverged"] else "")
        lines.append(f"| {name} | {r['hyperparameters']} | {r['batch_size']} | {r['updates']} | "
                     f"{loss} | {100 * r['test_accuracy']:.1f}% | {r['wall_time_s']:.1f} |")
    return "\n".join(lines)


def plot(results, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_updates, ax_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    # Rprop drives the full-batch loss to ~1e-17 (it memorizes the training set); the axes are
    # cut at ``floor`` so that the minibatch curves stay readable
    floor = 1e-5
    for r in results:
        label = r["optimizer"] + (" (full batch)" if r["full_batch"] else "")
        style = "--" if r["full_batch"] else "-"
        ax_updates.plot(r["updates_curve"], r["loss_curve"], style, label=label)
        ax_time.plot(r["time_curve"], r["loss_curve"], style, label=label)
    for ax, xlabel in ((ax_updates, "parameter updates"), (ax_time, "wall time (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"training loss (epoch mean; axis cut at {floor:g})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor)
        ax.grid(True, which="both", alpha=0.3)
    ax_updates.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Train the MNIST-1D MLP (40-100-100-10 ReLU) with every fastmlp optimizer; "
                    "print a markdown table and save a loss-curve plot and a JSON of the results.")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs of the minibatch runs (default {DEFAULT_EPOCHS}, "
                             f"{QUICK_EPOCHS} with --quick); Rprop gets the same number of updates")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights and the shuffling (default 0)")
    parser.add_argument("--output", default="optimizer_study.png",
                        help="plot file; the JSON goes beside it with suffix .json "
                             "(default optimizer_study.png)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke run: 3 epochs on 800 train / 500 test rows")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    data = load_data(args.quick)
    n_train, n_test = data[0].shape[0], data[2].shape[0]
    print(f"MNIST-1D: {n_train} train / {n_test} test rows; MLP 40-100-100-10 ReLU; "
          f"batch {BATCH_SIZE} for {args.epochs} epochs (Rprop: full batch, same number of "
          f"updates); seed {args.seed}", flush=True)
    warm_up(data[0], data[1])
    results = []
    for name, factory, full_batch in OPTIMIZERS:
        result = run_one(name, factory, full_batch, data, args.epochs, args.seed)
        results.append(result)
        print(f"  {name:13s} train loss {result['final_train_loss']:.4g}  "
              f"test acc {100 * result['test_accuracy']:.1f}%  {result['wall_time_s']:.1f} s",
              flush=True)
    print()
    print(markdown_table(results))
    plot(results, output, f"MNIST-1D, 40-100-100-10 ReLU, {args.epochs} epochs "
                          f"({n_train} training rows)")
    json_path = output.with_suffix(".json")
    payload = {
        "study": "optimizer_study", "dataset": "mnist1d", "n_train": n_train, "n_test": n_test,
        "architecture": "40-100-100-10 relu", "batch_size": BATCH_SIZE, "epochs": args.epochs,
        "seed": args.seed, "quick": args.quick, "fastmlp_version": fm.__version__,
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
        "results": results,
    }
    json_path.write_text(json.dumps(payload, indent=2))
    print(f"\nplot: {output}\njson: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
