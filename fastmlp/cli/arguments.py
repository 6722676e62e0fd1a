"""The arguments of the ``fastmlp`` command: its exit statuses, the defaults and limits of the
``train`` options, :class:`CLIError`, the argparse type functions that validate single values,
and the parser itself (subcommands ``train`` and ``export``).
"""

from __future__ import annotations

import argparse
import math

from .. import __version__
from .._validation import MAX_SIZE

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


class CLIError(Exception):
    """A usage or input problem, reported as ``fastmlp train: error: <message>`` with exit
    status 2."""


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
        if size > MAX_SIZE:
            raise argparse.ArgumentTypeError(
                f"invalid hidden sizes {text!r}: layer sizes must be <= {MAX_SIZE} (2**31 - 1); "
                f"got {size}")
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
    from ..layers import ACTIVATIONS
    return tuple(ACTIVATIONS)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line, in the form of every error of the
    command (``fastmlp train: error: ...``), ending with a pointer to ``--help``."""

    commands = None  # {name: subparser}, set on the top-level parser

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):
        # unknown arguments after a command are that command's error ("fastmlp train: error:")
        args, extras = self.parse_known_args(args, namespace)
        if extras:
            command = (self.commands or {}).get(getattr(args, "command", None), self)
            command.error(f"unrecognized arguments: {' '.join(extras)}")
        return args


def build_parser(train_handler, export_handler=None):
    """The argparse parser of the ``fastmlp`` command: subcommand ``train``, and ``export`` when
    ``export_handler`` is given; parsing a subcommand sets ``args.handler`` to its handler."""
    parser = _Parser(
        prog="fastmlp",
        description="fastmlp: fast multilayer-perceptron training with Numba kernels.",
        epilog="Run 'fastmlp train --help' for the options of the train command and "
               "'fastmlp export --help' for those of export.")
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
            "exit status: 0 on success, 2 on a usage or input error (reported on stderr as\n"
            "one line 'fastmlp train: error: ...').\n"
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
        "--dtype", default="float32", choices=("float32", "float64", "mixed_bfloat16"),
        help="floating-point type of the parameters and computation (default: float32); "
             "mixed_bfloat16: float32 parameters with bfloat16 matrix products (CPU only; "
             'pip install "fastmlp[bf16]")')
    model.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"),
        help="where to train (default: cpu)")
    model.add_argument(
        "--cuda-matmul", default="numba", choices=("numba", "cublas", "auto"),
        help="with --device cuda, who computes the matrix products: fastmlp's numba.cuda kernel, "
             "cuBLAS through CuPy (the cublas extra), or auto (cuBLAS for large products when "
             "CuPy is installed) (default: numba)")

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
    train.set_defaults(handler=train_handler)
    parser.commands = {"train": train}
    if export_handler is not None:
        parser.commands["export"] = _add_export_parser(commands, export_handler)
    return parser


def _add_export_parser(commands, handler):
    """The ``export`` subcommand: a saved model (MODEL.npz) to an ONNX file (MODEL.onnx)."""
    from ..interop.onnx_export import DEFAULT_OPSET, MIN_OPSET
    export = commands.add_parser(
        "export", help="write a saved model as an ONNX file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Write a model saved by fastmlp (the model.npz of 'fastmlp train', or MLP.save) as\n"
            "an ONNX file that onnxruntime and other ONNX runtimes run without fastmlp. Its\n"
            "input X takes raw features: a Standardizer saved with the model is folded in.\n"
            "Outputs: label and probabilities (cross_entropy, binary_cross_entropy), label\n"
            "and scores (hinge), output (mse). Needs the onnx extra:\n"
            "pip install \"fastmlp[onnx]\"."),
        epilog=("exit status: 0 on success, 2 on a usage or input error.\n"
                "\n"
                "example:\n"
                "  fastmlp export fastmlp-run/model.npz model.onnx\n"))
    export.add_argument("model", metavar="MODEL.npz", help="the saved model to read")
    export.add_argument("output", metavar="MODEL.onnx",
                        help="the ONNX file to write (replaced atomically if it exists)")
    export.add_argument(
        "--opset", type=_positive_int, default=None, metavar="N",
        help=f"ai.onnx opset version to write, from {MIN_OPSET} to the newest the installed onnx "
             f"knows (default: {DEFAULT_OPSET})")
    export.add_argument("--quiet", action="store_true", help="print nothing but errors")
    export.set_defaults(handler=handler)
    return export
