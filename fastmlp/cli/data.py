"""The data of a ``fastmlp train`` run: the built-in data sets or a user's .npz/.csv file, split
into training, validation and test samples, with the targets prepared for the loss and the
features cast to ``--dtype`` and standardized.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from .._validation import overflow_message, resolve_dtype
from .arguments import (
    BUILTIN_DATASETS,
    DEFAULT_TEST_SIZE,
    DEFAULT_VALIDATION_SPLIT,
    CLIError,
)

# ----------------------------------------------------------------------------- loading

class Data:
    """Training and test arrays plus a description of where they came from."""

    def __init__(self, name, X_train, y_train, X_test, y_test, feature_names=None):
        self.name = name
        self.X_train, self.y_train = X_train, y_train
        self.X_test, self.y_test = X_test, y_test
        self.feature_names = feature_names
        self.classes = None        # original label values when they were mapped to 0..C-1
        self.n_outputs = None
        self.outputs_note = None   # why n_outputs exceeds the number of distinct labels
        self.notes = []


def _hold_out(X, y, n_held, rng_key, problem):
    """(X, y) without and with ``n_held`` rows drawn by ``default_rng(rng_key)``, each in the
    original row order; CLIError "``problem`` out of n" when either part would be empty."""
    n = X.shape[0]
    if n_held < 1 or n - n_held < 1:
        raise CLIError(f"{problem} out of {n}")
    order = np.random.default_rng(rng_key).permutation(n)
    held, kept = np.sort(order[:n_held]), np.sort(order[n_held:])
    return X[kept], y[kept], X[held], y[held]


def _split(X, y, test_size, seed, what):
    """Seeded random train/test split; ``test_size`` is a fraction in (0, 1)."""
    return _hold_out(X, y, int(math.ceil(test_size * X.shape[0])), [seed, 2],
                     f"{what}: --test-size {test_size:g} leaves no training or no test samples")


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
    _check_columns(X, y, what, x_name, y_name)
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


def _check_columns(X, y, what, x_name, y_name):
    """CLIError when X has no feature columns or a 2-D y no target columns."""
    if X.shape[1] == 0:
        raise CLIError(f"{what}: array {x_name!r} has shape {X.shape}: no feature columns; "
                       f"at least one is needed")
    if y.ndim == 2 and y.shape[1] == 0:
        raise CLIError(f"{what}: array {y_name!r} has shape {y.shape}: no target columns; the "
                       f"target needs at least one value per sample (shape (n,) or (n, k), k >= 1)")


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (an empty one has only its end record)
_NPY_MAGIC = b"\x93NUMPY"


def _check_npz_signature(path, what):
    """CLIError unless ``path`` starts like a zip archive, the container of every .npz file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise CLIError(f"cannot read {what}: {exc.strerror or exc}") from None
    if head.startswith(_ZIP_MAGIC):
        return
    if head.startswith(_NPY_MAGIC):
        raise CLIError(f"{what} is a single .npy array, not an .npz archive of named arrays "
                       f"(save X and y with numpy.savez)")
    if not head:
        kind = "it is empty"
    elif all(byte in b"\t\n\r" or 32 <= byte < 127 for byte in head):
        kind = "it looks like a text file"
    else:
        kind = "it is some other binary file"
    raise CLIError(f"{what} is not an .npz archive ({kind}); an .npz file is the zip archive "
                   f"numpy.savez writes, e.g. numpy.savez(path, X=X, y=y); a text table needs a "
                   f".csv name and --target")


def load_npz_dataset(path, test_size, seed):
    """A user .npz: arrays X and y (split here), or X_train, y_train, X_test, y_test."""
    import zipfile
    what = str(path)
    _check_npz_signature(path, what)
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


_OTHER_SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}


def _check_separator(header, what):
    """CLIError with a hint when the header is one field holding another common separator."""
    if len(header) != 1:
        return
    for separator, name in _OTHER_SEPARATORS.items():
        if separator in header[0]:
            shown = header[0] if len(header[0]) <= 60 else header[0][:57] + "..."
            raise CLIError(
                f"{what} has a single column {shown!r}: its header looks separated by {name} "
                f"({separator!r}), but fastmlp reads comma-separated files; convert it first, "
                f"e.g. with pandas: pandas.read_csv(path, sep={separator!r}).to_csv(new_path, "
                f"index=False) (with decimal commas, also pass decimal=',')")


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
            _check_separator(header, what)
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
    from .. import datasets
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


# ----------------------------------------------------------------------------- targets

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
        if n_classes > values.size:
            data.outputs_note = (f"the labels are class indices, so the largest label, "
                                 f"{values[-1]}, makes {n_classes} outputs")
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


# ----------------------------------------------------------------------------- splits

class Splits:
    """The arrays a run trains and evaluates on, after splitting, casting and standardizing."""

    def __init__(self, X_train, y_train, X_val, y_val, X_test, y_test, standardizer):
        self.X_train, self.y_train = X_train, y_train
        self.X_val, self.y_val = X_val, y_val
        self.X_test, self.y_test = X_test, y_test
        self.standardizer = standardizer


def validation_fraction(args):
    """The fraction of the training samples held out for validation: --validation-split, or
    by default DEFAULT_VALIDATION_SPLIT with --early-stopping and 0 without."""
    fraction = args.validation_split
    if fraction is None:
        fraction = DEFAULT_VALIDATION_SPLIT if args.early_stopping is not None else 0.0
    if args.early_stopping is not None and fraction == 0.0:
        raise CLIError("--early-stopping needs validation data; use a --validation-split above 0")
    return fraction


def _validation_split(X, y, fraction, seed):
    return _hold_out(X, y, int(round(X.shape[0] * fraction)), [seed, 3],
                     f"--validation-split {fraction:g} leaves no training or no validation "
                     f"samples")


def _cast(arr, dtype, name, what):
    """``arr`` (finite: checked when it was read) as C-contiguous ``dtype``; CLIError when its
    values overflow ``dtype`` (e.g. float64 1e300 read for --dtype float32)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        raise CLIError(overflow_message(arr, dtype, name,
                                        f"use --dtype float64 or rescale the {what}"))
    return out


def prepare_splits(args, data, validation):
    """Cast to ``--dtype``, hold out the validation rows and fit/apply the Standardizer."""
    from ..preprocessing import Standardizer
    dtype = resolve_dtype(args.dtype)
    X_train = _cast(data.X_train, dtype, f"{data.name}: X", "features")
    X_test = _cast(data.X_test, dtype, f"{data.name}: X", "features")
    if X_train.shape[1] != X_test.shape[1]:
        raise CLIError(f"the training data have {X_train.shape[1]} features but the test data "
                       f"have {X_test.shape[1]}")
    y_train, y_test = data.y_train, data.y_test
    for y in (y_train, y_test):
        if y.dtype.kind == "f":  # regression values or probabilities: the model casts them
            _cast(y, dtype, f"{data.name}: y", "targets")
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
