"""Small classification data sets, available offline.

Each loader returns a :class:`Dataset` named tuple ``(X_train, y_train, X_test, y_test)``:
``X_*`` are C-contiguous float arrays of shape (n, d) in the requested dtype, ``y_*`` are int64
class indices of shape (n,).

- :func:`load_digits`: scikit-learn's bundled 8x8 digits (1797 samples, 64 features with values
  0..16, 10 classes), split into train and test with a seeded stratified split.
- :func:`load_mnist1d`: MNIST-1D (5000 samples: 4000 train / 1000 test, 40 features, 10 classes),
  generated locally with the ``mnist1d`` package and cached on disk as an ``.npz`` file.

Both need the optional dependencies: ``pip install "fastmlp[datasets]"``.
"""

from __future__ import annotations

import numbers
import os
import random
import uuid
import warnings
import zipfile
import zlib
from contextlib import contextmanager, suppress
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["Dataset", "load_digits", "load_mnist1d", "default_cache_dir"]

_INSTALL_HINT = 'install the optional dependencies with: pip install "fastmlp[datasets]"'
_CACHE_DIR_ENV = "FASTMLP_DATA_HOME"
_MNIST1D_KEYS = ("X_train", "y_train", "X_test", "y_test")
_MNIST1D_SHAPES = {
    "X_train": (4000, 40),
    "y_train": (4000,),
    "X_test": (1000, 40),
    "y_test": (1000,),
}
_N_CLASSES = 10


class Dataset(NamedTuple):
    """A train/test split: ``X_*`` float arrays (n, d), ``y_*`` int64 labels (n,)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


# argument checks ---------------------------------------------------------------------------------


def _check_float_dtype(dtype) -> np.dtype:
    """Return ``dtype`` as ``np.dtype``; only float32 and float64 are accepted."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be 'float32' or 'float64'; got {dtype!r}") from exc
    if resolved not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return resolved


def _check_seed(seed) -> int:
    """Return ``seed`` as an int in [0, 2**32)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be a non-negative integer; got {type(seed).__name__} {seed!r}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32); got {seed}")
    return int(seed)


def _check_test_size(test_size, n_samples: int, n_classes: int):
    """Return ``test_size`` (a fraction in (0, 1) or a sample count) as float or int.

    The resulting test count ``ceil(test_size * n_samples)`` or ``test_size`` must leave at least
    one sample of every class on each side of a stratified split.
    """
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a float in (0, 1) or an int; got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        test_size = int(test_size)
        n_test = test_size
    else:
        test_size = float(test_size)
        if not 0.0 < test_size < 1.0:
            raise ValueError(
                f"test_size as a fraction must lie strictly between 0 and 1; got {test_size}"
            )
        n_test = int(np.ceil(test_size * n_samples))
    if not n_classes <= n_test <= n_samples - n_classes:
        raise ValueError(
            f"test_size={test_size!r} gives {n_test} test samples; a stratified split of "
            f"{n_samples} samples in {n_classes} classes needs between {n_classes} and "
            f"{n_samples - n_classes}"
        )
    return test_size


def _as_dataset(X_train, y_train, X_test, y_test, dtype: np.dtype) -> Dataset:
    """Cast to the public layout: C-contiguous ``dtype`` features, int64 labels."""
    return Dataset(
        np.ascontiguousarray(X_train, dtype=dtype),
        np.ascontiguousarray(y_train, dtype=np.int64),
        np.ascontiguousarray(X_test, dtype=dtype),
        np.ascontiguousarray(y_test, dtype=np.int64),
    )


# digits ------------------------------------------------------------------------------------------


def load_digits(test_size=0.2, seed: int = 0, dtype="float32") -> Dataset:
    """scikit-learn's 8x8 handwritten digits, split into train and test.

    Parameters
    ----------
    test_size : float in (0, 1) or int, default 0.2
        Fraction (rounded up) or number of the 1797 samples that go to the test set.
    seed : int, default 0
        Seed of the split; the same seed gives the same split.
    dtype : "float32" or "float64", default "float32"
        dtype of ``X_train`` and ``X_test``.

    Returns
    -------
    Dataset
        ``X_*`` of shape (n, 64) with the raw pixel intensities 0..16 (not rescaled; see
        :class:`fastmlp.Standardizer`), ``y_*`` int64 digits 0..9. The split is stratified: each
        class keeps its overall proportion in both parts (up to rounding). With the defaults,
        1437 train and 360 test samples.
    """
    dtype = _check_float_dtype(dtype)
    seed = _check_seed(seed)
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise ImportError(f"load_digits needs scikit-learn; {_INSTALL_HINT}") from exc

    bunch = sklearn_load_digits()
    X, y = bunch.data, bunch.target
    test_size = _check_test_size(test_size, n_samples=len(y), n_classes=len(np.unique(y)))
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=seed, shuffle=True, stratify=y
    )
    return _as_dataset(X_train, y_train, X_test, y_test, dtype)


# MNIST-1D ----------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$FASTMLP_DATA_HOME`` when set, else ``~/.cache/fastmlp``."""
    env = os.environ.get(_CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path("~/.cache/fastmlp").expanduser()


def load_mnist1d(seed: int = 42, dtype="float32", cache_dir=None) -> Dataset:
    """MNIST-1D, generated offline with the ``mnist1d`` package and cached on disk.

    The data come from ``mnist1d.data.make_dataset`` with its default arguments (5000 samples,
    80/20 train/test split, 40 features, 10 classes) except the generator seed; nothing is
    downloaded. The split is the generator's own: the first 4000 shuffled samples are the
    training set, so class counts are close to, not exactly, 400 and 100.

    Parameters
    ----------
    seed : int, default 42
        Generator seed in [0, 2**32); the same seed gives the same data. The default, 42, is the
        package's own default: the MNIST-1D data set of the paper.
    dtype : "float32" or "float64", default "float32"
        dtype of ``X_train`` and ``X_test`` (generated and cached in float64).
    cache_dir : str or path-like, optional
        Folder of the cache file; default :func:`default_cache_dir`. The file
        ``mnist1d-<package version>-seed<seed>.npz`` is written atomically on the first call and
        read on later calls; an unreadable or malformed file is regenerated. If the folder is not
        writable the data are still returned, with a warning.

    Returns
    -------
    Dataset
        ``X_train`` (4000, 40), ``y_train`` (4000,), ``X_test`` (1000, 40), ``y_test`` (1000,);
        labels are int64 digits 0..9. The generator shifts and scales all 5000 x 40 values
        together to mean 0 and standard deviation 1 (one scalar, not per feature).

    Notes
    -----
    Generation takes about a second. The generator seeds NumPy's and Python's global random
    states; this function restores both afterwards, but it is not safe to call from several
    threads at once while other code uses those global states.
    """
    dtype = _check_float_dtype(dtype)
    seed = _check_seed(seed)
    version = _mnist1d_version()
    folder = (
        Path(os.fspath(cache_dir)).expanduser() if cache_dir is not None else default_cache_dir()
    )
    path = folder / f"mnist1d-{version}-seed{seed}.npz"

    arrays = _read_mnist1d_cache(path)
    if arrays is None:
        arrays = _generate_mnist1d(seed)
        _write_cache(path, arrays)
    return _as_dataset(*(arrays[key] for key in _MNIST1D_KEYS), dtype=dtype)


def _mnist1d_version() -> str:
    """Installed ``mnist1d`` version (read from package metadata, without importing it)."""
    try:
        return importlib_metadata.version("mnist1d")
    except importlib_metadata.PackageNotFoundError as exc:
        raise ImportError(f"load_mnist1d needs the 'mnist1d' package; {_INSTALL_HINT}") from exc


def _generate_mnist1d(seed: int) -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset`` with default arguments and ``seed``.

    Returns ``{"X_train": (4000, 40) float64, "y_train": (4000,) int64, "X_test": (1000, 40),
    "y_test": (1000,)}``.
    """
    try:
        # Importing mnist1d also imports matplotlib.pyplot and requests (about 1 s); it is only
        # done here, on a cache miss. make_dataset itself needs only numpy and scipy.
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise ImportError(f"load_mnist1d needs the 'mnist1d' package; {_INSTALL_HINT}") from exc

    args = get_dataset_args()
    args.seed = seed
    with _preserved_global_rng():
        data = make_dataset(args)
    arrays = {
        "X_train": np.ascontiguousarray(data["x"], dtype=np.float64),
        "y_train": np.ascontiguousarray(data["y"], dtype=np.int64),
        "X_test": np.ascontiguousarray(data["x_test"], dtype=np.float64),
        "y_test": np.ascontiguousarray(data["y_test"], dtype=np.int64),
    }
    if not _valid_mnist1d_arrays(arrays):
        shapes = {key: value.shape for key, value in arrays.items()}
        raise RuntimeError(
            f"mnist1d.data.make_dataset returned arrays of shapes {shapes}; "
            f"expected {_MNIST1D_SHAPES}"
        )
    return arrays


@contextmanager
def _preserved_global_rng():
    """Restore ``np.random``'s and ``random``'s global states on exit."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _valid_mnist1d_arrays(arrays: dict[str, np.ndarray]) -> bool:
    """Shapes as in ``_MNIST1D_SHAPES``, finite float features, integer labels in [0, 10)."""
    for key, shape in _MNIST1D_SHAPES.items():
        value = arrays.get(key)
        if value is None or value.shape != shape:
            return False
        if key.startswith("X"):
            if value.dtype.kind != "f" or not np.isfinite(value).all():
                return False
        elif value.dtype.kind not in "iu" or value.min() < 0 or value.max() >= _N_CLASSES:
            return False
    return True


def _read_mnist1d_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the file is missing, unreadable or malformed."""
    if not path.is_file():
        return None
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array
            return None
        with loaded as npz:
            arrays = {key: npz[key] for key in _MNIST1D_KEYS if key in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):
        return None
    return arrays if _valid_mnist1d_arrays(arrays) else None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically (temporary file in the same folder + os.replace).

    A failure to write is reported as a warning, never as an error.
    """
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp_path, "xb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp_path, path)
    except OSError as exc:
        warnings.warn(f"could not write the data cache {path}: {exc}", RuntimeWarning, stacklevel=3)
    finally:
        with suppress(OSError):
            tmp_path.unlink(missing_ok=True)
