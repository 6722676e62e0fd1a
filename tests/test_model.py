"""The MLP API: parameter layout, initialization, reproducibility, modes and predictions."""

import copy
import subprocess
import sys

import numpy as np
import pytest

import fastmlp as fm
from fastmlp.engines import cpu as cpu_engine


def test_param_and_buffer_layout():
    m = fm.MLP(6, [fm.Dense(5, "relu", batchnorm=True), fm.Dense(4, "maxout", pieces=3),
                   fm.Dense(2, "sigmoid")], loss="binary_cross_entropy")
    shapes = {k: v.shape for k, v in m.params.items()}
    assert list(shapes.items()) == [("0.W", (6, 5)), ("0.b", (5,)), ("0.gamma", (5,)),
                                    ("0.beta", (5,)), ("1.W", (5, 12)), ("1.b", (12,)),
                                    ("2.W", (4, 2)), ("2.b", (2,))]
    assert list(m.buffers) == ["0.running_mean", "0.running_var"]
    assert m.n_params == sum(v.size for v in m.params.values())
    assert all(np.all(m.params[k] == 0) for k in ("0.b", "1.b", "2.b", "0.beta"))
    assert np.all(m.params["0.gamma"] == 1) and np.all(m.buffers["0.running_var"] == 1)
    assert np.all(m.buffers["0.running_mean"] == 0)
    assert all(v.dtype == np.float32 for v in m.params.values())


def test_initializers():
    wide = [fm.Dense(400, "tanh"), fm.Dense(400, "relu")]
    m = fm.MLP(300, wide, loss="mse", init="auto", seed=1)
    limit = np.sqrt(6 / 700)
    assert np.abs(m.params["0.W"]).max() <= limit
    assert np.abs(m.params["0.W"]).max() > 0.99 * limit  # uniform fills the interval
    assert m.params["1.W"].std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)  # he for relu
    he = fm.MLP(300, wide, loss="mse", init="he", seed=1)
    assert he.params["0.W"].std() == pytest.approx(np.sqrt(2 / 300), rel=0.02)
    xavier = fm.MLP(300, wide, loss="mse", init="xavier", seed=1)
    assert xavier.params["1.W"].std() == pytest.approx(np.sqrt(2 / 800), rel=0.02)


def test_same_seed_same_model_and_masks():
    layers = [fm.Dense(8, "relu", dropout=0.5), fm.Dense(3)]
    a, b, c = (fm.MLP(4, layers, seed=s) for s in (7, 7, 8))
    for key in a.params:
        assert np.array_equal(a.params[key], b.params[key])
    assert not np.array_equal(a.params["0.W"], c.params["0.W"])
    X = np.random.default_rng(0).normal(size=(10, 4))
    first_a, first_b = a.forward(X, training=True), b.forward(X, training=True)
    assert np.array_equal(first_a, first_b)
    second_a = a.forward(X, training=True)
    assert not np.array_equal(first_a, second_a)  # a new mask each step
    assert np.array_equal(a.forward(X, training=True, dropout_step=0), first_a)  # replay
    assert a.dropout_step == 2


def _fingerprint():
    script = ("import numpy as np, fastmlp as fm\n"
              "m = fm.MLP(4, [fm.Dense(8, 'relu', dropout=0.5), fm.Dense(3)], seed=7)\n"
              "X = np.linspace(-1, 1, 40).reshape(10, 4)\n"
              "print(m.params['0.W'].tobytes().hex()[:64], m.forward(X, training=True).tobytes().hex())")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True).stdout


def test_reproducible_across_processes():
    assert _fingerprint() == _fingerprint()


def test_seed_none_draws_and_records_a_seed():
    a, b = fm.MLP(3, [fm.Dense(2)], seed=None), fm.MLP(3, [fm.Dense(2)], seed=None)
    assert a.seed != b.seed
    again = fm.MLP(3, [fm.Dense(2)], seed=a.seed)
    assert np.array_equal(again.params["0.W"], a.params["0.W"])


def test_running_statistics_change_only_in_training():
    m = fm.MLP(3, [fm.Dense(4, "relu", batchnorm=True), fm.Dense(2)], seed=0)
    X = np.random.default_rng(1).normal(size=(8, 3)) * 3 + 2
    m.forward(X)
    m.predict(X)
    m.loss_value(X, np.zeros(8, dtype=int))
    assert np.all(m.buffers["0.running_mean"] == 0)
    m.loss_and_grad(X, np.zeros(8, dtype=int))
    assert np.all(m.buffers["0.running_mean"] != 0)


def test_gradients_are_fresh_arrays():
    m = fm.MLP(3, [fm.Dense(4, "tanh"), fm.Dense(2)], seed=0)
    X = np.random.default_rng(1).normal(size=(5, 3))
    _, g1 = m.loss_and_grad(X, np.zeros(5, dtype=int))
    saved = {k: v.copy() for k, v in g1.items()}
    m.loss_and_grad(X * 2, np.ones(5, dtype=int))
    for key in g1:
        assert np.array_equal(g1[key], saved[key])


def test_params_views_write_through_and_copies_detach():
    m = fm.MLP(3, [fm.Dense(2)], seed=0)
    snapshot = copy.deepcopy(m.params)
    m.params["0.W"] = np.ones((3, 2))
    m.params["0.b"][...] = 2.0
    X = np.eye(3)
    assert np.allclose(m.forward(X), 3.0)
    assert not np.array_equal(snapshot["0.W"], m.params["0.W"])
    m.params.update(snapshot)
    assert np.array_equal(snapshot["0.W"], m.params["0.W"])


def test_predictions():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4))
    ce = fm.MLP(4, [fm.Dense(6, "gelu"), fm.Dense(3)], seed=0)
    proba = ce.predict_proba(X)
    assert proba.shape == (20, 3) and np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(ce.predict(X), proba.argmax(axis=1))
    bce = fm.MLP(4, [fm.Dense(2)], loss="binary_cross_entropy", seed=0)
    p = bce.predict_proba(X)
    assert np.array_equal(bce.predict(X), (p > 0.5).astype(int))
    hinge = fm.MLP(4, [fm.Dense(3)], loss="hinge", seed=0)
    assert hinge.predict(X).shape == (20,)
    mse = fm.MLP(4, [fm.Dense(2)], loss="mse", seed=0)
    assert np.array_equal(mse.predict(X), mse.forward(X))


def test_evaluation_in_chunks_equals_one_pass(monkeypatch):
    m = fm.MLP(4, [fm.Dense(6, "relu", batchnorm=True), fm.Dense(3)], dtype="float64", seed=0)
    X = np.random.default_rng(0).normal(size=(23, 4))
    y = np.arange(23) % 3
    whole, whole_loss = m.forward(X), m.loss_value(X, y, l2=0.1)
    monkeypatch.setattr(cpu_engine, "EVAL_CHUNK_ROWS", 5)
    assert np.allclose(m.forward(X), whole, rtol=1e-13, atol=1e-13)
    assert m.loss_value(X, y, l2=0.1) == pytest.approx(whole_loss, rel=1e-13)


def test_loss_value_matches_loss_and_grad():
    m = fm.MLP(4, [fm.Dense(6, "relu", dropout=0.3), fm.Dense(3)], dtype="float64", seed=0)
    X = np.random.default_rng(0).normal(size=(9, 4))
    y = np.arange(9) % 3
    value, _ = m.loss_and_grad(X, y, l1=0.1, dropout_step=3)
    assert m.loss_value(X, y, training=True, l1=0.1, dropout_step=3) == value


def test_extreme_logits_give_finite_exact_losses():
    m = fm.MLP(2, [fm.Dense(2)], dtype="float64", seed=0)
    m.params["0.W"] = np.eye(2)
    X = np.array([[1e4, -1e4], [-1e4, 1e4]])
    value, grads = m.loss_and_grad(X, np.array([1, 1]))
    assert value == 1e4  # (2e4 + 0) / 2
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    b = fm.MLP(2, [fm.Dense(2)], loss="binary_cross_entropy", dtype="float32", seed=0)
    b.params["0.W"] = np.eye(2)
    value, grads = b.loss_and_grad(X, np.array([[0, 1], [1, 0]]))
    assert value == 2e4
    assert all(np.all(np.isfinite(g)) for g in grads.values())


def test_read_only_inputs_are_accepted():
    m = fm.MLP(3, [fm.Dense(2)], seed=0)
    X = np.ones((4, 3), dtype=np.float32)
    y = np.array([0, 1, 0, 1])
    X.flags.writeable = False
    y.flags.writeable = False
    assert np.array_equal(m.forward(X), m.forward(X.copy()))
    assert m.loss_and_grad(X, y)[0] == m.loss_and_grad(X.copy(), y.copy())[0]
