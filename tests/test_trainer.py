"""Trainer: batching, shuffling, validation, schedules, clipping, early stopping, checkpoints."""

import math

import numpy as np
import pytest

import fastmlp as fm
from fastmlp.progress import epoch_progress


def blobs(n=120, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    centers = rng.normal(scale=3.0, size=(c, d))
    return centers[y] + rng.normal(size=(n, d)), y


def small_model(seed=0, **layer_kw):
    return fm.MLP(6, [fm.Dense(16, "relu", **layer_kw), fm.Dense(3)], seed=seed)


def test_training_reduces_the_loss_and_reports_history():
    X, y = blobs()
    trainer = fm.Trainer(small_model(), fm.Adam(1e-2), batch_size=16, epochs=8, progress=False)
    history = trainer.fit(X, y, validation_split=0.25)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time"}
    assert all(len(v) == 8 for v in history.values())
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.9
    assert trainer.epoch == 8


def test_regression_history_has_no_accuracy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 6))
    y = X @ rng.normal(size=6)
    model = fm.MLP(6, [fm.Dense(8, "tanh"), fm.Dense(1)], loss="mse", seed=0)
    history = fm.Trainer(model, fm.SGD(0.05), batch_size=10, epochs=5, progress=False).fit(
        X, y, validation_data=(X[:10], y[:10]))
    assert set(history) == {"loss", "val_loss", "lr", "epoch_time"}
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize("n,batch,batchnorm,steps", [(10, 4, False, 3), (9, 4, True, 2),
                                                     (9, 4, False, 3), (8, 100, False, 1)])
def test_last_partial_batch_is_used(n, batch, batchnorm, steps):
    X, y = blobs(n)
    opt = fm.SGD(0.01)
    trainer = fm.Trainer(small_model(batchnorm=batchnorm), opt, batch_size=batch, epochs=2,
                         progress=False)
    trainer.fit(X, y)
    assert {state["step"] for state in opt.state.values()} == {2 * steps}
    assert set(opt.state) == set(trainer.model.params)  # one state per parameter key


def test_seeded_runs_are_identical_and_seeds_matter():
    X, y = blobs()

    def run(seed):
        model = small_model(dropout=0.2)
        fm.Trainer(model, fm.Adam(1e-2), batch_size=16, epochs=3, seed=seed, progress=False).fit(X, y)
        return model.params["0.W"].copy()

    assert np.array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_evaluate_matches_direct_computation():
    X, y = blobs()
    model = small_model()
    trainer = fm.Trainer(model, l2=0.01, progress=False)
    result = trainer.evaluate(X, y)
    assert result["loss"] == pytest.approx(model.loss_value(X, y, l2=0.01), rel=1e-12)
    assert result["accuracy"] == pytest.approx(np.mean(model.predict(X) == y))


def test_validation_arguments():
    X, y = blobs(20)
    trainer = fm.Trainer(small_model(), epochs=1, progress=False)
    with pytest.raises(ValueError, match="not both"):
        trainer.fit(X, y, validation_data=(X, y), validation_split=0.1)
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="validation_split"):
            trainer.fit(X, y, validation_split=bad)
    with pytest.raises(ValueError, match="pair"):
        trainer.fit(X, y, validation_data=X)
    with pytest.raises(ValueError, match="validation_data X has 5 features"):
        trainer.fit(X, y, validation_data=(X[:, :5], y))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(seed=-2), ValueError, "seed"),
    (dict(clip_norm=0.0), ValueError, "clip_norm"),
    (dict(optimizer="adam"), TypeError, "optimizer"),
    (dict(early_stopping=5), TypeError, "early_stopping"),
    (dict(callbacks=[object()]), TypeError, "on_epoch_end"),
    (dict(l2=-1.0), ValueError, "l2"),
])
def test_bad_trainer_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fm.Trainer(small_model(), **kwargs)
    with pytest.raises(TypeError, match="model"):
        fm.Trainer("model")


def test_schedules_follow_their_formulas():
    X, y = blobs(32)
    trainer = fm.Trainer(small_model(), fm.SGD(0.1), batch_size=32, epochs=7,
                         lr_schedule=fm.StepLR(step_size=3, gamma=0.5), progress=False)
    assert trainer.fit(X, y)["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])
    trainer = fm.Trainer(small_model(), fm.SGD(0.1), batch_size=32, epochs=5,
                         lr_schedule=fm.CosineAnnealingLR(T_max=4, eta_min=0.01), progress=False)
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * min(e, 4) / 4)) / 2 for e in range(5)]
    assert trainer.fit(X, y)["lr"] == pytest.approx(expected)


def test_reduce_on_plateau():
    schedule = fm.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2)
    schedule.start(1.0)
    lrs, lr = [], 1.0
    for epoch, value in enumerate([1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8], start=1):
        lr = schedule.step(epoch, {"val_loss": value}, lr)
        lrs.append(lr)
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25]
    with pytest.raises(ValueError, match="val_loss"):
        schedule.step(10, {"loss": 1.0}, lr)


def test_schedules_match_torch():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    for ours, make in [(fm.StepLR(2, 0.3), lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.3)),
                       (fm.CosineAnnealingLR(5, 0.001),
                        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 5, 0.001))]:
        opt = torch.optim.SGD([p], lr=0.1)
        theirs = make(opt)
        ours.start(0.1)
        for epoch in range(1, 6):
            opt.step()
            theirs.step()
            assert ours.step(epoch, {}, None) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)


def test_gradient_clipping_by_global_norm():
    X, y = blobs(16)
    model = small_model()
    before = model._params.copy()
    _, grads = model.copy().loss_and_grad(X, y)
    norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
    clip = norm / 10
    fm.Trainer(model, fm.SGD(1.0), batch_size=16, epochs=1, shuffle=False, clip_norm=clip,
               progress=False).fit(X, y)
    step = np.linalg.norm((model._params - before).astype(np.float64))
    assert step == pytest.approx(clip, rel=1e-4)


class Recorder(fm.Callback):
    def __init__(self, stop_after=None):
        self.params, self.metrics, self.stop_after = [], [], stop_after

    def on_train_begin(self, trainer):
        self.model = trainer.model

    def on_epoch_end(self, epoch, metrics):
        self.params.append(self.model._params.copy())
        self.metrics.append(dict(metrics))
        return self.stop_after is not None and epoch >= self.stop_after


def test_early_stopping_restores_the_best_weights():
    X, y = blobs(60, seed=3)
    Xv, yv = blobs(30, seed=4)
    recorder = Recorder()
    early = fm.EarlyStopping(patience=2, restore_best=True)
    model = small_model()
    trainer = fm.Trainer(model, fm.Adam(0.3), batch_size=8, epochs=40, early_stopping=early,
                         callbacks=[recorder], progress=False)
    history = trainer.fit(X, y, validation_data=(Xv, yv))
    best = int(np.argmin(history["val_loss"]))
    assert trainer.stop_reason == "early stopping" and len(history["loss"]) < 40
    assert len(history["loss"]) == best + 1 + 2  # stopped `patience` epochs after the best
    assert early.best_epoch == best + 1
    assert np.array_equal(model._params, recorder.params[best])
    assert trainer.evaluate(Xv, yv)["loss"] == pytest.approx(history["val_loss"][best], rel=1e-6)


def test_early_stopping_needs_its_metric():
    X, y = blobs(20)
    trainer = fm.Trainer(small_model(), epochs=2, early_stopping=fm.EarlyStopping(), progress=False)
    with pytest.raises(ValueError, match="val_loss"):
        trainer.fit(X, y)


def test_callback_can_stop_training():
    X, y = blobs(20)
    trainer = fm.Trainer(small_model(), epochs=10, callbacks=[Recorder(stop_after=3)], progress=False)
    assert len(trainer.fit(X, y)["loss"]) == 3 and trainer.stop_reason == "callback"


class ReloadOptimizer(fm.Callback):
    """Replaces the optimizer's state by a copy of itself after every epoch."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def on_epoch_end(self, epoch, metrics):
        self.optimizer.load_state_dict(self.optimizer.state_dict())
        return False


@pytest.mark.parametrize("optimizer", [lambda: fm.Adam(1e-2), lambda: fm.SGD(0.05, momentum=0.9)])
def test_optimizer_state_loaded_by_a_callback_is_the_state_training_continues_from(optimizer):
    """A callback that loads optimizer state during a fit: the following epochs update that
    state (not the arrays it replaced), so a copy of itself changes nothing."""
    X, y = blobs(48)
    runs = []
    for callbacks in ((), "reload"):
        model, opt = small_model(), optimizer()
        trainer = fm.Trainer(model, opt, batch_size=16, epochs=3, shuffle=False, progress=False,
                             callbacks=[ReloadOptimizer(opt)] if callbacks else ())
        trainer.fit(X, y)
        runs.append((model.params.flat.copy(), opt.state_dict()))
    np.testing.assert_array_equal(runs[1][0], runs[0][0])
    assert runs[1][1].keys() == runs[0][1].keys()
    for key, value in runs[0][1].items():
        np.testing.assert_array_equal(runs[1][1][key], value, err_msg=key)


def test_non_finite_loss_stops_and_keeps_the_last_finite_state():
    X, y = blobs(40)
    recorder = Recorder()
    model = fm.MLP(6, [fm.Dense(16, "relu"), fm.Dense(1)], loss="mse", seed=0)
    trainer = fm.Trainer(model, fm.SGD(0.5), batch_size=8, epochs=30, callbacks=[recorder],
                         progress=False)
    with pytest.warns(fm.NonFiniteLossWarning, match="last finite step"):
        trainer.fit(X, (y * 1e3).astype(float))
    assert trainer.stop_reason == "non-finite loss"
    assert np.all(np.isfinite(model._params))
    assert trainer.epoch == len(recorder.params) == len(trainer.history.get("loss", [])) < 30


def _bn_trainer(epochs):
    model = fm.MLP(6, [fm.Dense(16, "tanh", batchnorm=True, dropout=0.2), fm.Dense(2)],
                   loss="mse", dtype="float64", seed=3)
    return model, fm.Trainer(model, fm.Adam(1e-2), batch_size=8, epochs=epochs, shuffle=False,
                             progress=False)


def test_non_finite_step_leaves_exactly_the_state_after_the_last_finite_step():
    """Batch 3 of epoch 3 overflows: the model, its batchnorm statistics, the optimizer and the
    dropout step equal a run that stopped after batch 2 of epoch 3."""
    X, _ = blobs(40)
    y = X[:, :2] * 0.5
    broken = y.copy()
    broken[20, 0] = 1e200  # third batch of 8 rows (no shuffling): its squared error overflows
    model, trainer = _bn_trainer(epochs=2)
    trainer.fit(X, y)
    trainer.epochs = 5
    with pytest.warns(fm.NonFiniteLossWarning, match="epoch 3"):
        trainer.fit(X, broken)
    assert trainer.epoch == 2 and len(trainer.history["loss"]) == 2

    reference, ref_trainer = _bn_trainer(epochs=2)
    ref_trainer.fit(X, y)
    ref_trainer.epochs = 3
    ref_trainer.fit(X[:16], y[:16])  # the two finite batches of epoch 3
    np.testing.assert_array_equal(model._params, reference._params)
    np.testing.assert_array_equal(model._buffers, reference._buffers)
    assert model.dropout_step == reference.dropout_step
    for key, value in ref_trainer.optimizer.state_dict().items():
        np.testing.assert_array_equal(trainer.optimizer.state_dict()[key], value)
    # and training goes on from there
    trainer.fit(X, y)
    assert trainer.epoch == 5 and np.all(np.isfinite(model._params))


def test_fit_after_the_last_epoch_warns():
    X, y = blobs(20)
    trainer = fm.Trainer(small_model(), epochs=1, progress=False)
    trainer.fit(X, y)
    with pytest.warns(UserWarning, match="already run"):
        trainer.fit(X, y)
    trainer.epochs = 2
    assert len(trainer.fit(X, y)["loss"]) == 2


def _resumable_trainer(callbacks=()):
    model = fm.MLP(6, [fm.Dense(12, "relu", batchnorm=True, dropout=0.3), fm.Dense(3)], seed=5)
    return fm.Trainer(model, fm.Adam(5e-3), batch_size=16, epochs=6, seed=9,
                      lr_schedule=fm.StepLR(2, 0.5), early_stopping=fm.EarlyStopping(patience=50),
                      callbacks=callbacks, progress=False)


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path):
    X, y = blobs(70)
    straight = _resumable_trainer()
    straight.fit(X, y, validation_split=0.2)
    interrupted = _resumable_trainer(callbacks=[Recorder(stop_after=3)])
    interrupted.fit(X, y, validation_split=0.2)
    assert interrupted.epoch == 3
    interrupted.save_checkpoint(tmp_path / "ckpt.npz")
    resumed = fm.Trainer.load_checkpoint(tmp_path / "ckpt.npz")
    assert resumed.epoch == 3
    resumed.fit(X, y, validation_split=0.2)
    assert np.array_equal(resumed.model._params, straight.model._params)
    assert np.array_equal(resumed.model._buffers, straight.model._buffers)
    for key in ("loss", "val_loss", "lr", "accuracy"):
        assert resumed.history[key] == straight.history[key]
    assert resumed.model.dropout_step == straight.model.dropout_step


def test_checkpoint_file_errors(tmp_path):
    X, y = blobs(20)
    trainer = fm.Trainer(small_model(), epochs=1, progress=False)
    trainer.fit(X, y)
    trainer.save_checkpoint(tmp_path / "c.npz")
    trainer.model.save(tmp_path / "m.npz")
    with pytest.raises(fm.FileFormatError, match="not a fastmlp.checkpoint file"):
        fm.Trainer.load_checkpoint(tmp_path / "m.npz")
    data = (tmp_path / "c.npz").read_bytes()
    (tmp_path / "c.npz").write_bytes(data[:100])
    with pytest.raises(fm.FileFormatError):
        fm.Trainer.load_checkpoint(tmp_path / "c.npz")


def test_progress_is_silent_without_a_terminal(capsys):
    X, y = blobs(20)
    fm.Trainer(small_model(), epochs=2, progress=True).fit(X, y)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_plain_progress_fallback(monkeypatch):
    import builtins
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    stream = Terminal()
    bar = epoch_progress(True, 3, stream=stream)
    bar.update(1, {"loss": 0.5, "epoch_time": 0.1})
    bar.close()
    assert stream.getvalue().strip() == "epoch 1/3  loss 0.5"
    assert isinstance(epoch_progress(False, 3, stream=stream), type(epoch_progress(True, 3)))


@pytest.mark.parametrize("optimizer", [
    fm.SGD(0.05, momentum=0.9, nesterov=True), fm.Adagrad(0.05), fm.RMSProp(0.01, centered=True,
                                                                              momentum=0.5),
    fm.Adam(0.01, amsgrad=True), fm.AdamW(0.01), fm.Rprop(0.01)], ids=lambda o: type(o).__name__)
def test_fused_epoch_equals_python_steps(optimizer):
    """The one-call epoch kernel gives bitwise the same weights as model.loss_and_grad + opt.step."""
    X, y = blobs(25)
    fused = fm.MLP(6, [fm.Dense(8, "tanh", batchnorm=True, dropout=0.2), fm.Dense(3)], seed=2)
    manual = fused.copy()
    config = optimizer.get_config()
    fm.Trainer(fused, type(optimizer)(**config), batch_size=8, epochs=2, shuffle=False, l2=0.01,
               progress=False).fit(X, y)
    opt = type(optimizer)(**config)
    bounds = [(0, 8), (8, 16), (16, 25)]  # with batchnorm a last batch of one row joins the previous
    for _ in range(2):
        for start, stop in bounds:
            _, grads = manual.loss_and_grad(X[start:stop], y[start:stop], l2=0.01)
            opt.step(manual.params, grads)
    for key in manual.params:
        assert np.array_equal(fused.params[key], manual.params[key]), key
    for key in manual.buffers:
        assert np.array_equal(fused.buffers[key], manual.buffers[key]), key


def test_validation_targets_may_take_another_form_than_training_targets():
    X, y = blobs(30)
    trainer = fm.Trainer(small_model(), epochs=2, progress=False)
    history = trainer.fit(X, y, validation_data=(X[:9], np.eye(3)[y[:9]]))  # probability rows
    assert history["val_accuracy"][-1] == trainer.evaluate(X[:9], y[:9])["accuracy"]
    probs = fm.Trainer(small_model(), epochs=2, progress=False).fit(
        X, np.eye(3)[y], validation_data=(X[:9], y[:9]))  # and the other way round
    assert 0 <= probs["val_accuracy"][-1] <= 1


@pytest.mark.parametrize("hooks, message", [
    ({"early_stopping": fm.EarlyStopping()}, "early_stopping monitors 'val_loss'"),
    ({"lr_schedule": fm.ReduceLROnPlateau()}, "lr_schedule monitors 'val_loss'"),
    ({"early_stopping": fm.EarlyStopping(monitor="accuracy")}, "which this fit does not report"),
])
def test_a_monitor_the_fit_cannot_report_is_refused_before_any_epoch(hooks, message):
    """Early stopping or a plateau schedule watching val_loss without validation data (or
    accuracy of a regression) is a ValueError before the model or the trainer changes."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5)).astype(np.float32)
    if hooks.get("early_stopping") is not None and hooks["early_stopping"].monitor == "accuracy":
        model, y = fm.MLP(5, [fm.Dense(8, "relu"), fm.Dense(1)], loss="mse"), X[:, :1].copy()
    else:
        model, y = fm.MLP(5, [fm.Dense(8, "relu"), fm.Dense(3)]), np.arange(64) % 3
    before = {key: value.copy() for key, value in model.params.items()}
    trainer = fm.Trainer(model, epochs=3, progress=False, **hooks)
    with pytest.raises(ValueError, match=message):
        trainer.fit(X, y)
    assert trainer.epoch == 0 and trainer.history == {} and model.dropout_step == 0
    for key, value in before.items():
        np.testing.assert_array_equal(model.params[key], value)
