"""What a ``fastmlp train`` run writes and prints: the output folder, history.json (atomically),
the loss/accuracy curves, the description of the run printed before training and the results
table printed after it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..io import atomic_write
from .arguments import CLIError

HISTORY_FILE = "history.json"
MODEL_FILE = "model.npz"
CURVES_FILE = "curves.png"
PLOT_HINT = 'pip install "fastmlp[plot]"'


# ----------------------------------------------------------------------------- output files

def missing_folders(folder):
    """The folders of the path ``folder`` that do not exist yet, deepest first: what
    :func:`prepare_output` creates, and so what :func:`remove_empty_folders` may take away."""
    missing = []
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def remove_empty_folders(folders):
    """Remove each of ``folders`` (deepest first) that is still empty; never touches a file."""
    for path in folders:
        try:
            path.rmdir()  # fails, leaving it alone, unless the folder is empty
        except OSError:
            return


def prepare_output(folder):
    """The ``--output`` folder as a Path, created if needed (a failed run removes it again while
    it is empty: see :func:`missing_folders`)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"--output {str(folder)!r} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the output folder {str(folder)!r}: {exc.strerror or exc}") \
            from None
    return folder


def _json_safe(value):
    """``value`` with NumPy scalars/arrays turned into Python ones and NaN/inf into None."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def write_json_atomic(path, document):
    """Write ``document`` as JSON to ``path`` via a temporary file and ``os.replace``: readers
    see the previous file or the new one, never a part. NaN/inf become null."""
    data = (json.dumps(_json_safe(document), indent=2, allow_nan=False) + "\n").encode("utf-8")

    atomic_write(path, lambda handle: handle.write(data))


def history_document(args, run, metrics, plotted):
    """The contents of history.json: the run's arguments (with the hidden sizes, learning rate and
    validation fraction it used), its data, model and optimizer, ``metrics``, the per-epoch
    history and the files written. ``run`` is what ``fastmlp train`` set up (data, splits,
    model, optimizer, trainer)."""
    data, splits, model = run.data, run.splits, run.model
    arguments = {k: v for k, v in vars(args).items() if k not in ("handler", "argv")}
    arguments.update(hidden=[layer.units for layer in model.layers[:-1]],
                     lr=run.optimizer_config["lr"], validation_split=run.validation)
    return {
        "fastmlp_version": __version__,
        "command": "train",
        "argv": list(getattr(args, "argv", [])),
        "args": arguments,
        "data": {"dataset": data.name, "n_train": int(splits.X_train.shape[0]),
                 "n_validation": 0 if splits.X_val is None else int(splits.X_val.shape[0]),
                 "n_test": int(splits.X_test.shape[0]),
                 "n_features": int(splits.X_train.shape[1]),
                 "n_outputs": int(data.n_outputs), "classes": data.classes,
                 "feature_names": data.feature_names,
                 "standardized": splits.standardizer is not None},
        "model": model.get_config(),
        "optimizer": {"class": type(run.optimizer).__name__, **run.optimizer_config},
        "metrics": metrics,
        "history": run.trainer.history,
        "files": {"model": MODEL_FILE, "curves": CURVES_FILE if plotted else None},
    }


def write_curves(path, history, title, best_epoch=None):
    """Plot loss (and accuracy) per epoch to ``path`` with matplotlib's Agg canvas; a dotted
    line marks ``best_epoch`` (the epoch whose weights early stopping kept).

    Returns False, writing nothing, when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    has_accuracy = "accuracy" in history
    figure = Figure(figsize=(10 if has_accuracy else 5.5, 4), layout="constrained")
    FigureCanvasAgg(figure)
    panels = [("loss", "loss")] + ([("accuracy", "accuracy")] if has_accuracy else [])
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, label) in zip(axes, panels):
        for prefix, name, style in (("", "training", "-"), ("val_", "validation", "--")):
            values = history.get(prefix + key)
            if values:
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, [np.nan if v is None else v for v in values], style,
                        marker="o" if len(values) <= 1 else None, label=name)
        if best_epoch:
            ax.axvline(best_epoch, color="gray", linestyle=":", label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
        losses = history.get("loss", []) + history.get("val_loss", [])
        if key == "loss" and losses and all(v is not None and v > 0 for v in losses):
            ax.set_yscale("log")
    figure.suptitle(title)

    atomic_write(path, lambda handle: figure.savefig(handle, dpi=100, format="png"))
    return True


# ----------------------------------------------------------------------------- printed summaries

def architecture(model):
    """The layer sizes from input to output, e.g. ``64-256-128-10``."""
    sizes = [model.input_dim] + [layer.units for layer in model.layers]
    return "-".join(map(str, sizes))


def describe_run(args, data, splits, model, optimizer):
    """The two lines printed before training."""
    kind = "classes" if model.loss in ("cross_entropy", "hinge") else "outputs"
    sizes = f"{splits.X_train.shape[0]} train"
    if splits.X_val is not None:
        sizes += f" / {splits.X_val.shape[0]} validation"
    sizes += f" / {splits.X_test.shape[0]} test samples"
    hidden = len(model.layers) > 1
    extras = [args.activation] if hidden else ["no hidden layer"]
    if hidden and args.batchnorm:
        extras.append("batchnorm")
    if hidden and args.dropout:
        extras.append(f"dropout {args.dropout:g}")
    return (f"data: {data.name}, {sizes}, {splits.X_train.shape[1]} features, "
            f"{data.n_outputs} {kind}",
            f"model: {architecture(model)} ({', '.join(extras)}), {model.loss}, "
            f"{model.dtype.name}, {model.n_params:,} parameters; {type(optimizer).__name__} "
            f"lr {optimizer.lr:g}, batch {args.batch_size}, {args.epochs} epochs")


def _percent(value):
    return "-" if value is None else f"{100 * value:.2f}%"


def stop_line(metrics):
    """How training ended when it ended before the last epoch, else None."""
    reason, epochs = metrics.get("stop_reason"), metrics["epochs_run"]
    if reason == "early stopping":
        best = metrics.get("best_epoch")
        kept = f"; kept the weights of epoch {best}, the best validation loss" if best else ""
        return f"stopped early at epoch {epochs}{kept}"
    if reason == "non-finite loss":
        return f"stopped after epoch {epochs}: the loss became NaN or infinite"
    if reason is not None:
        return f"stopped at epoch {epochs} ({reason})"
    return None


def print_table(metrics, out):
    """The final results table: loss (and accuracy) on the training, validation (when there is
    one) and test samples, how training ended when it stopped early, speed and wall time."""
    has_accuracy = metrics.get("test_accuracy") is not None
    header = f"  {'':<12}{'loss':>12}" + (f"{'accuracy':>12}" if has_accuracy else "")
    print(header, file=out)
    for part, label in (("train", "train"), ("val", "validation"), ("test", "test")):
        if f"{part}_loss" not in metrics:
            continue
        line = f"  {label:<12}{metrics[f'{part}_loss']:>12.4f}"
        if has_accuracy:
            line += f"{_percent(metrics.get(f'{part}_accuracy')):>12}"
        print(line, file=out)
    stopped = stop_line(metrics)
    if stopped is not None:
        print(f"  {stopped}", file=out)
    speed = metrics.get("samples_per_second")
    speed = f", {speed:,.0f} samples/s" if speed is not None else ""
    print(f"  training: {metrics['epochs_run']} epochs in {metrics['train_time_s']:.2f} s{speed}",
          file=out)
    print(f"  wall time: {metrics['wall_time_s']:.2f} s", file=out)
