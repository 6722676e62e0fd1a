"""The CPU kernels run by a team of threads: every way of cutting a phase into parts gives the
single-thread result (float64, to rounding), the team finishes its task whichever members take
part, and the block product matches NumPy on sub-blocks of larger arrays."""

import cpu_calls
import numpy as np
import pytest
import reference
from numpy.testing import assert_allclose

import fastmlp as fm
from fastmlp.engines.layout import thread_plan, workspace_layout
from fastmlp.kernels import contract as net
from fastmlp.kernels.contract import SPLIT_COLS, SPLIT_LAST, SPLIT_ONE, SPLIT_ROWS
from fastmlp.kernels.cpu.blocks import part

CASES = [
    ("relu", False, 0.0, None), ("tanh", True, 0.2, None), ("maxout", False, 0.1, 3),
    ("gelu", True, 0.0, None), ("maxout", True, 0.0, 2), ("sigmoid", False, 0.3, None),
]


def _model(activation, batchnorm, dropout, pieces, loss, outputs):
    layers = [fm.Dense(70, activation, batchnorm=batchnorm, dropout=dropout, pieces=pieces),
              fm.Dense(40, "relu", batchnorm=batchnorm, dropout=dropout),
              fm.Dense(outputs, batchnorm=batchnorm)]
    return fm.MLP(33, layers, dtype="float64", seed=1, loss=loss)


def _gradient(model, X, labels, targets, code, plan, threads):
    lay = model._layout
    ws_off, size = workspace_layout(lay.layer_int, X.shape[0])
    ws_off[:, net.N_WS_OFFSETS:] = plan
    grads, buffers = np.zeros_like(model._params), model._buffers.copy()
    loss = cpu_calls.network_loss_and_grad(X, labels, targets, code, model._params, grads, buffers,
                                           lay.layer_int, lay.layer_float, ws_off, np.zeros(size),
                                           True, True, 0, 3, 0.01, 0.02, threads, threads)
    return loss, grads, buffers


@pytest.mark.parametrize("loss", ("cross_entropy", "mse"))
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-bn{c[1]}-p{c[2]}" for c in CASES])
def test_every_split_gives_the_single_thread_gradient(case, loss):
    outputs = 5 if loss == "cross_entropy" else 3
    model = _model(*case, loss, outputs)
    rng = np.random.default_rng(0)
    n = 37
    X = rng.standard_normal((n, 33))
    if loss == "cross_entropy":
        labels, targets, code = rng.integers(0, 5, n).astype(np.int64), np.zeros((0, 5)), 0
    else:
        labels, targets, code = np.zeros(0, np.int64), rng.standard_normal((n, 3)), 3
    single = _gradient(model, X, labels, targets, code, SPLIT_ONE, 1)
    batchnorm = case[1]
    for trial in range(6):
        plan = rng.integers(0, SPLIT_LAST + 1, (3, 3))
        if batchnorm:  # batchnorm needs whole columns: its layers are never cut into rows
            plan[plan == SPLIT_ROWS] = SPLIT_COLS
        for threads in (2, 3, 4):
            got = _gradient(model, X, labels, targets, code, plan, threads)
            assert_allclose(got[0], single[0], rtol=1e-12)
            assert_allclose(got[1], single[1], rtol=1e-11, atol=1e-13)
            assert_allclose(got[2], single[2], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("threads", (1, 2, 3))
def test_output_layer_forward_inside_the_loss_phase_matches_numpy(threads):
    """In training the output layer's forward runs inside the loss phase, each part on its own
    rows; with dropout on the output layer too, the loss equals NumPy's on every team size."""
    model = fm.MLP(33, [fm.Dense(40, "tanh", dropout=0.2), fm.Dense(6, "relu", dropout=0.3)],
                   dtype="float64", seed=0)
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((37, 33)), rng.integers(0, 6, 37)
    _, expected, _ = reference.network(model, X, y, training=True, step=3, l1=0.01, l2=0.02)
    loss, _, _ = _gradient(model, X, y.astype(np.int64), np.zeros((0, 6)), 0, SPLIT_ONE, threads)
    assert_allclose(loss, expected, rtol=1e-12)


def test_threaded_epoch_matches_one_thread():
    """A whole epoch (shuffled, a short last batch, clipping, dropout) on 1 and on 3 threads."""
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((203, 20)), rng.integers(0, 4, 203)
    results = []
    for threads in (1, 3):
        model = fm.MLP(20, [fm.Dense(64, "relu", dropout=0.2), fm.Dense(48, "tanh"), fm.Dense(4)],
                       dtype="float64", seed=2)
        lay = model._layout
        trainer = fm.Trainer(model, fm.Adam(1e-2), batch_size=32, epochs=1, progress=False)
        order = rng.permutation(203).astype(np.int64) if not results else results[0][3]
        bounds = trainer._fit_plan(None).bounds(203)
        ws_off, size = workspace_layout(lay.layer_int, 32, threads)
        ws_last, _ = workspace_layout(lay.layer_int, 203 - 32 * 6, threads)
        fused = trainer.optimizer.kernel_state({"flat": model._params})
        out = cpu_calls.train_epoch(
            X, y.astype(np.int64), np.zeros((0, 4)), 0, order, bounds, np.empty((32, 20)),
            np.empty(32, np.int64), np.empty((0, 4)), model._params, np.zeros_like(model._params),
            model._buffers, lay.layer_int, lay.layer_float, ws_off, ws_last, np.zeros(size), 5, 0,
            0.0, 0.001, 1.0, *fused, trainer.optimizer.coefficient_table(["flat"], 7, np.float64),
            threads, threads)
        results.append((out, model._params.copy(), fused[1].copy(), order))
    assert results[0][0][0] == results[1][0][0] == 7
    assert results[0][0][2:] == results[1][0][2:]
    assert_allclose(results[1][0][1], results[0][0][1], rtol=1e-12)
    assert_allclose(results[1][1], results[0][1], rtol=1e-10, atol=1e-12)
    assert_allclose(results[1][2], results[0][2], rtol=1e-10, atol=1e-14)


def test_plans_keep_batchnorm_columns_whole():
    layers = [fm.Dense(256, "relu", batchnorm=True), fm.Dense(256, "relu", batchnorm=True),
              fm.Dense(10)]
    lay = fm.MLP(512, layers)._layout
    plan = thread_plan(lay.layer_int, 256, 2)
    assert SPLIT_ROWS not in plan[:2, 0]      # batchnorm forward: whole columns
    assert plan[1, 2] != SPLIT_ROWS           # dh of layer 1 feeds layer 0's batchnorm backward
    assert (thread_plan(lay.layer_int, 256, 1) == SPLIT_ONE).all()


def test_a_small_layers_backward_products_go_to_different_parts():
    """Below MIN_SPLIT_MACS a layer's products stay whole: dW on the first part, dh on the last,
    so the two run side by side (the first layer has no dh)."""
    lay = fm.MLP(40, [fm.Dense(256, "relu"), fm.Dense(256, "relu"), fm.Dense(10)])._layout
    plan = thread_plan(lay.layer_int, 32, 2)
    assert list(plan[2]) == [SPLIT_ONE, SPLIT_ONE, SPLIT_LAST]
    assert SPLIT_LAST not in plan[:2]
    small = thread_plan(fm.MLP(8, [fm.Dense(8, "relu"), fm.Dense(3)])._layout.layer_int, 4, 2)
    assert [list(row) for row in small] == [[SPLIT_ONE] * 3, [SPLIT_ONE, SPLIT_ONE, SPLIT_LAST]]


@pytest.mark.parametrize("n, parts, align", [(10, 3, 1), (100, 2, 16), (7, 4, 8), (0, 2, 4)])
def test_parts_cover_the_range_once(n, parts, align):
    from numba import njit
    pieces = [njit(lambda a, b, c, d: part(a, b, c, d))(n, parts, i, align) for i in range(parts)]
    assert pieces[0][0] == 0 and pieces[-1][1] == n
    for (lo, hi), (lo2, _) in zip(pieces, pieces[1:]):
        assert hi == lo2 and lo <= hi and lo % align == 0


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_block_products_on_sub_blocks(dtype):
    """forward/weight/input-gradient products on blocks of larger row-major arrays."""
    from numba import njit

    from fastmlp.kernels.cpu.dense import (
        forward_product_block,
        input_grad_block,
        weight_grad_block,
    )

    @njit
    def products(pre, x, W, dW, dpre, dx):
        forward_product_block(pre, x, W, 3, 11, 5, 20)
        weight_grad_block(dW, x, dpre, 2, 9, 4, 17)
        input_grad_block(dx, dpre, W, 1, 8, 6, 13)

    rng = np.random.default_rng(0)
    x, W = rng.standard_normal((12, 15)).astype(dtype), rng.standard_normal((15, 24)).astype(dtype)
    dpre = rng.standard_normal((12, 24)).astype(dtype)
    pre, dW, dx = np.zeros((12, 24), dtype), np.zeros((15, 24), dtype), np.zeros((12, 15), dtype)
    products(pre, x, W, dW, dpre, dx)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    assert_allclose(pre[3:11, 5:20], x[3:11] @ W[:, 5:20], **tol)
    assert not pre[:3].any() and not pre[:, :5].any() and not pre[11:].any()
    assert_allclose(dW[2:9, 4:17], x[:, 2:9].T @ dpre[:, 4:17], **tol)
    assert np.count_nonzero(dW) == 7 * 13
    assert_allclose(dx[1:8, 6:13], dpre[1:8] @ W[6:13].T, **tol)
    assert np.count_nonzero(dx) == 7 * 7


def test_results_do_not_depend_on_the_members():
    """The same parts run by 1 or by 3 threads give bitwise the same gradient."""
    model = _model("relu", True, 0.1, None, "cross_entropy", 5)
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((40, 33)), rng.integers(0, 5, 40).astype(np.int64)
    lay = model._layout
    out = []
    for members in (1, 3):
        ws_off, size = workspace_layout(lay.layer_int, 40, 3)
        grads = np.zeros_like(model._params)
        loss = cpu_calls.network_loss_and_grad(X, y, np.zeros((0, 5)), 0, model._params, grads,
                                               model._buffers.copy(), lay.layer_int,
                                               lay.layer_float, ws_off, np.zeros(size), True, True,
                                               0, 0, 0.0, 0.0, 3, members)
        out.append((loss, grads))
    assert out[0][0] == out[1][0]
    assert np.array_equal(out[0][1], out[1][1])
