"""Inference on one model from several threads at once gives the single-threaded results (no
scratch memory is shared between concurrent calls); training one model from two threads at once
is refused with a RuntimeError instead of corrupting it."""

import threading

import numpy as np
import pytest

import fastmlp as fm


def _model(dtype="float32"):
    return fm.MLP(20, [fm.Dense(64, "relu", batchnorm=True, dropout=0.1), fm.Dense(32, "tanh"),
                       fm.Dense(4)], seed=0, dtype=dtype)


def _policies():
    from fastmlp.kernels.cpu.onednn import bf16_support
    return ["float32"] + (["mixed_bfloat16"] if bf16_support() is None else [])


def _run_threads(target, count):
    errors = []

    def guarded(i):
        try:
            target(i)
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return errors


@pytest.mark.parametrize("dtype", _policies())
@pytest.mark.parametrize("rows", [1, 7, 300, 2500])
def test_concurrent_inference_matches_one_thread(rows, dtype):
    """Four threads each call predict_proba, forward, predict and evaluate on one model many
    times, with inputs of their own (different sizes, so differently sized workspaces are in use
    at once); every result equals the one computed alone (a mixed_bfloat16 model's threads each
    round the weights into an array of their own)."""
    model = _model(dtype)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(rows + i, 20)).astype(np.float32) for i in range(4)]
    labels = [np.arange(len(X)) % 4 for X in inputs]
    expected = [(model.predict_proba(X), model.forward(X), model.predict(X)) for X in inputs]
    trainer = fm.Trainer(model, progress=False)
    expected_eval = [trainer.evaluate(X, y) for X, y in zip(inputs, labels)]
    mismatches = []

    def work(i):
        for _ in range(40 if rows < 1000 else 8):
            proba, out, label = (model.predict_proba(inputs[i]), model.forward(inputs[i]),
                                 model.predict(inputs[i]))
            metrics = trainer.evaluate(inputs[i], labels[i])
            if not (np.array_equal(proba, expected[i][0]) and np.array_equal(out, expected[i][1])
                    and np.array_equal(label, expected[i][2]) and metrics == expected_eval[i]):
                mismatches.append(i)

    errors = _run_threads(work, 4)
    assert errors == []
    assert mismatches == []


def test_training_one_model_from_two_threads_is_refused():
    model = _model()
    X = np.random.default_rng(1).normal(size=(4000, 20)).astype(np.float32)
    y = np.arange(4000) % 4
    started, release = threading.Event(), threading.Event()

    class Hold(fm.Callback):
        def on_epoch_end(self, epoch, metrics):
            started.set()
            release.wait(timeout=120)

    first = fm.Trainer(model, epochs=1, callbacks=[Hold()], progress=False)
    errors = []
    thread = threading.Thread(target=lambda: first.fit(X, y))
    thread.start()
    try:
        assert started.wait(timeout=300)
        before = {k: v.copy() for k, v in model.params.items()}
        begun = []

        class Begin(fm.Callback):
            def on_train_begin(self, trainer):
                begun.append(trainer)

            def on_epoch_end(self, epoch, metrics):
                return False

        schedule = fm.StepLR(step_size=1, gamma=0.5)
        second = fm.Trainer(model, fm.Adam(1e-3), epochs=1, callbacks=[Begin()],
                            lr_schedule=schedule, progress=False)
        with pytest.raises(RuntimeError, match="already being trained"):
            second.fit(X, y)
        steps, buffers = model.dropout_step, model.buffers.flat.copy()
        with pytest.raises(RuntimeError, match="another thread"):
            model.loss_and_grad(X[:8], y[:8])  # training mode: statistics and dropout step
        with pytest.raises(RuntimeError, match="another thread"):
            model.forward(X[:8], training=True)
        with pytest.raises(RuntimeError, match="another thread"):
            model.loss_value(X[:8], y[:8], training=True)
        assert model.dropout_step == steps
        np.testing.assert_array_equal(model.buffers.flat, buffers)
        model.loss_value(X[:8], y[:8])  # evaluation mode is allowed
        for key, value in before.items():
            np.testing.assert_array_equal(model.params[key], value)
        assert begun == [] and second.epoch == 0 and second.history == {}
        assert second.optimizer.lr == 1e-3 and schedule.base_lr is None
    finally:
        release.set()
        thread.join(timeout=300)
    assert errors == [] and first.epoch == 1
    fm.Trainer(model, epochs=1, progress=False).fit(X, y)  # free again once the first returns


def test_a_callback_of_the_fit_may_run_training_mode_passes():
    model = _model()
    X = np.random.default_rng(2).normal(size=(64, 20)).astype(np.float32)
    y = np.arange(64) % 4
    losses = []

    class Probe(fm.Callback):
        def on_epoch_end(self, epoch, metrics):
            losses.append(model.loss_and_grad(X[:8], y[:8])[0])
            return False

    fm.Trainer(model, epochs=2, batch_size=16, callbacks=[Probe()], progress=False).fit(X, y)
    assert len(losses) == 2 and all(np.isfinite(losses))
