"""Regularization study on MNIST-1D: how much each technique closes the train-test gap.

What it measures
----------------
An MLP 40-256-256-10 with ReLU, trained with the MNIST-1D paper's optimizer settings (Adam,
lr 1e-2, batch 100, constant rate), overfits the MNIST-1D training samples badly: it reaches
100% training accuracy while the test accuracy stays in the 60s. (The width is that of the
paper's MLP, 100, raised to 256: regularization matters more, and helps more, for the wider
network.) This script trains it for ``--epochs`` epochs with

- no regularization,
- dropout (p = DROPOUT on both hidden layers),
- batch normalization (both hidden layers),
- an L1 penalty, an L2 penalty and the elastic net (both), on the weight matrices,
- early stopping on the validation loss (patience PATIENCE, best weights restored),
- Bagging: N_ESTIMATORS unregularized copies trained on bootstrap samples from different
  initializations, probabilities averaged,

and reports, per method, the training, validation and test accuracy and the train-test gap.

Protocol: the 4000 training samples are split once (seeded by ``--seed``) into 3600 rows that
every method trains on and 400 validation rows. The validation rows drive early stopping and
are reported for every method; the regularization strengths below were chosen on them, never on
the test set. The 1000 test samples are only scored. Training accuracy is measured in evaluation
mode (no dropout, running batchnorm statistics) on the 3600 training rows. Every method runs
``--repeats`` times (default 3) with the same seeds ``seed``, ``seed + 1``, … (initial weights,
shuffling, dropout masks, bootstrap samples; the split stays the same), and the table shows the
means, with the test accuracy's standard deviation across seeds: single runs of this network
differ by a few points, as much as some of the methods.

Output: a markdown table on stdout, a figure (``--output``, default regularization_study.png)
with train/test accuracy bars and the per-epoch validation accuracy, and a JSON of the numbers beside it
(same name, ``.json``).

Run
---
    python scripts/regularization_study.py                  # full study, ~3-5 min on 2 cores
    python scripts/regularization_study.py --epochs 60 --n-jobs 2 --output out/reg.png
    python scripts/regularization_study.py --quick          # seconds: CI smoke run

``--quick`` trains 3 epochs on 800 rows (validation 200, test 500) with 2-member Bagging; it only
checks that everything runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import fastmlp as fm

HIDDEN = (256, 256)
BATCH_SIZE = 100
LEARNING_RATE = 1e-2
DEFAULT_EPOCHS = 100
DEFAULT_REPEATS = 3
QUICK_EPOCHS = 3
VALIDATION_ROWS = 400
QUICK_TRAIN_ROWS, QUICK_VALIDATION_ROWS, QUICK_TEST_ROWS = 800, 200, 500

# strengths chosen on the validation split
DROPOUT = 0.2
L1 = 1e-4
L2 = 1e-4
ELASTIC = (5e-5, 5e-5)
PATIENCE = 10
N_ESTIMATORS = 5
QUICK_ESTIMATORS = 2


def build_model(seed, dropout=0.0, batchnorm=False):
    layers = [fm.Dense(units, activation="relu", batchnorm=batchnorm, dropout=dropout)
              for units in HIDDEN]
    return fm.MLP(40, layers + [fm.Dense(10)], loss="cross_entropy", seed=seed)


def methods(quick):
    """(name, settings text, kind, options) of every method compared."""
    return [
        ("none", "-", "single", {}),
        ("dropout", f"p={DROPOUT} on hidden layers", "single", {"dropout": DROPOUT}),
        ("batchnorm", "hidden layers", "single", {"batchnorm": True}),
        ("L1", f"l1={L1:g}", "single", {"l1": L1}),
        ("L2", f"l2={L2:g}", "single", {"l2": L2}),
        ("elastic net", f"l1={ELASTIC[0]:g}, l2={ELASTIC[1]:g}", "single",
         {"l1": ELASTIC[0], "l2": ELASTIC[1]}),
        ("early stopping", f"val_loss, patience={PATIENCE}, restore_best", "single",
         {"early_stopping": True}),
        ("bagging", f"n_estimators={QUICK_ESTIMATORS if quick else N_ESTIMATORS}, bootstrap",
         "bagging", {"n_estimators": QUICK_ESTIMATORS if quick else N_ESTIMATORS}),
    ]


def load_data(seed, quick):
    X, y, X_test, y_test = fm.datasets.load_mnist1d(seed=42)
    order = np.random.default_rng(seed).permutation(X.shape[0])
    n_val = QUICK_VALIDATION_ROWS if quick else VALIDATION_ROWS
    n_train = QUICK_TRAIN_ROWS if quick else X.shape[0] - n_val
    val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:n_val + n_train])
    if quick:
        X_test, y_test = X_test[:QUICK_TEST_ROWS], y_test[:QUICK_TEST_ROWS]
    return X[train_rows], y[train_rows], X[val_rows], y[val_rows], X_test, y_test


def accuracy(predictor, X, y):
    return float(np.mean(predictor.predict(X) == y))


def warm_up(X, y):
    """Compile (or load from the cache) every kernel variant before the timed runs."""
    for options in ({}, {"dropout": 0.1}, {"batchnorm": True}):
        trainer = fm.Trainer(build_model(0, **options), fm.Adam(LEARNING_RATE),
                             batch_size=BATCH_SIZE, epochs=1, l1=1e-5, l2=1e-5, progress=False)
        trainer.fit(X[:2 * BATCH_SIZE], y[:2 * BATCH_SIZE], validation_data=(X[:10], y[:10]))


def run_single(options, data, epochs, seed):
    X, y, X_val, y_val, X_test, y_test = data
    model = build_model(seed, dropout=options.get("dropout", 0.0),
                        batchnorm=options.get("batchnorm", False))
    early = (fm.EarlyStopping(monitor="val_loss", patience=PATIENCE, restore_best=True)
             if options.get("early_stopping") else None)
    trainer = fm.Trainer(model, fm.Adam(LEARNING_RATE), batch_size=BATCH_SIZE, epochs=epochs,
                         seed=seed, l1=options.get("l1", 0.0), l2=options.get("l2", 0.0),
                         early_stopping=early, progress=False)
    began = time.perf_counter()
    history = trainer.fit(X, y, validation_data=(X_val, y_val))
    wall = time.perf_counter() - began
    return {
        "epochs_trained": trainer.epoch,
        "best_epoch": early.best_epoch if early is not None else None,
        "train_accuracy": accuracy(model, X, y),
        "val_accuracy": accuracy(model, X_val, y_val),
        "test_accuracy": accuracy(model, X_test, y_test),
        "wall_time_s": wall,
        "val_accuracy_curve": [float(v) for v in history["val_accuracy"]],
        "val_loss_curve": [float(v) for v in history["val_loss"]],
        "train_loss_curve": [float(v) for v in history["loss"]],
    }


def run_bagging(options, data, epochs, seed, n_jobs):
    X, y, X_val, y_val, X_test, y_test = data
    ensemble = fm.Bagging(build_model(seed), n_estimators=options["n_estimators"],
                          optimizer=fm.Adam(LEARNING_RATE), batch_size=BATCH_SIZE, epochs=epochs,
                          bootstrap=True, n_jobs=n_jobs, seed=seed)
    began = time.perf_counter()
    ensemble.fit(X, y)
    wall = time.perf_counter() - began
    member_test = [accuracy(member, X_test, y_test) for member in ensemble.members]
    return {
        "epochs_trained": epochs,
        "best_epoch": None,
        "train_accuracy": accuracy(ensemble, X, y),
        "val_accuracy": accuracy(ensemble, X_val, y_val),
        "test_accuracy": accuracy(ensemble, X_test, y_test),
        "member_test_accuracy": member_test,
        "wall_time_s": wall,
        "val_accuracy_curve": [],
        "val_loss_curve": [],
        "train_loss_curve": [],
    }


METRICS = ("train_accuracy", "val_accuracy", "test_accuracy", "wall_time_s", "epochs_trained")


def aggregate(name, settings, runs):
    """Means over the runs (one per seed), the test accuracy's spread, and the runs themselves."""
    result = {"method": name, "settings": settings, "repeats": len(runs)}
    for key in METRICS:
        result[key] = float(np.mean([run[key] for run in runs]))
    result["test_accuracy_std"] = (float(np.std([run["test_accuracy"] for run in runs], ddof=1))
                                   if len(runs) > 1 else 0.0)
    best = [run["best_epoch"] for run in runs if run["best_epoch"] is not None]
    result["best_epoch"] = float(np.mean(best)) if best else None
    result["gap"] = result["train_accuracy"] - result["test_accuracy"]
    result["val_accuracy_curve"] = runs[0]["val_accuracy_curve"]
    result["runs"] = runs
    return result


def markdown_table(results):
    lines = ["| method | settings | epochs | train acc | val acc | test acc | train-test gap "
             "| wall time (s) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        epochs = f"{r['epochs_trained']:.0f}"
        if r["best_epoch"] is not None:
            epochs += f" (best {r['best_epoch']:.0f})"
        test = f"{100 * r['test_accuracy']:.1f}%"
        if r["repeats"] > 1:
            test += f" ± {100 * r['test_accuracy_std']:.1f}"
        lines.append(
            f"| {r['method']} | {r['settings']} | {epochs} | {100 * r['train_accuracy']:.1f}% | "
            f"{100 * r['val_accuracy']:.1f}% | {test} | {100 * r['gap']:.1f} pp | "
            f"{r['wall_time_s']:.1f} |")
    return "\n".join(lines)


def plot(results, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_bar, ax_curve) = plt.subplots(1, 2, figsize=(13, 4.8))
    names = [r["method"] for r in results]
    x = np.arange(len(names))
    ax_bar.bar(x - 0.2, [100 * r["train_accuracy"] for r in results], 0.4, label="train")
    ax_bar.bar(x + 0.2, [100 * r["test_accuracy"] for r in results], 0.4, label="test",
               yerr=[100 * r["test_accuracy_std"] for r in results], capsize=3)
    ax_bar.set_xticks(x, names, rotation=30, ha="right")
    ax_bar.set_ylabel("accuracy (%)")
    ax_bar.set_ylim(0, 115)
    ax_bar.legend(loc="upper center", ncol=2)
    ax_bar.grid(True, axis="y", alpha=0.3)
    for r in results:
        if r["val_accuracy_curve"]:
            epochs = np.arange(1, len(r["val_accuracy_curve"]) + 1)
            ax_curve.plot(epochs, 100 * np.asarray(r["val_accuracy_curve"]), label=r["method"],
                          linewidth=1)
        elif r["method"] == "bagging":
            ax_curve.axhline(100 * r["val_accuracy"], color="k", linestyle="--", linewidth=1,
                             label="bagging (final)")
    ax_curve.set_xlabel("epoch")
    ax_curve.set_ylabel("validation accuracy (%), first seed")
    ax_curve.grid(True, alpha=0.3)
    ax_curve.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Compare regularization techniques (dropout, batchnorm, L1, L2, elastic net, "
                    "early stopping, bagging) on MNIST-1D with a 40-256-256-10 ReLU MLP; print a "
                    "markdown table and save a plot and a JSON of the results.")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"training epochs (the cap for early stopping; default "
                             f"{DEFAULT_EPOCHS}, {QUICK_EPOCHS} with --quick)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the validation split, the weights and the shuffling "
                             "(default 0)")
    parser.add_argument("--output", default="regularization_study.png",
                        help="plot file; the JSON goes beside it with suffix .json "
                             "(default regularization_study.png)")
    parser.add_argument("--n-jobs", type=int, default=1,
                        help="worker processes for Bagging (joblib; -1 = all cores; default 1); "
                             "the results do not depend on it")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"runs per method with seeds seed, seed+1, ... (same split); the "
                             f"table shows means (default {DEFAULT_REPEATS}, 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke run: 3 epochs on 800 rows, 2-member Bagging")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS
    if args.repeats is None:
        args.repeats = 1 if args.quick else DEFAULT_REPEATS
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    if args.n_jobs == 0 or args.n_jobs < -1:
        parser.error("--n-jobs must be -1 or a positive integer")
    return args


def main(argv=None):
    args = parse_args(argv)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    data = load_data(args.seed, args.quick)
    n_train, n_val, n_test = data[0].shape[0], data[2].shape[0], data[4].shape[0]
    print(f"MNIST-1D: {n_train} train / {n_val} validation / {n_test} test rows; MLP "
          f"40-256-256-10 ReLU; Adam lr {LEARNING_RATE:g}, batch {BATCH_SIZE}, {args.epochs} "
          f"epochs; seeds {args.seed}..{args.seed + args.repeats - 1}", flush=True)
    warm_up(data[0], data[1])
    results = []
    for name, settings, kind, options in methods(args.quick):
        runs = []
        for seed in range(args.seed, args.seed + args.repeats):
            if kind == "bagging":
                run = run_bagging(options, data, args.epochs, seed, args.n_jobs)
            else:
                run = run_single(options, data, args.epochs, seed)
            runs.append(dict(run, seed=seed))
            print(f"  {name:15s} seed {seed}: train {100 * run['train_accuracy']:.1f}%  "
                  f"val {100 * run['val_accuracy']:.1f}%  test {100 * run['test_accuracy']:.1f}%"
                  f"  {run['wall_time_s']:.1f} s", flush=True)
        results.append(aggregate(name, settings, runs))
    print(f"\nmeans over {args.repeats} seed(s); ± is the test accuracy's standard deviation")
    print(markdown_table(results))
    plot(results, output, f"MNIST-1D regularization, 40-256-256-10 ReLU, {n_train} training rows")
    json_path = output.with_suffix(".json")
    payload = {
        "study": "regularization_study", "dataset": "mnist1d", "n_train": n_train,
        "n_validation": n_val, "n_test": n_test, "architecture": "40-256-256-10 relu",
        "optimizer": f"Adam(lr={LEARNING_RATE:g})", "batch_size": BATCH_SIZE,
        "epochs": args.epochs, "seed": args.seed, "repeats": args.repeats, "n_jobs": args.n_jobs,
        "quick": args.quick,
        "fastmlp_version": fm.__version__, "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(), "results": results,
    }
    json_path.write_text(json.dumps(payload, indent=2))
    print(f"\nplot: {output}\njson: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
