"""Device-resident training and inference with ``MLP(..., device="cuda")`` against the same runs on
``device="cpu"``, in float64 to 1e-8: a full ``Trainer.fit`` (shuffling, validation, batchnorm,
dropout, Adam and SGD with momentum), the non-finite stop, the single-batch ``forward``,
``loss_and_grad``, ``loss_value``, ``predict`` and ``predict_proba``, and a model trained on the
device that saves, loads with ``device="cpu"`` and predicts the same.

The CUDA mode is chosen as in tests/test_cuda_network.py: in this process when
``NUMBA_ENABLE_CUDASIM=1`` is set or a usable GPU is present, otherwise in a child pytest process
on the CUDA simulator (``test_training_under_cuda_simulator``); the launch geometry is shrunk so
that the tiny shapes span several blocks.
"""

from pathlib import Path

import numpy as np
import pytest
from cuda_mode import (
    CUDA_TEST_MARKS,
    IN_PROCESS,
    collect_only_parent_tests,
    cuda_test_mode,
    gpu_array,
    gpu_pointer,
    route_products_to_cublas,
    run_file_under_simulator,
)
from numpy.testing import assert_allclose, assert_array_equal

import fastmlp as fm

THIS_FILE = Path(__file__).resolve()


pytestmark = CUDA_TEST_MARKS

if IN_PROCESS:  # importing numba.cuda fixes this process's CUDA mode: only when it will be used
    from fastmlp.kernels.cuda import config as gpu_config
    from fastmlp.kernels.cuda import cublas as gpu_cublas

PARENT_PROCESS_TESTS = ("test_training_under_cuda_simulator",)
TOL = dict(rtol=1e-8, atol=1e-8)


@pytest.fixture(autouse=True)
def _cuda_mode(request, monkeypatch):
    """Skip when CUDA does not run in this process; shrink the launch geometry."""
    yield from cuda_test_mode(request, monkeypatch, PARENT_PROCESS_TESTS, (8, 4, 4, 4, 2))


def test_training_under_cuda_simulator():
    """Without a GPU, run this file in a child process on the CUDA simulator."""
    run_file_under_simulator(THIS_FILE, "training")


# ---------------------------------------------------------------- helpers

N_IN, N_OUT = 6, 3


def _model(device, loss="cross_entropy", seed=3):
    layers = [fm.Dense(8, "tanh", batchnorm=True, dropout=0.25), fm.Dense(N_OUT)]
    return fm.MLP(N_IN, layers, loss=loss, dtype="float64", device=device, seed=seed)


def _data(n=22, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_IN))
    y = rng.integers(0, N_OUT, n)
    return X, y


def _assert_same_model(got, expected):
    assert got.dropout_step == expected.dropout_step
    assert_allclose(got._params, expected._params, **TOL)
    assert_allclose(got._buffers, expected._buffers, **TOL)


def _assert_same_history(got, expected):
    assert set(got) == set(expected)
    for key in expected:
        if key == "epoch_time":
            continue
        assert_allclose(got[key], expected[key], **TOL, err_msg=key)


def _fit(device, optimizer, **fit_args):
    model = _model(device)
    trainer = fm.Trainer(model, optimizer, batch_size=8, epochs=2, l2=0.01, clip_norm=5.0,
                         progress=False)
    X, y = _data()
    history = trainer.fit(X, y, **fit_args)
    return model, trainer, history


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("opt", ("adam", "sgd"))
def test_fit_matches_cpu(opt):
    """Two epochs (shuffled, short last batch, validation split): parameters, running statistics,
    dropout step, optimizer state and history."""
    def make():
        if opt == "adam":
            return fm.Adam(lr=0.01)
        return fm.SGD(lr=0.05, momentum=0.9, nesterov=True)

    cpu_model, cpu_trainer, cpu_history = _fit("cpu", make(), validation_split=0.25)
    gpu_model, gpu_trainer, gpu_history = _fit("cuda", make(), validation_split=0.25)
    assert gpu_model.device == "cuda" and gpu_trainer.epoch == 2
    _assert_same_model(gpu_model, cpu_model)
    _assert_same_history(gpu_history, cpu_history)
    cpu_state, gpu_state = cpu_trainer.optimizer.state_dict(), gpu_trainer.optimizer.state_dict()
    assert set(cpu_state) == set(gpu_state)
    for key, value in cpu_state.items():
        if isinstance(value, np.ndarray):
            assert_allclose(gpu_state[key], value, **TOL, err_msg=key)
        else:
            assert gpu_state[key] == value
    # a further fit continues from the downloaded state on both
    for trainer in (cpu_trainer, gpu_trainer):
        trainer.epochs = 3
        trainer.fit(*_data())
    _assert_same_model(gpu_model, cpu_model)
    _assert_same_history(gpu_trainer.history, cpu_trainer.history)


def test_fit_with_cublas_products_matches_cpu(monkeypatch):
    """``set_cuda_matmul("cublas")``'s path: every product through cublas.matmul, the epilogues
    as separate launches; the same run as on the CPU."""
    cpu_model, _, cpu_history = _fit("cpu", fm.Adam(lr=0.01), validation_split=0.25)
    calls = route_products_to_cublas(monkeypatch, gpu_config, gpu_cublas)
    gpu_model, _, gpu_history = _fit("cuda", fm.Adam(lr=0.01), validation_split=0.25)
    _assert_same_model(gpu_model, cpu_model)
    _assert_same_history(gpu_history, cpu_history)
    # 2 epochs × 2 batches × (2 forward + 3 backward products) + 2 validation passes × 2 forward
    assert len(calls) == 2 * 2 * 5 + 2 * 2


def _count_transfers(monkeypatch, model):
    """Counts of the model's whole-state downloads and of the data its engine places on the
    device."""
    counts = {"download": 0, "data": 0}
    engine = model.engine
    download, device_data = engine.download, engine.place

    def counted_download(*args, **kwargs):
        counts["download"] += 1
        return download(*args, **kwargs)

    def counted_data(*args, **kwargs):
        counts["data"] += 1
        return device_data(*args, **kwargs)
    monkeypatch.setattr(engine, "download", counted_download)
    monkeypatch.setattr(engine, "place", counted_data)
    return counts


def test_fit_keeps_the_state_on_the_device_between_epochs(monkeypatch):
    """Without early stopping or callbacks, 4 epochs with validation data upload the training and
    the validation data once each and download the model once, when fit returns."""
    X, y = _data()
    model = _model("cuda")
    counts = _count_transfers(monkeypatch, model)
    trainer = fm.Trainer(model, fm.Adam(lr=0.01), batch_size=8, epochs=4, progress=False)
    history = trainer.fit(X, y, validation_data=(X[:7], y[:7]))
    assert counts == {"download": 1, "data": 2}
    assert len(history["val_loss"]) == 4
    cpu_model = _model("cpu")
    cpu_history = fm.Trainer(cpu_model, fm.Adam(lr=0.01), batch_size=8, epochs=4,
                             progress=False).fit(X, y, validation_data=(X[:7], y[:7]))
    _assert_same_model(model, cpu_model)
    _assert_same_history(history, cpu_history)


def test_hooks_read_current_host_arrays_like_cpu(monkeypatch):
    """With early stopping and a callback, the host arrays are current when they run: the
    callback sees the same weights as on the CPU, and restore_best brings back the same epoch."""
    X, y = _data()
    runs = []
    for device in ("cpu", "cuda"):
        model = _model(device)
        seen = []

        class Watch(fm.Callback):
            def on_epoch_end(self, epoch, metrics):
                seen.append(model._params.copy())

        early = fm.EarlyStopping(monitor="val_loss", patience=1, restore_best=True)
        trainer = fm.Trainer(model, fm.Adam(lr=0.05), batch_size=8, epochs=6, callbacks=[Watch()],
                             early_stopping=early, progress=False)
        trainer.fit(X, y, validation_data=(X[:7], y[:7]))
        runs.append((model, seen, early.best_epoch))
    (cpu_model, cpu_seen, cpu_best), (gpu_model, gpu_seen, gpu_best) = runs
    assert gpu_best == cpu_best and len(gpu_seen) == len(cpu_seen) >= 2
    for got, expected in zip(gpu_seen, cpu_seen):
        assert_allclose(got, expected, **TOL)
    _assert_same_model(gpu_model, cpu_model)


def test_non_finite_epoch_restores_like_cpu():
    """A target too large for a finite loss stops a later run in its second batch, on both
    devices, and leaves the state after the last finite step."""
    X, _ = _data()
    y = X[:, :N_OUT] * 0.5
    broken = y.copy()
    broken[12, 0] = 1e200  # second batch of 8 (no shuffling): its squared error overflows
    results = []
    for device in ("cpu", "cuda"):
        model = _model(device, loss="mse")
        trainer = fm.Trainer(model, fm.Adam(lr=0.01), batch_size=8, epochs=2, shuffle=False,
                             progress=False)
        trainer.fit(X, y)
        trainer.epochs = 4
        with pytest.warns(fm.NonFiniteLossWarning, match="non-finite"):
            trainer.fit(X, broken)
        assert trainer.stop_reason == "non-finite loss" and trainer.epoch == 2
        results.append((model, trainer))
    (cpu_model, cpu_trainer), (gpu_model, gpu_trainer) = results
    assert np.all(np.isfinite(gpu_model._params))
    _assert_same_model(gpu_model, cpu_model)
    _assert_same_history(gpu_trainer.history, cpu_trainer.history)
    # the restored state is on the device too: training goes on identically
    for trainer in (cpu_trainer, gpu_trainer):
        trainer.fit(X, y)
        assert trainer.epoch == 4
    _assert_same_model(gpu_model, cpu_model)
    _assert_same_history(gpu_trainer.history, cpu_trainer.history)
    assert_allclose(gpu_model.predict(X), cpu_model.predict(X), **TOL)


def test_gpu_trained_model_loads_on_cpu(tmp_path):
    """Saved from the device (host copies, "device": "cuda" in the config), loaded with
    device="cpu" (and on the device), it predicts the same."""
    gpu_model, _, _ = _fit("cuda", fm.Adam(lr=0.01))
    X, _ = _data(n=13, seed=4)
    path = tmp_path / "model.npz"
    gpu_model.save(path)
    on_cpu = fm.MLP.load(path, device="cpu")
    assert on_cpu.device == "cpu"
    assert_array_equal(on_cpu._params, gpu_model._params)
    assert_array_equal(on_cpu._buffers, gpu_model._buffers)
    assert_allclose(on_cpu.predict_proba(X), gpu_model.predict_proba(X), **TOL)
    assert_array_equal(on_cpu.predict(X), gpu_model.predict(X))
    again = fm.MLP.load(path)
    assert again.device == "cuda" and again.get_config()["device"] == "cuda"
    assert_allclose(again.forward(X), on_cpu.forward(X), **TOL)
    with pytest.raises(ValueError, match="device"):
        fm.MLP.load(path, device="tpu")


# ---------------------------------------------------------------- GPU arrays as inputs

def test_fit_on_gpu_arrays_matches_cpu():
    """X, int32 labels and validation data given as GPU arrays (``__cuda_array_interface__``):
    the same run as with NumPy inputs on the CPU, and the training features are used in place."""
    X, y = _data()
    Xv, yv = _data(n=7, seed=5)
    cpu_model, _, cpu_history = _fit("cpu", fm.Adam(lr=0.01), validation_data=(Xv, yv))
    model = _model("cuda")
    trainer = fm.Trainer(model, fm.Adam(lr=0.01), batch_size=8, epochs=2, l2=0.01, clip_norm=5.0,
                         progress=False)
    d_X = gpu_array(X)
    pointers = []
    run_epoch = model.engine.run_epoch

    def watched_run_epoch(*args):
        pointers.append(gpu_pointer(model.engine.fit_data.train.X))
        return run_epoch(*args)

    model.engine.run_epoch = watched_run_epoch
    history = trainer.fit(d_X, gpu_array(y.astype(np.int32)),
                          validation_data=(gpu_array(Xv), gpu_array(yv)))
    assert pointers == [gpu_pointer(d_X)] * 2  # no copy of the training features
    _assert_same_model(model, cpu_model)
    _assert_same_history(history, cpu_history)


def test_validation_split_of_gpu_arrays_matches_cpu():
    """validation_split picks the same rows on the device (a gather) as on the host."""
    X, y = _data()
    cpu_model, _, cpu_history = _fit("cpu", fm.SGD(lr=0.05, momentum=0.9), validation_split=0.25)
    model = _model("cuda")
    trainer = fm.Trainer(model, fm.SGD(lr=0.05, momentum=0.9), batch_size=8, epochs=2, l2=0.01,
                         clip_norm=5.0, progress=False)
    history = trainer.fit(gpu_array(X), y, validation_split=0.25)  # mixed: labels on the host
    _assert_same_model(model, cpu_model)
    _assert_same_history(history, cpu_history)


@pytest.mark.parametrize("loss", ("cross_entropy", "binary_cross_entropy", "mse"))
def test_single_passes_on_gpu_arrays_match_host_inputs(loss):
    """predict, predict_proba, evaluate, loss_value and loss_and_grad give the same on GPU
    arrays as on NumPy arrays (probability rows and float targets too)."""
    model = _model("cuda", loss)
    X, labels = _data(n=9, seed=2)
    y = (np.eye(N_OUT)[labels] * 0.8 + 0.2 / N_OUT if loss != "mse" else X[:, :N_OUT] * 0.5)
    d_X, d_y = gpu_array(X), gpu_array(y)
    assert_allclose(model.forward(d_X), model.forward(X), **TOL)
    assert_array_equal(model.predict(d_X), model.predict(X))
    if loss != "mse":
        assert_allclose(model.predict_proba(d_X), model.predict_proba(X), **TOL)
    assert_allclose(model.loss_value(d_X, d_y, l2=0.01), model.loss_value(X, y, l2=0.01), **TOL)
    got_loss, got = model.loss_and_grad(d_X, d_y, training=False)
    want_loss, want = model.loss_and_grad(X, y, training=False)
    assert_allclose(got_loss, want_loss, **TOL)
    for key in want:
        assert_allclose(got[key], want[key], **TOL, err_msg=key)
    trainer = fm.Trainer(model, fm.Adam(), progress=False)
    got, want = trainer.evaluate(d_X, d_y), trainer.evaluate(X, y)
    assert set(got) == set(want)
    for key in want:
        assert_allclose(got[key], want[key], **TOL, err_msg=key)


def test_gpu_array_inputs_are_checked_on_the_device():
    """The host rules and messages, for data that stays on the device."""
    model = _model("cuda")
    trainer = fm.Trainer(model, fm.Adam(), epochs=1, progress=False)
    X, y = _data(n=10)
    bad_X = X.copy()
    bad_X[7, 2] = np.nan
    cases = [
        ((gpu_array(bad_X), y), ValueError, "X contains NaN or inf"),
        ((gpu_array(X.astype(np.float32)), y), TypeError, "GPU array of float32 but the model "
                                                          "computes in float64"),
        ((gpu_array(np.repeat(X, 2, axis=1), every_other_column=True), y), ValueError,
         "not C-contiguous"),
        ((gpu_array(X[:, :4]), y), ValueError, "has 4 features but the model expects 6"),
        ((gpu_array(X[0]), y), ValueError, "must be 2-D"),
        ((X, gpu_array(np.where(np.arange(10) == 3, N_OUT, y))), ValueError, "must be < 3"),
        ((X, gpu_array(np.where(np.arange(10) == 3, -1, y))), ValueError, "must be >= 0"),
        ((X, gpu_array(y.astype(np.float64))), TypeError, "must be an integer array"),
        ((X, gpu_array(y[:9])), ValueError, "different numbers of samples: 10 and 9"),
        ((X, gpu_array(np.full((10, N_OUT), 0.5))), ValueError, "must sum to 1; a row is off by"),
        ((X, gpu_array(np.full((10, N_OUT + 1), 0.25))), ValueError, "must have width 3"),
    ]
    for (features, targets), error, message in cases:
        with pytest.raises(error, match=message):
            trainer.fit(features, targets)
    assert trainer.epoch == 0
    bce = _model("cuda", loss="binary_cross_entropy")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        bce.loss_value(X, gpu_array(np.full((10, N_OUT), 1.5)))
    mse = _model("cuda", loss="mse")
    targets = X[:, :N_OUT].copy()
    targets[2, 1] = np.inf
    with pytest.raises(ValueError, match="y contains NaN or inf"):
        mse.loss_value(X, gpu_array(targets))


# ---------------------------------------------------------------- single passes

@pytest.mark.parametrize("loss", ("cross_entropy", "binary_cross_entropy", "mse"))
def test_inference_and_gradients_match_cpu(loss):
    """predict, predict_proba, forward (both modes), loss_value and loss_and_grad, with host
    parameters edited in between (the device copy follows)."""
    cpu, gpu = _model("cpu", loss), _model("cuda", loss)
    X, labels = _data(n=9, seed=2)
    y = labels if loss == "cross_entropy" else (
        np.eye(N_OUT)[labels] if loss == "binary_cross_entropy" else X[:, :N_OUT] * 0.5)
    for model in (cpu, gpu):
        model.params["1.W"][...] *= 1.5  # a host edit before any device computation
    assert_allclose(gpu.forward(X), cpu.forward(X), **TOL)
    if loss == "mse":
        assert_allclose(gpu.predict(X), cpu.predict(X), **TOL)
    else:
        assert_array_equal(gpu.predict(X), cpu.predict(X))
        assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), **TOL)
    assert_allclose(gpu.loss_value(X, y, l1=0.01, l2=0.02), cpu.loss_value(X, y, l1=0.01, l2=0.02),
                    **TOL)
    for training in (True, False):
        cpu_loss, cpu_grads = cpu.loss_and_grad(X, y, training=training, l2=0.01)
        gpu_loss, gpu_grads = gpu.loss_and_grad(X, y, training=training, l2=0.01)
        assert isinstance(gpu_loss, float)
        assert_allclose(gpu_loss, cpu_loss, **TOL)
        assert set(gpu_grads) == set(cpu_grads)
        for key in cpu_grads:
            assert isinstance(gpu_grads[key], np.ndarray)
            assert_allclose(gpu_grads[key], cpu_grads[key], **TOL, err_msg=key)
        _assert_same_model(gpu, cpu)  # training mode updated the running statistics on both
    assert_allclose(gpu.forward(X, training=True), cpu.forward(X, training=True), **TOL)
    assert_allclose(gpu.loss_value(X, y, training=True), cpu.loss_value(X, y, training=True),
                    **TOL)
    _assert_same_model(gpu, cpu)
    assert isinstance(gpu.params["0.W"], np.ndarray)


collect_only_parent_tests(globals(), PARENT_PROCESS_TESTS)
