"""The non-finite guard on the optimizer's result and state: an update that would make a parameter
or an optimizer state value NaN/inf is not made; training stops with a NonFiniteLossWarning that
names the value, and the model and optimizer are exactly those after the last finite step.

``rules.update_bound`` decides from magnitudes alone which updates are surely finite; the
property tests check that its bounds hold for every optimizer over random magnitudes, and that an
update it cannot clear is checked value by value (``CHECK_UPDATE``) with the same answer as doing
the update.
"""

import warnings

import cpu_calls
import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmlp as fm
from fastmlp.engines import records
from fastmlp.engines.layout import build_layout, workspace_layout
from fastmlp.kernels import contract, rules


def _model(dtype="float32", loss="cross_entropy", out=3, inputs=5):
    return fm.MLP(inputs, [fm.Dense(16, "relu"), fm.Dense(out)], loss=loss, dtype=dtype, seed=0)


def _fit(model, optimizer, X, y, epochs=1, batch_size=16):
    trainer = fm.Trainer(model, optimizer, batch_size=batch_size, epochs=epochs, shuffle=False,
                         progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(X, y)
    messages = [str(w.message) for w in caught if issubclass(w.category, fm.NonFiniteLossWarning)]
    return trainer, messages


def _data(n=64, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, 5)) * scale).astype(np.float32)
    return X, np.arange(n) % 3


def _state_arrays(optimizer):
    return {(key, name): value.copy() for key, state in optimizer.state.items()
            for name, value in state.items() if name != "step"}


def test_adam_state_overflow_stops_at_the_last_finite_step():
    """Rows of 1e30 in the third batch make Adam's exp_avg_sq overflow float32 while the loss and
    gradient stay finite: the run stops there, and the model and optimizer equal a run over the
    first two batches only."""
    X, y = _data()
    X[32:48] *= 1e30
    model, optimizer = _model(), fm.Adam(1e-3)
    trainer, messages = _fit(model, optimizer, X, y)
    assert len(messages) == 1
    assert "exp_avg_sq" in messages[0] and "float32" in messages[0] and "step 3" in messages[0]
    assert trainer.stop_reason == "non-finite loss" and trainer.epoch == 0

    reference, reference_optimizer = _model(), fm.Adam(1e-3)
    _fit(reference, reference_optimizer, X[:32], y[:32])
    for key, value in reference.params.items():
        np.testing.assert_array_equal(model.params[key], value)
    expected = _state_arrays(reference_optimizer)
    got = _state_arrays(optimizer)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value)
    assert all(state["step"] == 2 for state in optimizer.state.values())
    assert model.dropout_step == 2


def test_update_overflow_leaves_the_parameters_finite():
    """RMSProp(lr=1e38): the loss and gradient are finite but the update is not; nothing is
    updated and the warning names the parameter."""
    X, y = _data()
    model = _model()
    before = {k: v.copy() for k, v in model.params.items()}
    trainer, messages = _fit(model, fm.RMSProp(lr=1e38), X, y)
    assert len(messages) == 1 and "the parameter value of parameter" in messages[0]
    for key, value in before.items():
        np.testing.assert_array_equal(model.params[key], value)
    assert trainer.epoch == 0


def test_a_learning_rate_beyond_the_dtype_is_refused_before_training():
    X, y = _data()
    model = _model()
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(ValueError, match="do not fit in float32"):
        fm.Trainer(model, fm.Adam(lr=1e39), epochs=1, progress=False).fit(X, y)
    for key, value in before.items():
        np.testing.assert_array_equal(model.params[key], value)
    with pytest.raises(ValueError, match="do not fit in float32"):
        fm.Adam(lr=1e39).step({"w": np.ones(3, np.float32)}, {"w": np.ones(3, np.float32)})


@pytest.mark.parametrize("make", [
    lambda: fm.Adam(1e-2), lambda: fm.Adam(1e-2, amsgrad=True), lambda: fm.AdamW(1e-2),
    lambda: fm.SGD(0.05, momentum=0.9), lambda: fm.RMSProp(1e-3, centered=True, momentum=0.5),
    lambda: fm.Adagrad(0.05), lambda: fm.Rprop(1e-3)],
    ids=["adam", "amsgrad", "adamw", "sgd", "rmsprop_centered", "adagrad", "rprop"])
def test_ordinary_training_is_unchanged(make):
    """With ordinary magnitudes no update is refused (centred RMSprop's updates are all checked
    value by value first), and the compiled epochs equal updates by ``Optimizer.step`` on the
    gradients of ``loss_and_grad``, batch by batch."""
    X, y = _data(48)
    X = X.astype(np.float64)
    model, reference = _model("float64"), _model("float64")
    trainer, messages = _fit(model, make(), X, y, epochs=2)
    assert messages == [] and trainer.epoch == 2
    optimizer = make()
    for _ in range(2):
        for start in range(0, 48, 16):
            _, grads = reference.loss_and_grad(X[start:start + 16], y[start:start + 16])
            optimizer.step(reference.params, grads)
    for key, value in reference.params.items():
        np.testing.assert_allclose(model.params[key], value, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- the bound and the check

OPTIMIZERS = {
    "sgd": lambda: fm.SGD(0.3, momentum=0.9, weight_decay=0.1, nesterov=True),
    "sgd_plain": lambda: fm.SGD(0.3),
    "adagrad": lambda: fm.Adagrad(0.3, weight_decay=0.1),
    "rmsprop": lambda: fm.RMSProp(0.3, momentum=0.5, weight_decay=0.1),
    "adam": lambda: fm.Adam(0.3, weight_decay=0.1),
    "amsgrad": lambda: fm.Adam(0.3, amsgrad=True),
    "adamw": lambda: fm.AdamW(0.3, weight_decay=0.5),
    "rprop": lambda: fm.Rprop(0.3, step_sizes=(1e-6, 50.0)),
}


@numba.njit
def _bound(code, c, flag, init, g, bounds):
    return rules.update_bound(code, c, flag, init, g, bounds)


def _prepared(name, rng, magnitude, steps):
    """An optimizer with state after ``steps`` updates of arrays of the given magnitude."""
    optimizer = OPTIMIZERS[name]()
    param = (rng.normal(size=64) * magnitude).astype(np.float32)
    for _ in range(steps):
        optimizer.step({"w": param}, {"w": (rng.normal(size=64) * magnitude).astype(np.float32)})
    return optimizer, param


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(OPTIMIZERS)), exponent=st.integers(-4, 40),
       grad_exponent=st.integers(-4, 40), steps=st.integers(0, 3), seed=st.integers(0, 2**31))
def test_update_bound_holds(name, exponent, grad_exponent, steps, seed):
    """Whenever update_bound says an update is surely finite, it is, and every new value is
    within the bounds it returns."""
    rng = np.random.default_rng(seed)
    with np.errstate(all="ignore"):
        optimizer, param = _prepared(name, rng, 10.0 ** min(exponent, 15), steps)
        param *= np.float32(10.0 ** (exponent - min(exponent, 15)))
        grad = (rng.normal(size=64) * 10.0 ** grad_exponent).astype(np.float32)
        if not (np.isfinite(param).all() and np.isfinite(grad).all()):
            return
        state = optimizer.kernel_state({"w": param})
        bounds = records.update_bounds(param, state)
        if not np.isfinite(bounds).all():
            return
        row = optimizer.coefficient_table(["w"], 1, np.float32)[0]
        g = float(np.sqrt(np.sum(grad.astype(np.float64) ** 2)))
        surely_finite = _bound(state[0], row, state[4], state[5], g, bounds)
        new_param = param.copy()
        new_state = [s.copy() for s in state[1:4]]
        optimizer_update(state[0], new_param, grad, *new_state, row, state[4], state[5])
    if surely_finite:
        for value, bound in zip([new_param, *new_state], bounds[:4]):
            assert np.isfinite(value).all()
            if value.size:
                assert np.abs(value).max() <= bound


def optimizer_update(*args):
    from fastmlp.kernels.cpu.optimizers import optimizer_update as update
    update(*args)


@pytest.mark.parametrize("parts", [1, 3])
def test_the_epoch_kernel_stops_where_the_update_overflows(parts):
    """The compiled epoch, cut into 1 or 3 parts: the overflowing step is found by the check of
    its update, reported (STOP_OVERFLOW, the first bad value) and not made."""
    layout = build_layout(5, [fm.Dense(8, "relu"), fm.Dense(3)])
    rng = np.random.default_rng(1)
    params = (rng.normal(size=layout.n_params) * 0.3).astype(np.float32)
    buffers = np.zeros(layout.n_buffers, np.float32)
    X, labels = _data(12)
    X[8:] *= 1e30  # the third batch of 4
    optimizer = fm.Adam(1e-3)
    state = optimizer.kernel_state({"flat": params})
    coefficients = optimizer.coefficient_table(["flat"], 3, np.float32)
    ws_off, size = workspace_layout(layout.layer_int, 4, parts)
    start = params.copy()
    result = cpu_calls.train_epoch(
        X, labels.astype(np.int64), np.empty((0, 3), np.float32), contract.CROSS_ENTROPY,
        np.arange(12, dtype=np.int64), np.array([0, 4, 8, 12], dtype=np.int64),
        np.empty((4, 5), np.float32), np.empty(4, np.int64), np.empty((0, 3), np.float32),
        params, np.zeros_like(params), buffers, layout.layer_int, layout.layer_float, ws_off,
        ws_off, np.zeros(size, np.float32), 0, 0, 0.0, 0.0, 0.0, *state, coefficients,
        parts=parts)
    done, _, _, _, stop, bad = result
    assert done == 2 and stop == contract.STOP_OVERFLOW
    index, array = divmod(bad - 1, 4)
    assert array == 2  # s1: exp_avg_sq
    assert not np.array_equal(params, start) and np.isfinite(params).all()
    assert np.isfinite(state[2]).all()


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from(["float32", "float64"]), size=st.integers(0, 70),
       exponent=st.integers(-40, 38), bad=st.sampled_from([None, np.nan, np.inf, -np.inf]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_largest_magnitude_is_the_largest_absolute_value(dtype, size, exponent, bad, seed):
    """The bounds of the update check start from max |x| (from the float bits); NaN or inf
    anywhere gives inf, so that every update of that fit is checked value by value."""
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):  # large exponents overflow float32 to inf: expected below
        array = (rng.normal(size=size) * 10.0 ** exponent).astype(dtype)
    if bad is not None and size:
        array[rng.integers(size)] = bad
    expected = float(np.max(np.abs(array))) if size else 0.0
    if bad is not None and size:
        expected = float("inf")
    assert records.largest_magnitude(array) == expected
    assert records.largest_magnitude(array.reshape(-1, 1)[::-1]) == expected
