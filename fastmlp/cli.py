"""The ``fastmlp`` command line: ``fastmlp train`` trains an MLP and writes its results.

::

    fastmlp train                                    # digits, sensible defaults, a few seconds
    fastmlp train --dataset mnist1d --hidden 256,256 --epochs 50
    fastmlp train --dataset data.csv --target label --loss cross_entropy
    python -m fastmlp train --help

A run writes three files into ``--output`` (default ``./fastmlp-run``):

- ``history.json``: the per-epoch history of the Trainer, the run's arguments, data and model
  description and the final metrics (written atomically);
- ``model.npz``: the trained model (``fastmlp.MLP.load``), with the fitted Standardizer when
  standardization is on (``model.standardizer``);
- ``curves.png``: loss and accuracy against the epoch (needs matplotlib).

:func:`main` returns the exit status: 0 on success, 2 for a usage or input error (reported on
stderr as ``error: ...``, without a traceback), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .cuda_support import CudaUnavailableError
from .io import atomic_write
from .mpi import DistributedError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

BUILTIN_DATASETS = ("digits", "mnist1d")
LOSSES = ("cross_entropy", "binary_cross_entropy", "mse", "hinge")
OPTIMIZER_NAMES = ("sgd", "adagrad", "rmsprop", "adam", "adamw", "rprop")
SCHEDULES = ("none", "step", "cosine", "plateau")

# Defaults of the train command, chosen so that a plain ``fastmlp train`` reaches >= 97% test
# accuracy on digits within a few seconds.
DEFAULT_DATASET = "digits"
DEFAULT_HIDDEN = (256, 128)
DEFAULT_ACTIVATION = "relu"
DEFAULT_OPTIMIZER = "adam"
DEFAULT_BATCH_SIZE = 64
DEFAULT_EPOCHS = 30
DEFAULT_DROPOUT = 0.2
DEFAULT_SCHEDULE = "cosine"
DEFAULT_TEST_SIZE = 0.2
DEFAULT_VALIDATION_SPLIT = 0.1  # used when early stopping is on
DEFAULT_OUTPUT = "fastmlp-run"
# learning rate per optimizer when --lr is not given
DEFAULT_LR = {"sgd": 0.01, "adagrad": 0.01, "rmsprop": 0.01, "adam": 0.002, "adamw": 0.002,
              "rprop": 0.01}
MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")
# --threads auto: one thread below this many multiply-adds in the largest layer's matrix product
SMALL_NETWORK_MACS = 1 << 22
STEP_GAMMA = 0.1          # --schedule step: lr × 0.1 ...
STEP_FRACTION = 3         # ... every epochs/3 epochs
PLATEAU_FACTOR = 0.1      # --schedule plateau: lr × 0.1 ...
PLATEAU_PATIENCE = 5      # ... after 5 epochs without improvement

HISTORY_FILE = "history.json"
MODEL_FILE = "model.npz"
CURVES_FILE = "curves.png"
PLOT_HINT = 'pip install "fastmlp[plot]"'


class CLIError(Exception):
    """A usage or input problem, reported as ``error: <message>`` with exit status 2."""


# ----------------------------------------------------------------------------- argument types

def _hidden_sizes(text):
    """``"256,128"`` → [256, 128]; ``"none"`` → [] (no hidden layer). argparse type function."""
    text = text.strip()
    if text.lower() == "none":
        return []
    sizes = []
    for part in text.split(","):
        part = part.strip()
        try:
            size = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid hidden sizes {text!r}: {part!r} is not an integer (use e.g. 256,128, "
                f"or none for no hidden layer)") from None
        if size <= 0:
            raise argparse.ArgumentTypeError(
                f"invalid hidden sizes {text!r}: layer sizes must be positive; got {size}")
        sizes.append(size)
    return sizes


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value}")
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; got {value}")
    return value


def _finite_float(text, minimum=None):
    """A finite float, optionally >= ``minimum``. argparse type function."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number; got {text!r}")
    if minimum is not None and value < minimum:
        raise argparse.ArgumentTypeError(f"expected a number >= {minimum:g}; got {value:g}")
    return value


def _non_negative_float(text):
    return _finite_float(text, minimum=0.0)


def _positive_float(text):
    value = _finite_float(text)
    if value <= 0.0:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {value:g}")
    return value


def _threads(text):
    """``auto`` or a positive integer."""
    if text.strip().lower() == "auto":
        return "auto"
    return _positive_int(text)


def _fraction(text):
    """A number in [0, 1)."""
    value = _finite_float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1); got {value:g}")
    return value


def _open_fraction(text):
    """A number in (0, 1)."""
    value = _finite_float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1); got {value:g}")
    return value


# ----------------------------------------------------------------------------- parser

def _activation_names():
    from .layers import ACTIVATIONS
    return tuple(ACTIVATIONS)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line plus a pointer to ``--help``."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n"
                              f"run '{self.prog} --help' to see the options\n")


def build_parser():
    """The argparse parser of the ``fastmlp`` command (subcommand ``train``)."""
    parser = _Parser(
        prog="fastmlp",
        description="fastmlp: fast multilayer-perceptron training with Numba kernels.",
        epilog="Run 'fastmlp train --help' for the options of the train command.")
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}",
                        help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = commands.add_parser(
        "train", help="train an MLP on a built-in or user data set",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train a multilayer perceptron and write history.json, model.npz and curves.png\n"
            "into the output folder. With no options it trains a 64-256-128-10 ReLU network\n"
            "with batchnorm and dropout on scikit-learn's digits in a few seconds."),
        epilog=(
            "user data:\n"
            "  .npz  arrays X and y (split with --test-size), or X_train, y_train, X_test,\n"
            "        y_test; X is (n, features), y is (n,) or (n, outputs)\n"
            "  .csv  a header row of column names, then numeric rows separated by commas;\n"
            "        --target names the target column, the other columns are the features\n"
            "\n"
            "targets:\n"
            "  cross_entropy, hinge   whole-number class labels; labels >= 0 are the class\n"
            "                         indices (max label + 1 outputs); with negative labels\n"
            "                         the sorted distinct labels become classes 0..C-1 and\n"
            "                         history.json lists them under data.classes\n"
            "  binary_cross_entropy   0/1 targets (one sigmoid output); more than two classes\n"
            "                         train one sigmoid output per class (one-hot targets),\n"
            "                         and accuracy is then counted per output\n"
            "  mse                    real values (regression; no accuracy is reported)\n"
            "\n"
            "exit status: 0 on success, 2 on a usage or input error.\n"
            "\n"
            "examples:\n"
            "  fastmlp train\n"
            "  fastmlp train --dataset mnist1d --hidden 256,256 --epochs 60 --early-stopping 10\n"
            "  fastmlp train --dataset houses.csv --target price --loss mse --output runs/h1\n"))

    data = train.add_argument_group("data")
    data.add_argument(
        "--dataset", default=DEFAULT_DATASET, metavar="{digits,mnist1d,PATH}",
        help="'digits' (scikit-learn's 8x8 digits, 1797 samples), 'mnist1d' (MNIST-1D, 4000 "
             "train / 1000 test samples), or the path of a .npz or .csv file (default: digits)")
    data.add_argument(
        "--target", metavar="COLUMN",
        help="name of the target column of a .csv data set (required for .csv, invalid "
             "otherwise)")
    data.add_argument(
        "--test-size", type=_open_fraction, metavar="FRACTION",
        help=f"fraction of the samples held out for testing, in (0, 1), for data without a "
             f"train/test split (digits, .npz with X and y, .csv); the split is seeded by --seed "
             f"(default: {DEFAULT_TEST_SIZE}; mnist1d has a fixed split)")
    data.add_argument(
        "--validation-split", type=_fraction, metavar="FRACTION",
        help=f"fraction of the training samples held out for validation, in [0, 1); the "
             f"validation loss and accuracy are recorded each epoch (default: "
             f"{DEFAULT_VALIDATION_SPLIT} with --early-stopping, 0 otherwise)")
    data.add_argument(
        "--standardize", action=argparse.BooleanOptionalAction, default=True,
        help="fit a Standardizer (per-feature mean 0, variance 1) on the training samples, "
             "apply it to validation and test samples, and save it with the model "
             "(default: on; --no-standardize turns it off)")

    model = train.add_argument_group("model")
    model.add_argument(
        "--hidden", type=_hidden_sizes, action="append", metavar="SIZES",
        help=f"hidden layer sizes, comma-separated (e.g. 256,128) or given once per layer "
             f"(--hidden 256 --hidden 128); 'none' for no hidden layer (default: "
             f"{','.join(map(str, DEFAULT_HIDDEN))})")
    model.add_argument(
        "--activation", default=DEFAULT_ACTIVATION, choices=_activation_names(),
        help=f"activation of the hidden layers; the output layer is linear (default: "
             f"{DEFAULT_ACTIVATION})")
    model.add_argument(
        "--loss", default="cross_entropy", choices=LOSSES,
        help="loss function; see 'targets' below (default: cross_entropy)")
    model.add_argument(
        "--batchnorm", action=argparse.BooleanOptionalAction, default=True,
        help="batch-normalize the hidden layers (default: on; --no-batchnorm turns it off)")
    model.add_argument(
        "--dropout", type=_fraction, default=DEFAULT_DROPOUT, metavar="P",
        help=f"dropout probability in [0, 1) after each hidden layer (default: {DEFAULT_DROPOUT})")
    model.add_argument(
        "--dtype", default="float32", choices=("float32", "float64"),
        help="floating-point type of the parameters and computation (default: float32)")
    model.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"),
        help="where to train (default: cpu)")

    training = train.add_argument_group("training")
    training.add_argument(
        "--optimizer", default=DEFAULT_OPTIMIZER, choices=OPTIMIZER_NAMES,
        help=f"optimizer, with torch.optim's update rules (default: {DEFAULT_OPTIMIZER})")
    defaults = ", ".join(f"{name} {lr:g}" for name, lr in DEFAULT_LR.items())
    training.add_argument(
        "--lr", type=_positive_float, metavar="RATE",
        help=f"learning rate (default per optimizer: {defaults})")
    training.add_argument(
        "--momentum", type=_non_negative_float, metavar="M",
        help="momentum of sgd or rmsprop (default: 0); invalid with other optimizers")
    training.add_argument(
        "--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE, metavar="N",
        help=f"samples per training step (default: {DEFAULT_BATCH_SIZE})")
    training.add_argument(
        "--epochs", type=_positive_int, default=DEFAULT_EPOCHS, metavar="N",
        help=f"passes over the training data (default: {DEFAULT_EPOCHS})")
    training.add_argument(
        "--l1", type=_non_negative_float, default=0.0, metavar="LAMBDA",
        help="L1 penalty lambda*sum|W| on the weight matrices (default: 0)")
    training.add_argument(
        "--l2", type=_non_negative_float, default=0.0, metavar="LAMBDA",
        help="L2 penalty lambda*sum W^2 on the weight matrices (default: 0)")
    training.add_argument(
        "--early-stopping", type=_non_negative_int, metavar="PATIENCE",
        help="stop when the validation loss has not improved for PATIENCE epochs and keep the "
             "weights of the best epoch; uses --validation-split (default: off)")
    training.add_argument(
        "--schedule", default=DEFAULT_SCHEDULE, choices=SCHEDULES,
        help=f"learning-rate schedule: none; step (lr x {STEP_GAMMA:g} every epochs/"
             f"{STEP_FRACTION} epochs); cosine (annealed to 0 over --epochs); plateau (lr x "
             f"{PLATEAU_FACTOR:g} after {PLATEAU_PATIENCE} epochs without improvement of the "
             f"validation loss, or of the training loss without validation) (default: "
             f"{DEFAULT_SCHEDULE})")
    training.add_argument(
        "--clip-norm", type=_positive_float, metavar="NORM",
        help="rescale each gradient whose global L2 norm exceeds NORM (default: no clipping)")
    training.add_argument(
        "--threads", type=_threads, default="auto", metavar="N",
        help=f"CPU threads for the matrix products and kernels, or 'auto': one thread when "
             f"batch size x the largest layer's inputs x outputs is below "
             f"{SMALL_NETWORK_MACS:,} (thread start-up then costs more than it saves), all cores "
             f"otherwise; 1 is also fastest on a busy machine (default: auto)")
    training.add_argument(
        "--seed", type=_non_negative_int, default=0, metavar="N",
        help="seed of the weights, dropout masks, shuffling and data splits (default: 0)")

    output = train.add_argument_group("output")
    output.add_argument(
        "--output", default=DEFAULT_OUTPUT, metavar="DIR",
        help=f"folder for history.json, model.npz and curves.png, created if needed; files of an "
             f"earlier run there are replaced (default: ./{DEFAULT_OUTPUT})")
    output.add_argument(
        "--no-progress", action="store_true",
        help="do not show the per-epoch progress (shown only when stderr is a terminal)")
    output.add_argument(
        "--quiet", action="store_true",
        help="print nothing but errors and warnings (implies --no-progress)")
    scale = train.add_argument_group("scaling out")
    scale.add_argument(
        "--distributed", action="store_true",
        help="data-parallel training over the ranks of an MPI job (mpiexec -n R fastmlp train "
             "--distributed ...): each global batch is split over the ranks and the gradients "
             "are averaged every step; rank 0 alone prints and writes files; --threads auto gives "
             "each rank an equal share of the cores (needs fastmlp[mpi])")
    scale.add_argument(
        "--sync-batchnorm", action="store_true",
        help="with --distributed, compute the batchnorm statistics over the whole global batch "
             "(summed over the ranks each step) instead of each rank's part of it")
    scale.add_argument(
        "--mpi-timeout", type=_positive_float, default=300.0, metavar="SECONDS",
        help="with --distributed, end the job with an error when the ranks have not met for "
             "SECONDS (a failed or stalled rank) (default: 300)")
    train.set_defaults(handler=run_train)
    return parser


# ----------------------------------------------------------------------------- data

class Data:
    """Training and test arrays plus a description of where they came from."""

    def __init__(self, name, X_train, y_train, X_test, y_test, feature_names=None):
        self.name = name
        self.X_train, self.y_train = X_train, y_train
        self.X_test, self.y_test = X_test, y_test
        self.feature_names = feature_names
        self.classes = None        # original label values when they were mapped to 0..C-1
        self.n_outputs = None
        self.notes = []


def _split(X, y, test_size, seed, what):
    """Seeded random train/test split; ``test_size`` is a fraction in (0, 1)."""
    n = X.shape[0]
    n_test = int(math.ceil(test_size * n))
    if n_test < 1 or n - n_test < 1:
        raise CLIError(f"{what}: --test-size {test_size:g} leaves no training or no test samples "
                       f"out of {n}")
    order = np.random.default_rng([seed, 2]).permutation(n)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return X[train], y[train], X[test], y[test]


def _check_xy(X, y, what, x_name="X", y_name="y"):
    """Validate user arrays: numeric, X 2-D, y 1-D or 2-D, same number of rows."""
    for name, arr in ((x_name, X), (y_name, y)):
        if arr.dtype.kind not in "biuf":
            raise CLIError(f"{what}: array {name!r} must be numeric; it has dtype {arr.dtype}")
    if X.ndim != 2:
        hint = " (a single feature must be stored as shape (n, 1))" if X.ndim == 1 else ""
        raise CLIError(f"{what}: array {x_name!r} must be 2-D (samples, features); it has shape "
                       f"{X.shape}{hint}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise CLIError(f"{what}: array {y_name!r} must be 1-D or 2-D; it has shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise CLIError(f"{what}: {x_name!r} has {X.shape[0]} rows but {y_name!r} has "
                       f"{y.shape[0]}")
    if X.shape[0] == 0:
        raise CLIError(f"{what}: {x_name!r} has no samples")
    for name, arr in ((x_name, X), (y_name, y)):
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise CLIError(f"{what}: array {name!r} contains NaN or infinite values (missing "
                           f"data?); clean or impute them first")
    return X, y


def load_npz_dataset(path, test_size, seed):
    """A user .npz: arrays X and y (split here), or X_train, y_train, X_test, y_test."""
    import zipfile
    what = str(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = set(npz.files)
            split_keys = ("X_train", "y_train", "X_test", "y_test")
            if all(key in files for key in split_keys):
                arrays = {key: npz[key] for key in split_keys}
            elif "X" in files and "y" in files:
                arrays = {key: npz[key] for key in ("X", "y")}
            else:
                raise CLIError(f"{what} must hold arrays X and y, or X_train, y_train, X_test and "
                               f"y_test; it holds {sorted(files) or 'no arrays'}")
    except CLIError:
        raise
    except AttributeError:  # np.load returned a plain array: a .npy file renamed
        raise CLIError(f"{what} is a single .npy array, not an .npz archive of named arrays") \
            from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        message = str(exc)
        if "allow_pickle" in message or "Object arrays" in message:
            message = "it contains object arrays; only numeric arrays are supported"
        raise CLIError(f"cannot read {what} as an .npz file: {message}") from None
    if "X" in arrays:
        X, y = _check_xy(arrays["X"], arrays["y"], what)
        return Data(what, *_split(X, y, test_size or DEFAULT_TEST_SIZE, seed, what)), True
    X_train, y_train = _check_xy(arrays["X_train"], arrays["y_train"], what, "X_train", "y_train")
    X_test, y_test = _check_xy(arrays["X_test"], arrays["y_test"], what, "X_test", "y_test")
    if X_train.shape[1] != X_test.shape[1]:
        raise CLIError(f"{what}: X_train has {X_train.shape[1]} features but X_test has "
                       f"{X_test.shape[1]}")
    if y_train.shape[1:] != y_test.shape[1:]:
        raise CLIError(f"{what}: y_train has shape {y_train.shape} but y_test has {y_test.shape}")
    return Data(what, X_train, y_train, X_test, y_test), False


def _looks_numeric(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_csv(path, target):
    """(X, y, feature names) from a .csv with a header row; every column must be numeric."""
    what = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise CLIError(f"{what} is empty")
            header = [name.strip() for name in header]
            rows, lines = [], []
            for row in reader:
                if not row:
                    continue  # blank line
                if len(row) != len(header):
                    raise CLIError(f"{what}, line {reader.line_num}: {len(row)} fields, but the "
                                   f"header has {len(header)} columns")
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise CLIError(f"{what} is not a UTF-8 text file ({exc.reason})") from None
    except csv.Error as exc:
        raise CLIError(f"cannot parse {what} as CSV: {exc}") from None
    if all(_looks_numeric(name) for name in header):
        raise CLIError(f"{what} must start with a header row of column names; its first row is "
                       f"all numbers")
    if len(set(header)) != len(header):
        duplicates = sorted({name for name in header if header.count(name) > 1})
        raise CLIError(f"{what}: duplicate column names {duplicates}")
    if target not in header:
        shown = header if len(header) <= 20 else header[:20] + ["..."]
        raise CLIError(f"{what} has no column {target!r}; its columns are {', '.join(shown)}")
    if len(header) < 2:
        raise CLIError(f"{what} has only the target column; at least one feature column is "
                       f"needed")
    if not rows:
        raise CLIError(f"{what} has a header but no data rows")
    cells = np.array(rows, dtype=str)
    values = np.empty(cells.shape, dtype=np.float64)
    for j, name in enumerate(header):
        try:
            values[:, j] = cells[:, j].astype(np.float64)
        except ValueError:
            for i, cell in enumerate(cells[:, j]):
                if not _looks_numeric(cell):
                    problem = "is empty (a missing value)" if not cell.strip() else \
                        f"is {str(cell)!r}"
                    raise CLIError(
                        f"{what}: column {name!r} is not numeric: its value on line {lines[i]} "
                        f"{problem}; "
                        f"only numeric columns are supported (encode categories as numbers or "
                        f"drop the column)") from None
            raise
        if not np.isfinite(values[:, j]).all():
            raise CLIError(f"{what}: column {name!r} contains NaN or infinite values (missing "
                           f"data?); clean or impute them first")
    t = header.index(target)
    features = [name for k, name in enumerate(header) if k != t]
    X = np.ascontiguousarray(np.delete(values, t, axis=1))
    return X, values[:, t].copy(), features


def load_dataset(args):
    """The run's :class:`Data` from ``--dataset`` (built-in name or file path)."""
    from . import datasets
    name = args.dataset
    suffix = Path(name).suffix.lower()
    if args.target is not None and not (name not in BUILTIN_DATASETS and suffix == ".csv"):
        raise CLIError("--target applies to .csv data sets only")
    if name == "digits":
        ds = datasets.load_digits(test_size=args.test_size or DEFAULT_TEST_SIZE, seed=args.seed,
                                  dtype="float64")
        return Data("digits", *ds)
    if name == "mnist1d":
        ds = datasets.load_mnist1d(dtype="float64")
        data = Data("mnist1d", *ds)
        if args.test_size is not None:
            data.notes.append("--test-size is ignored: mnist1d has a fixed train/test split")
        return data
    path = Path(name)
    if suffix not in (".npz", ".csv"):
        raise CLIError(f"unknown data set {name!r}: use digits, mnist1d, or the path of a .npz or "
                       f".csv file")
    if not path.is_file():
        raise CLIError(f"data set file {name!r} does not exist" if not path.exists()
                       else f"data set path {name!r} is not a file")
    if suffix == ".npz":
        data, was_split = load_npz_dataset(path, args.test_size, args.seed)
        if not was_split and args.test_size is not None:
            data.notes.append(f"--test-size is ignored: {name} has its own train/test split")
        return data
    if args.target is None:
        raise CLIError(f"--target COLUMN is required for a .csv data set ({name})")
    X, y, features = read_csv(path, args.target)
    data = Data(str(path), *_split(X, y, args.test_size or DEFAULT_TEST_SIZE, args.seed, name),
                feature_names=features)
    return data


def _whole_numbers(y, what, loss):
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        bad = y[y != np.round(y)][0]
        raise CLIError(f"{what} holds non-integer values (e.g. {bad:g}), which --loss {loss} "
                       f"cannot use as class labels; use --loss mse for regression")


def prepare_targets(data, loss):
    """Turn the targets into what ``loss`` takes and set ``data.n_outputs`` (and ``classes``)."""
    y_train, y_test = data.y_train, data.y_test
    what = f"the target of {data.name}"
    if loss == "mse" or (y_train.ndim == 2 and loss in ("cross_entropy", "binary_cross_entropy")):
        # regression values, probability rows (cross_entropy) or multi-label targets (bce)
        data.n_outputs = 1 if y_train.ndim == 1 else y_train.shape[1]
        if loss == "cross_entropy" and data.n_outputs < 2:
            raise CLIError(f"{what}: probability rows need at least 2 columns")
        dtype = np.float64
        data.y_train, data.y_test = y_train.astype(dtype), y_test.astype(dtype)
        return
    if y_train.ndim == 2:
        raise CLIError(f"{what} has shape {y_train.shape}; --loss {loss} needs one class label "
                       f"per sample")
    both = np.concatenate([y_train, y_test])
    if loss == "binary_cross_entropy" and both.min() >= 0 and both.max() <= 1:
        data.n_outputs = 1  # 0/1 labels or probabilities: one sigmoid output
        data.y_train, data.y_test = y_train.astype(np.float64), y_test.astype(np.float64)
        return
    _whole_numbers(both, what, loss)
    labels = both.astype(np.int64)
    values = np.unique(labels)
    if values.size < 2:
        raise CLIError(f"{what} has a single class ({values[0]}); classification needs at least "
                       f"two")
    if values[0] >= 0 and loss != "binary_cross_entropy":
        n_classes = int(values[-1]) + 1
        codes = labels
    else:
        n_classes = int(values.size)
        codes = np.searchsorted(values, labels)
        data.classes = values.tolist()
    n_train = y_train.shape[0]
    if loss == "binary_cross_entropy":
        if values.size == 2:  # two labels other than 0/1, e.g. -1/1: map to 0/1, one output
            data.n_outputs = 1
            data.y_train = codes[:n_train].astype(np.float64)
            data.y_test = codes[n_train:].astype(np.float64)
            return
        onehot = np.eye(n_classes, dtype=np.float64)[codes]
        data.n_outputs = n_classes
        data.y_train, data.y_test = onehot[:n_train], onehot[n_train:]
        return
    data.n_outputs = max(n_classes, 2)
    data.y_train, data.y_test = codes[:n_train], codes[n_train:]


def _validation_split(X, y, fraction, seed):
    n = X.shape[0]
    n_val = int(round(n * fraction))
    if n_val < 1 or n - n_val < 1:
        raise CLIError(f"--validation-split {fraction:g} leaves no training or no validation "
                       f"samples out of {n}")
    order = np.random.default_rng([seed, 3]).permutation(n)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return X[train], y[train], X[val], y[val]


# ----------------------------------------------------------------------------- model and training

def build_model(args, n_features, n_outputs):
    import fastmlp as fm
    hidden = DEFAULT_HIDDEN if args.hidden is None else [s for group in args.hidden for s in group]
    layers = [fm.Dense(units, activation=args.activation, batchnorm=args.batchnorm,
                       dropout=args.dropout) for units in hidden]
    layers.append(fm.Dense(n_outputs))
    return fm.MLP(n_features, layers, loss=args.loss, dtype=args.dtype, device=args.device,
                  seed=args.seed)


def build_optimizer(args):
    from .optimizers import get_optimizer
    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    hyper = {"lr": lr}
    if args.momentum is not None:
        if args.optimizer not in MOMENTUM_OPTIMIZERS:
            raise CLIError(f"--momentum applies to sgd and rmsprop, not {args.optimizer}")
        hyper["momentum"] = args.momentum
    return get_optimizer(args.optimizer, **hyper)


def build_schedule(args, monitor):
    import fastmlp as fm
    if args.schedule == "step":
        return fm.StepLR(step_size=max(1, args.epochs // STEP_FRACTION), gamma=STEP_GAMMA)
    if args.schedule == "cosine":
        return fm.CosineAnnealingLR(T_max=args.epochs)
    if args.schedule == "plateau":
        return fm.ReduceLROnPlateau(monitor=monitor, factor=PLATEAU_FACTOR,
                                    patience=PLATEAU_PATIENCE)
    return None


def _max_threads():
    import numba
    return int(numba.config.NUMBA_NUM_THREADS)


def choose_threads(requested, model, batch_size):
    """Thread count for ``--threads`` (None: leave the library's default, all cores)."""
    if requested != "auto":
        return min(requested, _max_threads())
    fan_in, largest = model.input_dim, 0
    for layer in model.layers:
        largest = max(largest, fan_in * layer.width)
        fan_in = layer.units
    return 1 if batch_size * largest < SMALL_NETWORK_MACS else None


def _architecture(model):
    sizes = [model.input_dim] + [layer.units for layer in model.layers]
    return "-".join(map(str, sizes))


# ----------------------------------------------------------------------------- output files

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


def _prepare_output(folder):
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"--output {str(folder)!r} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the output folder {str(folder)!r}: {exc.strerror or exc}") \
            from None
    return folder


# ----------------------------------------------------------------------------- the train command

def _percent(value):
    return "-" if value is None else f"{100 * value:.2f}%"


def _print_table(metrics, out):
    """The final results table."""
    has_accuracy = metrics.get("test_accuracy") is not None
    header = f"  {'':<8}{'loss':>12}" + (f"{'accuracy':>12}" if has_accuracy else "")
    print(header, file=out)
    for part in ("train", "test"):
        line = f"  {part:<8}{metrics[f'{part}_loss']:>12.4f}"
        if has_accuracy:
            line += f"{_percent(metrics.get(f'{part}_accuracy')):>12}"
        print(line, file=out)
    print(f"  training: {metrics['epochs_run']} epochs in {metrics['train_time_s']:.2f} s, "
          f"{metrics['samples_per_second']:,.0f} samples/s", file=out)
    print(f"  wall time: {metrics['wall_time_s']:.2f} s", file=out)


class Splits:
    """The arrays a run trains and evaluates on, after splitting, casting and standardizing."""

    def __init__(self, X_train, y_train, X_val, y_val, X_test, y_test, standardizer):
        self.X_train, self.y_train = X_train, y_train
        self.X_val, self.y_val = X_val, y_val
        self.X_test, self.y_test = X_test, y_test
        self.standardizer = standardizer


def _validation_fraction(args):
    fraction = args.validation_split
    if fraction is None:
        fraction = DEFAULT_VALIDATION_SPLIT if args.early_stopping is not None else 0.0
    if args.early_stopping is not None and fraction == 0.0:
        raise CLIError("--early-stopping needs validation data; use a --validation-split above 0")
    return fraction


def prepare_splits(args, data, validation):
    """Cast to ``--dtype``, hold out the validation rows and fit/apply the Standardizer."""
    from .preprocessing import Standardizer
    dtype = np.dtype(args.dtype)
    X_train = np.ascontiguousarray(data.X_train, dtype=dtype)
    X_test = np.ascontiguousarray(data.X_test, dtype=dtype)
    if X_train.shape[1] != X_test.shape[1]:
        raise CLIError(f"the training data have {X_train.shape[1]} features but the test data "
                       f"have {X_test.shape[1]}")
    y_train, y_test = data.y_train, data.y_test
    X_val = y_val = None
    if validation > 0.0:
        X_train, y_train, X_val, y_val = _validation_split(X_train, y_train, validation, args.seed)
    standardizer = None
    if args.standardize:
        standardizer = Standardizer().fit(X_train)
        X_train = standardizer.transform(X_train)
        X_test = standardizer.transform(X_test)
        if X_val is not None:
            X_val = standardizer.transform(X_val)
    return Splits(X_train, y_train, X_val, y_val, X_test, y_test, standardizer)


def _describe(args, data, splits, model, optimizer):
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
            f"model: {_architecture(model)} ({', '.join(extras)}), {model.loss}, "
            f"{model.dtype.name}, {model.n_params:,} parameters; {type(optimizer).__name__} "
            f"lr {optimizer.lr:g}, batch {args.batch_size}, {args.epochs} epochs")


def _fit(trainer, splits):
    """Train; returns the seconds taken. Non-finite-loss warnings become one stderr line."""
    from .trainer import NonFiniteLossWarning
    validation = None if splits.X_val is None else (splits.X_val, splits.y_val)
    began = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonFiniteLossWarning)
        trainer.fit(splits.X_train, splits.y_train, validation_data=validation)
    seconds = time.perf_counter() - began
    for warning in caught:
        if issubclass(warning.category, NonFiniteLossWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    return seconds


def final_metrics(trainer, splits, fit_seconds):
    """Loss (and accuracy for classification) on every split, plus speed and stop details."""
    model = trainer.model
    epochs_run = len(trainer.history.get("loss", []))
    metrics = {}
    parts = [("train", splits.X_train, splits.y_train), ("test", splits.X_test, splits.y_test)]
    if splits.X_val is not None:
        parts.append(("val", splits.X_val, splits.y_val))
    for name, X, y in parts:
        result = trainer.evaluate(X, y)
        metrics[f"{name}_loss"] = result["loss"]
        if model.is_classifier:
            metrics[f"{name}_accuracy"] = result.get("accuracy")
    metrics["epochs_run"] = epochs_run
    metrics["stop_reason"] = trainer.stop_reason
    if trainer.early_stopping is not None:
        metrics["best_epoch"] = trainer.early_stopping.best_epoch
    metrics["train_time_s"] = fit_seconds
    metrics["samples_per_second"] = (splits.X_train.shape[0] * epochs_run / fit_seconds
                                     if fit_seconds > 0 else None)
    return metrics


def _communicator(args):
    """The MPI communicator of a ``--distributed`` run, else None."""
    if not args.distributed:
        if args.sync_batchnorm:
            raise CLIError("--sync-batchnorm applies to --distributed runs")
        return None
    if args.device != "cpu":
        raise CLIError("--distributed trains on the CPU; drop --device cuda")
    from .mpi import Communicator
    return Communicator(timeout=args.mpi_timeout)


class _Run:
    """What ``fastmlp train`` builds before training."""


def _set_up(args, comm, root):
    """Data, model, optimizer and trainer of the run; only rank 0 makes the output folder."""
    import fastmlp as fm
    run = _Run()
    run.validation = _validation_fraction(args)
    run.optimizer = optimizer = build_optimizer(args)
    run.optimizer_config = optimizer.get_config()  # before a schedule changes lr
    run.folder = _prepare_output(args.output) if root else None
    run.data = data = load_dataset(args)
    for note in data.notes if root else ():
        print(f"note: {note}", file=sys.stderr)
    prepare_targets(data, args.loss)
    run.splits = splits = prepare_splits(args, data, run.validation)
    run.model = model = build_model(args, splits.X_train.shape[1], data.n_outputs)
    run.early = None
    if args.early_stopping is not None:
        run.early = fm.EarlyStopping(monitor="val_loss", patience=args.early_stopping,
                                     restore_best=True)
    schedule = build_schedule(args, "val_loss" if splits.X_val is not None else "loss")
    options = dict(optimizer=optimizer, batch_size=args.batch_size, epochs=args.epochs,
                   shuffle=True, seed=args.seed, l1=args.l1, l2=args.l2, early_stopping=run.early,
                   lr_schedule=schedule, clip_norm=args.clip_norm,
                   progress=not (args.quiet or args.no_progress))
    if comm is None:
        run.trainer = fm.Trainer(model, **options)
    else:
        from .mpi import DistributedTrainer
        run.trainer = DistributedTrainer(
            model, comm=comm, batchnorm="sync" if args.sync_batchnorm else "local", **options)
    return run


def run_train(args, started):
    """Carry out ``fastmlp train``; returns the exit status."""
    import contextlib

    import fastmlp as fm

    comm = _communicator(args)
    root = comm is None or comm.rank == 0
    if not root:
        args.quiet = True  # rank 0 alone prints and writes files
    out = sys.stdout
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=out, flush=True))
    try:
        run = _set_up(args, comm, root)
    except (CLIError, ValueError, TypeError, OSError, ImportError) as exc:
        if comm is None:
            raise
        comm.agree(exc, "the set-up of the run")  # raises exc here, DistributedError elsewhere
    if comm is not None:
        comm.agree(None, "the set-up of the run")
    data, splits, model, trainer, early = run.data, run.splits, run.model, run.trainer, run.early
    for line in _describe(args, data, splits, model, run.optimizer):
        say(line)
    if comm is not None:
        say(f"distributed: {comm.size} MPI ranks, global batch {args.batch_size}")

    threads = choose_threads(args.threads, model, args.batch_size)
    if comm is not None and args.threads == "auto":
        from .mpi import default_threads
        threads = default_threads(comm.comm)
    with contextlib.nullcontext() if threads is None else fm.num_threads(threads):
        fit_seconds = _fit(trainer, splits)
        metrics = final_metrics(trainer, splits, fit_seconds)
    if not root:
        return EXIT_OK

    folder = run.folder
    model.save(folder / MODEL_FILE, standardizer=splits.standardizer)
    plotted = write_curves(folder / CURVES_FILE, trainer.history,
                           f"{data.name}: {_architecture(model)} {model.loss}",
                           best_epoch=early.best_epoch if early is not None else None)
    if not plotted:
        print(f"note: matplotlib is not installed, so {CURVES_FILE} was not written; "
              f"{PLOT_HINT} adds it", file=sys.stderr)
    metrics["wall_time_s"] = time.perf_counter() - started

    arguments = {k: v for k, v in vars(args).items() if k not in ("handler", "_argv")}
    arguments.update(hidden=[layer.units for layer in model.layers[:-1]],
                     lr=run.optimizer_config["lr"], validation_split=run.validation)
    metrics["threads"] = threads if threads is not None else _max_threads()
    metrics["ranks"] = 1 if comm is None else comm.size
    document = {
        "fastmlp_version": __version__,
        "command": "train",
        "argv": list(getattr(args, "_argv", [])),
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
        "history": trainer.history,
        "files": {"model": MODEL_FILE, "curves": CURVES_FILE if plotted else None},
    }
    write_json_atomic(folder / HISTORY_FILE, document)

    if not args.quiet:
        _print_table(metrics, out)
        written = [HISTORY_FILE, MODEL_FILE] + ([CURVES_FILE] if plotted else [])
        print(f"wrote {', '.join(written)} to {folder}{os.sep}", file=out, flush=True)
    return EXIT_OK


def main(argv=None):
    """Entry point of the ``fastmlp`` command; returns the exit status (0 ok, 2 error)."""
    started = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args._argv = argv
    try:
        return args.handler(args, started)
    except (CLIError, ValueError, TypeError, OSError, ImportError, CudaUnavailableError,
            DistributedError) as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
            message = f"{exc.strerror}: {exc.filename}"
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
