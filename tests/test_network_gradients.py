"""Whole-network gradients against central differences (float64) and float32 against float64."""

import itertools

import numpy as np
import pytest
import reference
from helpers import (
    ACTIVATIONS,
    LOSS_CASES,
    dense,
    make_targets,
    numeric_gradient,
    relative_error,
)

import fastmlp as fm

PENALTIES = ((0.0, 0.0), (0.03, 0.0), (0.0, 0.05), (0.02, 0.04))
# (input_dim, hidden units per layer, batch size): several random architectures
ARCHITECTURES = ((3, (4,), 6), (5, (3, 4), 7), (2, (5, 2, 3), 5))
CASES = list(itertools.product(ACTIVATIONS, (False, True), (0.0, 0.3), LOSS_CASES))
MAX_ERRORS = {}


def build(activation, batchnorm, dropout, loss, arch, dtype="float64", seed=0):
    input_dim, hidden, _ = arch
    c = 3
    layers = [dense(u, activation, batchnorm=batchnorm, dropout=dropout) for u in hidden]
    # the activation under test also on the output layer when the loss allows any output
    out_act = activation if loss == "mse" and activation != "maxout" else "linear"
    layers.append(dense(c, out_act))
    model = fm.MLP(input_dim, layers, loss=loss, dtype=dtype, seed=seed)
    # move biases and batchnorm parameters off their initial values: a zero bias puts a ReLU exactly
    # at its kink for a row of dead inputs, where central differences are not a gradient
    rng = np.random.default_rng(seed + 1000)
    for key, value in model.params.items():
        if not key.endswith(".W"):
            value += rng.uniform(0.1, 0.5, size=value.shape) * rng.choice([-1, 1], size=value.shape)
    return model


@pytest.mark.parametrize("activation,batchnorm,dropout,loss_case", CASES)
def test_gradients_match_central_differences(activation, batchnorm, dropout, loss_case):
    loss, kind = loss_case
    index = CASES.index((activation, batchnorm, dropout, loss_case))
    arch = ARCHITECTURES[index % len(ARCHITECTURES)]
    rng = np.random.default_rng(index)
    for l1, l2 in PENALTIES:
        model = build(activation, batchnorm, dropout, loss, arch, seed=index)
        n = arch[2]
        X = rng.normal(size=(n, arch[0]))
        y = make_targets(loss, kind, n, 3, rng)
        step = 11
        value, grads = model.loss_and_grad(X, y, l1=l1, l2=l2, dropout_step=step)
        _, expected, _ = reference.network(model, X, y, training=True, step=step, l1=l1, l2=l2)
        assert value == pytest.approx(expected, rel=1e-12, abs=1e-12)
        numeric = numeric_gradient(model, X, y, l1=l1, l2=l2, step=step)
        err = relative_error([grads[k] for k in numeric], list(numeric.values()))
        MAX_ERRORS[loss] = max(MAX_ERRORS.get(loss, 0.0), err)
        assert err <= 1e-6, (activation, batchnorm, dropout, loss, kind, l1, l2, err)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss,kind", LOSS_CASES)
def test_float32_matches_float64_reference(activation, loss, kind):
    arch = ARCHITECTURES[1]
    rng = np.random.default_rng(7)
    m64 = build(activation, True, 0.2, loss, arch, "float64", seed=3)
    m32 = build(activation, True, 0.2, loss, arch, "float32", seed=3)
    for key in m64.params:  # same numbers in both precisions
        m64.params[key] = m32.params[key]
    X = rng.normal(size=(9, arch[0]))
    y = make_targets(loss, kind, 9, 3, rng)
    v64, g64 = m64.loss_and_grad(X, y, l1=0.01, l2=0.02, dropout_step=4)
    v32, g32 = m32.loss_and_grad(X, y, l1=0.01, l2=0.02, dropout_step=4)
    assert v32 == pytest.approx(v64, rel=1e-5, abs=1e-6)
    scale = max(1.0, max(float(np.abs(g).max()) for g in g64.values()))
    for key in g64:
        assert g32[key].dtype == np.float32
        assert np.allclose(g32[key], g64[key], rtol=1e-3, atol=2e-5 * scale), key
    assert np.allclose(m32.forward(X), m64.forward(X), rtol=1e-4, atol=1e-5)
    for key in m64.buffers:
        assert np.allclose(m32.buffers[key], m64.buffers[key], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_matches_reference_in_both_modes(activation):
    rng = np.random.default_rng(1)
    model = build(activation, True, 0.25, "cross_entropy", ARCHITECTURES[2])
    X = rng.normal(size=(6, 2))
    out, _, buffers = reference.network(model, X, training=True, step=5)
    assert np.allclose(model.forward(X, training=True, dropout_step=5), out, rtol=1e-12, atol=1e-12)
    for key, value in buffers.items():  # the training pass updated the running statistics
        assert np.allclose(model.buffers[key], value, rtol=1e-12, atol=1e-14)
    out_eval, _, _ = reference.network(model, X, training=False)
    assert np.allclose(model.forward(X), out_eval, rtol=1e-12, atol=1e-12)


def test_evaluation_mode_gradients_match_central_differences():
    rng = np.random.default_rng(2)
    model = build("tanh", True, 0.5, "cross_entropy", ARCHITECTURES[1])
    X = rng.normal(size=(7, 5))
    y = rng.integers(0, 3, 7)
    for _ in range(3):  # move the running statistics away from their initial values
        model.loss_and_grad(X * 2 + 1, y)
    value, grads = model.loss_and_grad(X, y, training=False, l2=0.01)
    numeric = numeric_gradient(model, X, y, l2=0.01, training=False)
    assert relative_error([grads[k] for k in numeric], list(numeric.values())) <= 1e-6


def test_report_largest_errors():
    """Prints the largest gradient-check error per loss (run with -s to see it)."""
    if MAX_ERRORS:
        print("\nlargest relative gradient error per loss:",
              {k: f"{v:.2e}" for k, v in sorted(MAX_ERRORS.items())})
