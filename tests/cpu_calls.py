"""The CPU kernel tasks called with plain arrays (as the CUDA twins take them), for tests that
compare the two: each builds the kernel records and runs one task on one thread."""

import numpy as np

from fastmlp.engines import records
from fastmlp.engines.team import run_task
from fastmlp.kernels import contract as tasks
from fastmlp.kernels.cpu.network import network_output, network_penalty  # noqa: F401 (tests use both)


def _network(params, buffers, layer_int, layer_float):
    return records.Network(params, buffers, layer_int, layer_float)


def network_forward(X, params, buffers, layer_int, layer_float, ws_off, ws, training,
                    update_stats, seed, step, parts=1, members=None):
    run_task(tasks.TASK_FORWARD, _network(params, buffers, layer_int, layer_float),
             records.features_only(X, int(layer_int[-1, 1])),
             records.workspace(ws, ws_off, parts, X.dtype), records.no_update(X.dtype),
             records.run(seed, step, parts=parts, training=training,
                         update_stats=update_stats), members)
    return network_output(ws, ws_off, layer_int, X.shape[0], training)


def network_loss(X, labels, targets, code, params, buffers, layer_int, layer_float, ws_off, ws,
                 training, update_stats, seed, step, l1, l2, parts=1, members=None):
    work = run_task(tasks.TASK_LOSS, _network(params, buffers, layer_int, layer_float),
                    records.data(X, labels, targets, code),
                    records.workspace(ws, ws_off, parts, X.dtype), records.no_update(X.dtype),
                    records.run(seed, step, l1, l2, parts=parts, training=training,
                                update_stats=update_stats), members)
    return float(work.result[0])


def network_loss_and_grad(X, labels, targets, code, params, grads, buffers, layer_int,
                          layer_float, ws_off, ws, training, update_stats, seed, step, l1, l2,
                          parts=1, members=None):
    work = run_task(tasks.TASK_GRADIENT, _network(params, buffers, layer_int, layer_float),
                    records.data(X, labels, targets, code),
                    records.workspace(ws, ws_off, parts, X.dtype, grads=grads),
                    records.no_update(X.dtype),
                    records.run(seed, step, l1, l2, parts=parts, training=training,
                                update_stats=update_stats), members)
    return float(work.result[0])


def train_epoch(X, labels, targets, code, order, bounds, Xb, lb, tb, params, grads, buffers,
                layer_int, layer_float, ws_off_full, ws_off_last, ws, seed, first_step, l1, l2,
                clip_norm, opt_code, s0, s1, s2, opt_flag, opt_init, coefficients, parts=1,
                members=None):
    """(steps done, Σ batch loss · rows, correct, counted, why it stopped, the value that
    overflowed) of one epoch."""
    work = records.workspace(ws, ws_off_full, parts, X.dtype, grads=grads, batch=(Xb, lb, tb),
                             ws_off_last=ws_off_last, saved=np.empty_like(buffers))
    state = (opt_code, s0, s1, s2, opt_flag, opt_init)
    run_task(tasks.TASK_EPOCH, _network(params, buffers, layer_int, layer_float),
             records.data(X, labels, targets, code, order, bounds), work,
             records.update(state, coefficients, records.update_bounds(params, state)),
             records.run(seed, first_step, l1, l2, clip_norm, parts, training=True,
                         update_stats=True, count=True, gathered=True), members)
    return epoch_result(work.result)


def epoch_result(result):
    """The kernel's result array as (done, total, correct, counted, stop, bad)."""
    return (int(result[0]), float(result[1]), int(result[2]), int(result[3]), int(result[4]),
            int(result[5]))
