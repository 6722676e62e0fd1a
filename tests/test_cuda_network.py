"""Whole-network CUDA functions (kernels/cuda/network.py, kernels/cuda/train.py) against the CPU
whole-network kernels (kernels/cpu/network.py, kernels/cpu/train.py), in float64 to 1e-8.

Tiny random networks cover every activation (maxout included), batchnorm on and off, dropout on
and off, every loss and the l1/l2 penalties; the launch geometry is shrunk (8 threads per block,
4 × 4 reduction blocks, 8 × 4 matrix tiles) so the shapes span several blocks.

The CUDA mode is chosen as in tests/test_cuda_kernels.py: in this process when
``NUMBA_ENABLE_CUDASIM=1`` is set or a usable GPU is present, otherwise in a child pytest process
on the CUDA simulator (``test_network_under_cuda_simulator``).
"""

from pathlib import Path

import cpu_calls
import cpu_calls as cpu_net
import cpu_calls as cpu_train
import numpy as np
import pytest
from cuda_mode import (
    CUDA_TEST_MARKS,
    IN_PROCESS,
    collect_only_parent_tests,
    cuda_test_mode,
    run_file_under_simulator,
)
from numpy.testing import assert_allclose, assert_array_equal

import fastmlp as fm
from fastmlp.engines import records
from fastmlp.engines.layout import build_layout, workspace_layout
from fastmlp.kernels import contract

THIS_FILE = Path(__file__).resolve()


pytestmark = CUDA_TEST_MARKS

if IN_PROCESS:  # importing numba.cuda fixes this process's CUDA mode: only when it will be used
    from numba import cuda

    from fastmlp.kernels.cuda import _views as gpu_views
    from fastmlp.kernels.cuda import network as gpu_net
    from fastmlp.kernels.cuda import train as gpu_train

PARENT_PROCESS_TESTS = ("test_network_under_cuda_simulator",)
TOL = dict(rtol=1e-8, atol=1e-10)


@pytest.fixture(autouse=True)
def _cuda_mode(request, monkeypatch):
    """Skip when CUDA does not run in this process; shrink the launch geometry."""
    yield from cuda_test_mode(request, monkeypatch, PARENT_PROCESS_TESTS, (8, 4, 4, 4, 2))


def test_network_under_cuda_simulator():
    """Without a GPU, run this file in a child process on the CUDA simulator."""
    run_file_under_simulator(THIS_FILE, "network")


# ---------------------------------------------------------------- cases

LABEL_LOSSES = (contract.CROSS_ENTROPY, contract.HINGE)

# (id, hidden layers, output activation, loss code, l1, l2); input 5 features, 3 outputs
CASES = [
    ("relu-bn-dropout/tanh/ce-elastic",
     [fm.Dense(6, "relu", batchnorm=True, dropout=0.3), fm.Dense(5, "tanh")],
     contract.CROSS_ENTROPY, 0.01, 0.02),
    ("maxout-bn/sigmoid-dropout/hinge",
     [fm.Dense(5, "maxout", batchnorm=True, pieces=3), fm.Dense(6, "sigmoid", dropout=0.25)],
     contract.HINGE, 0.0, 0.0),
    ("leaky/elu-bn/softplus-mse-l2",
     [fm.Dense(6, "leaky_relu", alpha=0.1), fm.Dense(5, "elu", batchnorm=True),
      fm.Dense(4, "softplus")],
     contract.MSE, 0.0, 0.03),
    ("gelu-dropout/maxout/bce-l1",
     [fm.Dense(7, "gelu", dropout=0.2), fm.Dense(4, "maxout")],
     contract.BINARY_CROSS_ENTROPY, 0.02, 0.0),
    ("linear-bn-dropout/ce-probs",
     [fm.Dense(6, "linear", batchnorm=True, dropout=0.4)],
     contract.CROSS_ENTROPY_PROBS, 0.0, 0.01),
]
IDS = [case[0] for case in CASES]

N_IN, N_OUT = 5, 3


def _network(case, seed=0):
    """(layout, params, buffers) of the case, random parameters (float64)."""
    _, hidden, code, _, _ = case
    layers = list(hidden) + [fm.Dense(N_OUT)]
    lay = build_layout(N_IN, layers)
    rng = np.random.default_rng(seed)
    params = rng.normal(scale=0.6, size=lay.n_params)
    buffers = np.empty(lay.n_buffers)
    for slot in lay.buffer_slots:
        low = 0.5 if slot.key.endswith("running_var") else -0.5
        buffers[slot.offset:slot.offset + slot.size] = rng.uniform(low, 1.0, slot.size)
    return lay, params, buffers


def _data(code, n, seed=1):
    """(X (n, 5), labels (n,) or empty, targets (n, 3) or (0, 3))."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_IN))
    labels = np.empty(0, dtype=np.int64)
    targets = np.empty((0, N_OUT))
    if code in LABEL_LOSSES:
        labels = rng.integers(0, N_OUT, n).astype(np.int64)
    elif code == contract.CROSS_ENTROPY_PROBS:
        targets = rng.dirichlet(np.ones(N_OUT), n)
    elif code == contract.BINARY_CROSS_ENTROPY:
        targets = (rng.uniform(size=(n, N_OUT)) > 0.5).astype(np.float64)
    else:
        targets = rng.normal(size=(n, N_OUT))
    return X, labels, targets


def dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


# ---------------------------------------------------------------- one step

@pytest.mark.parametrize("training", (True, False), ids=("train", "eval"))
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loss_and_grad_match_cpu(case, training):
    """Loss, gradients, output, output gradient and running statistics after one pass."""
    _, _, code, l1, l2 = case
    lay, params, buffers = _network(case)
    n = 9
    X, labels, targets = _data(code, n)
    ws_off, size = workspace_layout(lay.layer_int, n)
    seed, step = 7, 3

    cpu_buffers, cpu_grads, cpu_ws = buffers.copy(), np.zeros_like(params), np.zeros(size)
    loss = cpu_net.network_loss_and_grad(X, labels, targets, code, params, cpu_grads, cpu_buffers,
                                         lay.layer_int, lay.layer_float, ws_off, cpu_ws, training,
                                         training, seed, step, l1, l2)

    d_params, d_buffers, d_grads, d_ws = dev(params), dev(buffers), dev(np.zeros_like(params)), \
        dev(np.zeros(size))
    got = gpu_net.network_loss_and_grad(dev(X), dev(labels), dev(targets), code, d_params, d_grads,
                                        d_buffers, lay.layer_int, lay.layer_float, ws_off, d_ws,
                                        training, training, seed, step, l1, l2)
    assert isinstance(got, float)
    assert_allclose(got, loss, **TOL)
    assert_allclose(d_grads.copy_to_host(), cpu_grads, **TOL)
    assert_allclose(d_buffers.copy_to_host(), cpu_buffers, **TOL)
    assert_array_equal(d_params.copy_to_host(), params)
    z = cpu_net.network_output(cpu_ws, ws_off, lay.layer_int, n, training)
    d_z = gpu_net.network_output(d_ws, ws_off, lay.layer_int, n, training)
    assert d_z.shape == (n, N_OUT)
    assert_allclose(d_z.copy_to_host(), z, **TOL)
    assert_allclose(d_ws.copy_to_host(), cpu_ws, **TOL)   # every intermediate, masks included


@pytest.mark.parametrize("case", CASES[:2], ids=IDS[:2])
def test_forward_loss_and_penalty_on_device(case):
    """network_forward's view, network_loss into a device scalar (accumulated), network_penalty."""
    _, _, code, _, _ = case
    lay, params, buffers = _network(case, seed=4)
    n = 6
    X, labels, targets = _data(code, n, seed=5)
    ws_off, size = workspace_layout(lay.layer_int, n)
    l1, l2 = 0.01, 0.02

    cpu_ws = np.zeros(size)
    z = cpu_net.network_forward(X, params, buffers.copy(), lay.layer_int, lay.layer_float, ws_off,
                                cpu_ws, False, False, 0, 0)
    d_ws = dev(np.zeros(size))
    d_params, d_buffers = dev(params), dev(buffers)
    d_z = gpu_net.network_forward(dev(X), d_params, d_buffers, lay.layer_int, lay.layer_float,
                                  ws_off, d_ws, False, False, 0, 0)
    assert_allclose(d_z.copy_to_host(), z, **TOL)
    assert_array_equal(d_buffers.copy_to_host(), buffers)

    penalty = cpu_net.network_penalty(params, lay.layer_int, l1, l2)
    assert_allclose(gpu_net.network_penalty(d_params, lay.layer_int, l1, l2), penalty, **TOL)
    assert gpu_net.network_penalty(d_params, lay.layer_int, 0.0, 0.0) == 0.0

    loss = cpu_net.network_loss(X, labels, targets, code, params, buffers.copy(), lay.layer_int,
                                lay.layer_float, ws_off, np.zeros(size), False, False, 0, 0, l1,
                                l2)
    out = dev(np.array([1.5]))
    partials = cuda.device_array(gpu_net.partials_size(lay.layer_int, n), dtype=np.float64)
    result = gpu_net.network_loss(dev(X), dev(labels), dev(targets), code, d_params, d_buffers,
                                  lay.layer_int, lay.layer_float, ws_off, d_ws, False, False, 0, 0,
                                  l1, l2, out=out, accumulate=True, partials=partials)
    assert result is None
    assert_allclose(out.copy_to_host()[0], 1.5 + loss, **TOL)


def test_a_repeated_pass_reuses_its_views():
    """The views of the flat device arrays that a pass launches on are made on the first pass
    only (slicing a device array costs host time at every launch otherwise), and die with the
    arrays they view."""
    import gc
    case = CASES[0]
    _, _, code, l1, l2 = case
    lay, params, buffers = _network(case)
    X, labels, targets = _data(code, 8)
    ws_off, size = workspace_layout(lay.layer_int, 8)
    d_params, d_grads, d_ws = dev(params), dev(np.zeros_like(params)), dev(np.zeros(size))
    args = (dev(X), dev(labels), dev(targets), code, d_params, d_grads, dev(buffers),
            lay.layer_int, lay.layer_float, ws_off, d_ws, True, True, 7, 0, l1, l2)
    first = gpu_net.network_loss_and_grad(*args)
    counts = [len(gpu_views._views[id(a)]) for a in (d_params, d_grads, d_ws)]
    assert min(counts) >= 2
    views = gpu_net.network_output(d_ws, ws_off, lay.layer_int, 8, True)
    assert_allclose(gpu_net.network_loss_and_grad(*args), first, **TOL)
    assert [len(gpu_views._views[id(a)]) for a in (d_params, d_grads, d_ws)] == counts
    assert gpu_net.network_output(d_ws, ws_off, lay.layer_int, 8, True) is views
    tracked = len(gpu_views._views)
    del args, d_params, d_grads, d_ws, views
    gc.collect()
    assert len(gpu_views._views) <= tracked - 3


# ---------------------------------------------------------------- one epoch

def _optimizer(name):
    if name == "adam":
        return fm.Adam(lr=0.01)
    return fm.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)


def _gpu_epoch(X, labels, targets, code, order, bounds, Xb, lb, tb, params, grads, buffers,
               layer_int, layer_float, ws_off_full, ws_off_last, ws, seed, first_step, l1, l2,
               clip_norm, opt_code, s0, s1, s2, flag, init, coefficients):
    """The CUDA epoch called with the kernel records, from the CPU helper's plain arguments."""
    state = (opt_code, *(s.copy_to_host() for s in (s0, s1, s2)), flag, init)
    update_bounds = records.update_bounds(params.copy_to_host(), state)
    result = gpu_train.train_epoch(
        contract.Network(params, buffers, layer_int, layer_float),
        contract.Data(X, labels, targets, code, order, bounds),
        contract.Workspace(ws, ws_off_full, ws_off_last, grads, None, Xb, lb, tb, None, None,
                           None, np.zeros(contract.N_RESULT)),
        contract.Update(opt_code, s0, s1, s2, flag, init, coefficients, update_bounds),
        contract.Run(seed, first_step, l1, l2, clip_norm, 1, 1, True, True, True, True))
    return cpu_calls.epoch_result(result)


def _bounds(n, batch):
    return np.asarray(list(range(0, n, batch)) + [n], dtype=np.int64)


@pytest.mark.parametrize("opt_name", ("adam", "sgd"))
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_train_epoch_matches_cpu(case, opt_name):
    """One epoch (shuffled, a short last batch, clipping on) with Adam and with SGD: parameters,
    optimizer state, running statistics, summed loss and accuracy counts."""
    _, _, code, l1, l2 = case
    lay, params, buffers = _network(case, seed=2)
    n, batch = 11, 4
    X, labels, targets = _data(code, n, seed=3)
    order = np.random.default_rng(9).permutation(n).astype(np.int64)
    bounds = _bounds(n, batch)
    steps = bounds.shape[0] - 1
    ws_off_full, _ = workspace_layout(lay.layer_int, batch)
    ws_off_last, _ = workspace_layout(lay.layer_int, n - batch * (steps - 1))
    _, ws_size = workspace_layout(lay.layer_int, batch)
    clip = 0.5
    seed, first_step = 3, 5

    opt = _optimizer(opt_name)
    cpu_params = params.copy()
    opt_code, s0, s1, s2, flag, init = opt.kernel_state({"flat": cpu_params})
    coefficients = opt.coefficient_table(["flat"], steps, np.float64)
    states = [s.copy() for s in (s0, s1, s2)]
    d_states = [dev(s) for s in states]

    cpu_buffers, cpu_grads = buffers.copy(), np.zeros_like(params)
    Xb = np.empty((batch, N_IN))
    lb = np.empty(batch if labels.size else 0, dtype=np.int64)
    tb = np.empty((batch if targets.shape[0] else 0, N_OUT))
    expected = cpu_train.train_epoch(
        X, labels, targets, code, order, bounds, Xb, lb, tb, cpu_params, cpu_grads, cpu_buffers,
        lay.layer_int, lay.layer_float, ws_off_full, ws_off_last, np.zeros(ws_size), seed,
        first_step, l1, l2, clip, opt_code, s0, s1, s2, flag, init, coefficients)

    d_params, d_buffers, d_grads = dev(params), dev(buffers), dev(np.zeros_like(params))
    got = _gpu_epoch(
        dev(X), dev(labels), dev(targets), code, dev(order), bounds, dev(Xb), dev(lb), dev(tb),
        d_params, d_grads, d_buffers, lay.layer_int, lay.layer_float, ws_off_full, ws_off_last,
        dev(np.zeros(ws_size)), seed, first_step, l1, l2, clip, opt_code, *d_states, flag, init,
        dev(coefficients))

    assert got[0] == expected[0] == steps
    assert_allclose(got[1], expected[1], **TOL)
    assert got[2:] == tuple(int(v) for v in expected[2:])
    assert_allclose(d_params.copy_to_host(), cpu_params, **TOL)
    assert_allclose(d_grads.copy_to_host(), cpu_grads, **TOL)
    assert_allclose(d_buffers.copy_to_host(), cpu_buffers, **TOL)
    for d_state, state in zip(d_states, (s0, s1, s2)):
        assert_allclose(d_state.copy_to_host(), state, **TOL)


def _stopping_epochs(opt, nan_at=None, step1_lr=None):
    """One epoch of 4 batches of 3 rows by the CPU kernel and by the CUDA kernel from the same
    network (CASES[0]) and ``opt``: an input NaN at ``nan_at`` (row, column), or the learning
    rate of step 1 set to ``step1_lr``. Returns (expected, got) results and the CPU (params,
    states, buffers) and device (params, states, buffers) after the epoch."""
    _, _, code, l1, l2 = CASES[0]
    lay, params, buffers = _network(CASES[0], seed=6)
    n, batch = 12, 3
    X, labels, targets = _data(code, n, seed=7)
    if nan_at is not None:
        X[nan_at] = np.nan
    order = np.arange(n, dtype=np.int64)
    bounds = _bounds(n, batch)
    ws_off, ws_size = workspace_layout(lay.layer_int, batch)
    cpu_params = params.copy()
    opt_code, s0, s1, s2, flag, init = opt.kernel_state({"flat": cpu_params})
    coefficients = opt.coefficient_table(["flat"], 4, np.float64)
    if step1_lr is not None:
        coefficients[1, 0] = step1_lr
    d_states = [dev(s) for s in (s0, s1, s2)]
    cpu_buffers = buffers.copy()
    Xb, lb, tb = np.empty((batch, N_IN)), np.empty(batch, dtype=np.int64), np.empty((0, N_OUT))
    expected = cpu_train.train_epoch(
        X, labels, targets, code, order, bounds, Xb, lb, tb, cpu_params, np.zeros_like(params),
        cpu_buffers, lay.layer_int, lay.layer_float, ws_off, ws_off, np.zeros(ws_size), 0, 0, l1,
        l2, 0.0, opt_code, s0, s1, s2, flag, init, coefficients)
    d_params, d_buffers = dev(params), dev(buffers)
    got = _gpu_epoch(
        dev(X), dev(labels), dev(targets), code, dev(order), bounds, dev(Xb), dev(lb), dev(tb),
        d_params, dev(np.zeros_like(params)), d_buffers, lay.layer_int, lay.layer_float, ws_off,
        ws_off, dev(np.zeros(ws_size)), 0, 0, l1, l2, 0.0, opt_code, *d_states, flag, init,
        dev(coefficients))
    return (expected, got, (cpu_params, (s0, s1, s2), cpu_buffers),
            (d_params.copy_to_host(), [d.copy_to_host() for d in d_states],
             d_buffers.copy_to_host()))


def test_train_epoch_stops_at_a_non_finite_step():
    """A NaN input row stops the epoch at its batch on both: steps done, sums, untouched updates
    and running statistics as the CPU kernel leaves them."""
    expected, got, (cpu_params, states, cpu_buffers), (gpu_params, gpu_states, got_buffers) = (
        _stopping_epochs(fm.Adam(lr=0.01), nan_at=(4, 1)))  # second batch (rows 3-5)
    assert got[0] == expected[0] == 1
    assert_allclose(got[1], expected[1], **TOL)
    assert got[2:] == tuple(int(v) for v in expected[2:])
    assert_allclose(gpu_params, cpu_params, **TOL)
    for gpu_state, state in zip(gpu_states, states):
        assert_allclose(gpu_state, state, **TOL)
    finite = np.isfinite(cpu_buffers)
    assert_array_equal(np.isfinite(got_buffers), finite)
    assert_allclose(got_buffers[finite], cpu_buffers[finite], **TOL)


@pytest.mark.parametrize("opt_name", ("rmsprop", "rmsprop_centered"))
def test_train_epoch_stops_at_an_overflowing_update(opt_name):
    """Step 1's learning rate makes its update overflow float64 (finite loss and gradient): both
    kernels stop there (the bound finds the risk, the check on copies the first bad value), with
    the same report, and leave the parameters and state of step 0."""
    opt = fm.RMSProp(lr=0.01, momentum=0.5, centered=opt_name.endswith("centered"))
    expected, got, (cpu_params, states, cpu_buffers), (gpu_params, gpu_states, gpu_buffers) = (
        _stopping_epochs(opt, step1_lr=1e308))
    assert expected[0] == got[0] == 1
    assert expected[4] == got[4] == contract.STOP_OVERFLOW
    assert expected[5] == got[5] and (expected[5] - 1) % 4 in (0, 3)  # the param or momentum
    assert_allclose(got[1], expected[1], **TOL)
    assert_allclose(gpu_params, cpu_params, **TOL)
    assert np.isfinite(cpu_params).all()
    for gpu_state, state in zip(gpu_states, states):
        # g / (sqrt(v) + eps) turns gradient entries of ~1e-17 (equal to TOL) into ~1e-9
        assert_allclose(gpu_state, state, rtol=1e-8, atol=1e-7)
        assert np.isfinite(state).all()
    assert_allclose(gpu_buffers, cpu_buffers, **TOL)


def test_gather_batch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 3))
    targets = rng.normal(size=(10, 2))
    labels = rng.integers(0, 5, 10).astype(np.int64)
    order = rng.permutation(10).astype(np.int64)
    Xb, lb, tb = dev(np.zeros((6, 3))), dev(np.zeros(6, np.int64)), dev(np.zeros((6, 2)))
    gpu_train.gather_batch(Xb, lb, tb, dev(X), dev(labels), dev(targets), dev(order), 3, 8)
    rows = order[3:8]
    assert_array_equal(Xb.copy_to_host()[:5], X[rows])
    assert_array_equal(lb.copy_to_host()[:5], labels[rows])
    assert_array_equal(tb.copy_to_host()[:5], targets[rows])


collect_only_parent_tests(globals(), PARENT_PROCESS_TESTS)
