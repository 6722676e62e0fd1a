"""Model files: bit-exact round trips, clear errors for bad files, crash-safe saving."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastmlp as fm
from fastmlp import io as fio


def make_model(dtype):
    model = fm.MLP(5, [fm.Dense(7, "elu", batchnorm=True, dropout=0.2),
                       fm.Dense(4, "maxout", pieces=3), fm.Dense(3)], dtype=dtype, seed=4)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 5))
    model.loss_and_grad(X, rng.integers(0, 3, 16))  # moves running statistics, advances dropout
    return model, X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_bit_exact(tmp_path, dtype):
    model, X = make_model(dtype)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fm.MLP.load(path)
    assert loaded.get_config() == model.get_config()
    assert loaded.dropout_step == model.dropout_step
    for mine, theirs in ((model.params, loaded.params), (model.buffers, loaded.buffers)):
        assert list(mine) == list(theirs)
        for key in mine:
            assert theirs[key].dtype == np.dtype(dtype)
            assert np.array_equal(mine[key], theirs[key]), key
    assert np.array_equal(model.forward(X), loaded.forward(X))
    assert np.array_equal(model.forward(X, training=True), loaded.forward(X, training=True))
    assert not [p for p in os.listdir(tmp_path) if p != "model.npz"]


def test_file_has_no_pickles_and_readable_metadata(tmp_path):
    model, _ = make_model("float32")
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        meta = json.loads(str(npz["__meta__"]))
        assert all(npz[k].dtype != object for k in npz.files)
    assert meta["format"] == "fastmlp.model" and meta["format_version"] == 1
    assert meta["library_version"] == fm.__version__
    assert meta["config"]["layers"][1] == {"units": 4, "activation": "maxout", "batchnorm": False,
                                           "dropout": 0.0, "pieces": 3}


def test_truncated_file(tmp_path):
    model, _ = make_model("float64")
    path = tmp_path / "m.npz"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(fm.FileFormatError, match="truncated or not an .npz"):
        fm.MLP.load(path)


def test_foreign_files(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(fm.FileFormatError, match="not a fastmlp file"):
        fm.MLP.load(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(fm.FileFormatError):
        fm.MLP.load(tmp_path / "text.npz")
    np.savez(tmp_path / "pickled.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(fm.FileFormatError):
        fm.MLP.load(tmp_path / "pickled.npz")
    with pytest.raises(FileNotFoundError):
        fm.MLP.load(tmp_path / "missing.npz")


def _rewrite_meta(path, change):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    change(meta, arrays)
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)


def test_newer_format_and_other_kinds(tmp_path):
    model, _ = make_model("float32")
    path = tmp_path / "m.npz"
    model.save(path)
    _rewrite_meta(path, lambda meta, arrays: meta.update(format_version=99))
    with pytest.raises(fm.FileFormatError, match="version 99, newer"):
        fm.MLP.load(path)
    model.save(path)
    _rewrite_meta(path, lambda meta, arrays: meta.update(format="fastmlp.checkpoint"))
    with pytest.raises(fm.FileFormatError, match="not a fastmlp.model file"):
        fm.MLP.load(path)


def test_architecture_mismatch(tmp_path):
    model, _ = make_model("float32")
    path = tmp_path / "m.npz"
    model.save(path)
    _rewrite_meta(path, lambda meta, arrays: arrays.update({"params/0.W": np.zeros((2, 2), np.float32)}))
    with pytest.raises(fm.FileFormatError, match="params/0.W has shape"):
        fm.MLP.load(path)
    model.save(path)
    _rewrite_meta(path, lambda meta, arrays: arrays.pop("buffers/0.running_var"))
    with pytest.raises(fm.FileFormatError, match="missing"):
        fm.MLP.load(path)
    model.save(path)
    _rewrite_meta(path, lambda meta, arrays: meta["config"].update(loss="nope"))
    with pytest.raises(fm.FileFormatError, match="invalid architecture"):
        fm.MLP.load(path)


def test_exception_during_save_keeps_previous_file(tmp_path, monkeypatch):
    model, _ = make_model("float32")
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()

    def failing_savez(handle, **arrays):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(fio.np, "savez", failing_savez)
    model.params["0.b"] = np.ones(7)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


def test_sigkill_during_save_keeps_previous_file_and_next_save_cleans_up(tmp_path):
    model, _ = make_model("float32")
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal
        import fastmlp as fm
        from fastmlp import io
        model = fm.MLP.load({str(path)!r})
        model.params["0.b"][...] = 5.0
        io.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # die before the rename
        model.save({str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert path.read_bytes() == before  # the previous file is intact
    leftovers = [p for p in os.listdir(tmp_path) if p != "m.npz"]
    assert leftovers and all(p.endswith(".fastmlp-tmp") for p in leftovers)
    assert np.array_equal(fm.MLP.load(path).params["0.b"], model.params["0.b"])
    model.save(path)  # the next save removes the dead writer's temporary file
    assert os.listdir(tmp_path) == ["m.npz"]


def test_save_into_missing_folder(tmp_path):
    model, _ = make_model("float32")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save(tmp_path / "nope" / "m.npz")


def test_standardizer_is_saved_with_the_model(tmp_path):
    model, X = make_model("float32")
    scaler = fm.Standardizer().fit(X * 3 + 1)
    model.save(tmp_path / "m.npz", standardizer=scaler)
    loaded = fm.MLP.load(tmp_path / "m.npz")
    assert np.array_equal(loaded.standardizer.mean_, scaler.mean_)
    assert np.array_equal(loaded.standardizer.transform(X), scaler.transform(X))
    model.save(tmp_path / "plain.npz")
    assert fm.MLP.load(tmp_path / "plain.npz").standardizer is None
    with pytest.raises(ValueError, match="fitted on 3 features"):
        model.save(tmp_path / "bad.npz", standardizer=fm.Standardizer().fit(X[:, :3]))


def test_saved_files_follow_the_umask_and_keep_an_existing_mode(tmp_path):
    model, _ = make_model("float32")
    old = os.umask(0o022)
    try:
        model.save(tmp_path / "m.npz")
        assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "m.npz", 0o600)
        model.save(tmp_path / "m.npz")
        assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
