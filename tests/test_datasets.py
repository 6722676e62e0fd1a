import random
import shutil
import sys

import numpy as np
import pytest

import fastmlp.datasets as datasets
from fastmlp.datasets import Dataset, load_digits, load_mnist1d

N_DIGITS = 1797


@pytest.fixture
def sklearn():
    return pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory):
    """A cache folder holding MNIST-1D for seed 0, generated once for this module."""
    pytest.importorskip("mnist1d")
    folder = tmp_path_factory.mktemp("mnist1d_cache")
    data = load_mnist1d(seed=0, dtype="float64", cache_dir=folder)
    return folder, data


def cache_file(folder):
    (path,) = folder.glob("mnist1d-*-seed0.npz")
    return path


def copy_cache(src_folder, dst_folder):
    dst_folder.mkdir(exist_ok=True)
    return shutil.copy(cache_file(src_folder), dst_folder)


def fail_if_called(*args, **kwargs):
    raise AssertionError("the data were regenerated instead of read from the cache")


def assert_layout(ds, n_train, n_test, n_features, dtype):
    assert isinstance(ds, Dataset)
    X_train, y_train, X_test, y_test = ds  # unpackable
    assert X_train.shape == (n_train, n_features) and X_test.shape == (n_test, n_features)
    assert y_train.shape == (n_train,) and y_test.shape == (n_test,)
    for X in (X_train, X_test):
        assert X.dtype == dtype and X.flags.c_contiguous and np.isfinite(X).all()
    for y in (y_train, y_test):
        assert y.dtype == np.int64 and y.flags.c_contiguous
        assert y.min() == 0 and y.max() == 9


def assert_datasets_equal(a, b):
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)


# argument checks (no optional package needed) ----------------------------------------------------


@pytest.mark.parametrize("loader", [load_digits, load_mnist1d])
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"dtype": "int32"}, ValueError, "dtype must be 'float32' or 'float64'"),
        ({"dtype": "float16"}, ValueError, "dtype must be 'float32' or 'float64'"),
        ({"dtype": "not-a-dtype"}, TypeError, "dtype must be 'float32' or 'float64'"),
        ({"seed": -1}, ValueError, "seed must be in"),
        ({"seed": 2**32}, ValueError, "seed must be in"),
        ({"seed": 1.5}, TypeError, "seed must be a non-negative integer"),
        ({"seed": None}, TypeError, "seed must be a non-negative integer"),
    ],
)
def test_bad_arguments(loader, kwargs, error, match):
    with pytest.raises(error, match=match):
        loader(**kwargs)


def test_missing_sklearn_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "fastmlp\[datasets\]"'):
        load_digits()


def test_missing_mnist1d_gives_install_hint(monkeypatch, tmp_path):
    def not_installed(name):
        raise datasets.importlib_metadata.PackageNotFoundError(name)

    monkeypatch.setattr(datasets.importlib_metadata, "version", not_installed)
    with pytest.raises(
        ImportError, match=r"'mnist1d' package.*pip install \"fastmlp\[datasets\]\""
    ):
        load_mnist1d(cache_dir=tmp_path)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTMLP_DATA_HOME", str(tmp_path))
    assert datasets.default_cache_dir() == tmp_path
    monkeypatch.delenv("FASTMLP_DATA_HOME")
    assert datasets.default_cache_dir().parts[-2:] == (".cache", "fastmlp")


# digits ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32])
def test_digits_layout(sklearn, dtype):
    assert_layout(load_digits(dtype=dtype), 1437, 360, 64, np.dtype(dtype))


def test_digits_values_and_class_counts(sklearn):
    from sklearn.datasets import load_digits as sklearn_load_digits

    full = sklearn_load_digits()
    ds = load_digits(dtype="float64")
    np.testing.assert_array_equal(
        np.bincount(ds.y_train) + np.bincount(ds.y_test), np.bincount(full.target)
    )
    assert ds.X_train.min() == 0.0 and ds.X_train.max() == 16.0
    # every returned row is a row of the original data, with its own label
    rows = {tuple(x): y for x, y in zip(full.data, full.target, strict=True)}
    assert all(rows[tuple(x)] == y for x, y in zip(ds.X_test, ds.y_test, strict=True))


@pytest.mark.parametrize("test_size", [0.2, 0.5, 100])
def test_digits_split_is_stratified(sklearn, test_size):
    ds = load_digits(test_size=test_size, seed=3)
    n_test = len(ds.y_test)
    assert n_test == (
        test_size if isinstance(test_size, int) else int(np.ceil(test_size * N_DIGITS))
    )
    class_counts = np.bincount(ds.y_train) + np.bincount(ds.y_test)
    expected_test = class_counts * n_test / N_DIGITS
    assert np.all(np.abs(np.bincount(ds.y_test, minlength=10) - expected_test) <= 1)


def test_digits_is_deterministic_for_a_seed(sklearn):
    assert_datasets_equal(load_digits(seed=7), load_digits(seed=7))
    assert not np.array_equal(load_digits(seed=7).y_train, load_digits(seed=8).y_train)


def test_digits_float32_equals_cast_float64(sklearn):
    np.testing.assert_array_equal(
        load_digits(dtype="float32").X_train,
        load_digits(dtype="float64").X_train.astype(np.float32),
    )


@pytest.mark.parametrize(
    "test_size, error",
    [
        (0.0, ValueError),
        (1.0, ValueError),
        (-0.1, ValueError),
        (5, ValueError),
        (N_DIGITS - 5, ValueError),
        ("0.2", TypeError),
    ],
)
def test_digits_bad_test_size(sklearn, test_size, error):
    with pytest.raises(error, match="test_size"):
        load_digits(test_size=test_size)


# MNIST-1D ----------------------------------------------------------------------------------------


def test_mnist1d_layout_and_class_counts(mnist1d_cache):
    folder, data = mnist1d_cache
    assert_layout(data, 4000, 1000, 40, np.float64)
    # the generator makes 500 samples of each digit, then shuffles and splits 80/20
    np.testing.assert_array_equal(np.bincount(data.y_train) + np.bincount(data.y_test), 500)
    assert_layout(load_mnist1d(seed=0, cache_dir=folder), 4000, 1000, 40, np.float32)


def test_mnist1d_float32_equals_cast_float64(mnist1d_cache):
    folder, data = mnist1d_cache
    ds32 = load_mnist1d(seed=0, dtype="float32", cache_dir=folder)
    np.testing.assert_array_equal(ds32.X_train, data.X_train.astype(np.float32))
    np.testing.assert_array_equal(ds32.y_test, data.y_test)


def test_mnist1d_cache_file_is_plain_npz(mnist1d_cache):
    folder, data = mnist1d_cache
    with np.load(cache_file(folder), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["X_test", "X_train", "y_test", "y_train"]
        np.testing.assert_array_equal(npz["X_train"], data.X_train)
    assert not list(folder.glob("*.tmp")), "temporary files left behind"


def test_mnist1d_second_call_reads_the_cache(mnist1d_cache, monkeypatch):
    folder, data = mnist1d_cache
    monkeypatch.setattr(datasets, "_generate_mnist1d", fail_if_called)
    assert_datasets_equal(load_mnist1d(seed=0, dtype="float64", cache_dir=folder), data)


def test_mnist1d_default_cache_dir_from_environment(mnist1d_cache, monkeypatch):
    folder, data = mnist1d_cache
    monkeypatch.setenv("FASTMLP_DATA_HOME", str(folder))
    monkeypatch.setattr(datasets, "_generate_mnist1d", fail_if_called)
    assert_datasets_equal(load_mnist1d(seed=0, dtype="float64"), data)


def test_mnist1d_generation_is_deterministic_and_keeps_global_rng(mnist1d_cache, tmp_path):
    _, data = mnist1d_cache
    np.random.seed(123)
    random.seed(123)
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    fresh = load_mnist1d(seed=0, dtype="float64", cache_dir=tmp_path)
    assert_datasets_equal(fresh, data)
    np.testing.assert_array_equal(np.random.get_state()[1], np_before)
    assert random.getstate() == py_before


def test_mnist1d_other_seed_gives_other_data(mnist1d_cache, tmp_path):
    _, data = mnist1d_cache
    other = load_mnist1d(seed=1, dtype="float64", cache_dir=tmp_path)
    assert not np.array_equal(other.X_train, data.X_train)
    assert len(list(tmp_path.glob("mnist1d-*-seed1.npz"))) == 1


def test_mnist1d_corrupt_cache_is_regenerated(mnist1d_cache, tmp_path, monkeypatch):
    folder, data = mnist1d_cache
    path = copy_cache(folder, tmp_path / "cache")
    with open(path, "r+b") as handle:
        handle.truncate(1000)
    calls = []
    generate = datasets._generate_mnist1d
    monkeypatch.setattr(
        datasets, "_generate_mnist1d", lambda seed: calls.append(seed) or generate(seed)
    )

    assert_datasets_equal(load_mnist1d(seed=0, dtype="float64", cache_dir=tmp_path / "cache"), data)
    assert calls == [0]
    # the rewritten file is valid again
    assert_datasets_equal(load_mnist1d(seed=0, dtype="float64", cache_dir=tmp_path / "cache"), data)
    assert calls == [0]


def write_garbage(path):
    path.write_bytes(b"not an npz file" * 10)


def write_empty(path):
    path.write_bytes(b"")


def write_bare_npy(path):
    with open(path, "wb") as handle:
        np.save(handle, np.arange(3))


def write_wrong_shapes(path):
    np.savez(
        path,
        X_train=np.zeros((10, 40)),
        y_train=np.zeros(10, np.int64),
        X_test=np.zeros((1000, 40)),
        y_test=np.zeros(1000, np.int64),
    )


def write_bad_labels(path):
    np.savez(
        path,
        X_train=np.zeros((4000, 40)),
        y_train=np.full(4000, 10),
        X_test=np.zeros((1000, 40)),
        y_test=np.zeros(1000, np.int64),
    )


def write_missing_key(path):
    np.savez(path, X_train=np.zeros((4000, 40)), y_train=np.zeros(4000, np.int64))


def write_object_array(path):
    np.savez(path, X_train=np.array([None, 1], dtype=object))


@pytest.mark.parametrize(
    "corrupt",
    [
        write_garbage,
        write_empty,
        write_bare_npy,
        write_wrong_shapes,
        write_bad_labels,
        write_missing_key,
        write_object_array,
    ],
)
def test_mnist1d_cache_reader_rejects_corrupt_files(tmp_path, corrupt):
    path = tmp_path / "mnist1d.npz"
    corrupt(path)
    assert datasets._read_mnist1d_cache(path) is None


def test_mnist1d_unwritable_cache_warns_and_returns_data(mnist1d_cache, tmp_path, monkeypatch):
    folder, data = mnist1d_cache
    arrays = {key: np.asarray(value) for key, value in data._asdict().items()}
    monkeypatch.setattr(datasets, "_generate_mnist1d", lambda seed: arrays)

    def refuse(src, dst):
        raise PermissionError("read-only")

    monkeypatch.setattr(datasets.os, "replace", refuse)
    with pytest.warns(RuntimeWarning, match="could not write the data cache"):
        ds = load_mnist1d(dtype="float64", cache_dir=tmp_path)
    assert_datasets_equal(ds, data)
    assert list(tmp_path.iterdir()) == [], "temporary file left behind"


def test_mnist1d_missing_generator_gives_install_hint(mnist1d_cache, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match=r'pip install "fastmlp\[datasets\]"'):
        load_mnist1d(cache_dir=tmp_path)


def test_mnist1d_default_seed_is_the_papers():
    import inspect
    assert inspect.signature(load_mnist1d).parameters["seed"].default == 42
