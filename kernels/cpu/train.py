"""Whole-epoch training kernel: batch gather, forward, loss, backward, penalties, gradient
clipping, the optimizer update and the metric accumulation of every step in one compiled call.

Shapes: X (n, d); labels (n,) int64 or empty; targets (n, C) or (0, C); order (n,) int64, the row
order of the epoch; Xb (B, d), lb (B,), tb (B or 0, C) the batch buffers; params, grads (P,);
coefficients (steps, N_COEFFICIENTS) the optimizer scalars of each step (see
``optimizers.optimizer_update``). Batch k covers order[bounds[k]:bounds[k+1]].
``ws`` is sized for the largest batch; ``ws_off_full`` lays it out for ``batch`` rows and
``ws_off_last`` for the last batch's rows.

Returns (steps done, Σ batch loss · rows, correct, counted). Steps stop early — before the update —
at the first NaN/inf loss or gradient, so the caller sees steps done < planned steps; the batchnorm
running statistics that step's forward pass changed are put back, so parameters, statistics and
optimizer state are exactly those after the last finite step.
"""

import math

import numpy as np
from numba import njit

from ..config import JIT, JIT_REDUCTION
from .metrics import count_correct
from .network import network_backward, network_loss, network_output
from .optimizers import optimizer_update


@njit(**JIT)
def _gather(Xb, lb, tb, X, labels, targets, order, start, stop):
    d = X.shape[1]
    for r in range(stop - start):
        i = order[start + r]
        for j in range(d):
            Xb[r, j] = X[i, j]
        if labels.shape[0]:
            lb[r] = labels[i]
        if targets.shape[0]:
            for j in range(targets.shape[1]):
                tb[r, j] = targets[i, j]


@njit(**JIT_REDUCTION)
def _finite_norm(grads):
    """(all finite, ‖grads‖₂) in one pass."""
    total = 0.0
    for k in range(grads.shape[0]):
        v = np.float64(grads[k])
        total += v * v
    return math.isfinite(total), math.sqrt(total)


@njit(**JIT)
def local_gradient(X, labels, targets, loss_code, order, start, stop, Xb, lb, tb, params, grads,
                   buffers, layer_int, layer_float, ws_off, ws, seed, step, l1, l2):
    """The gradient of one batch, rows order[start:stop] (m rows): gather, training forward (the
    running statistics updated), mean loss + penalty, backward into ``grads``; returns
    (loss, correct, counted) with the accuracy counts of the batch's output."""
    m = stop - start
    _gather(Xb, lb, tb, X, labels, targets, order, start, stop)
    xb = Xb[:m]
    lbm = lb[:m] if lb.shape[0] else lb
    tbm = tb[:m] if tb.shape[0] else tb
    loss = network_loss(xb, lbm, tbm, loss_code, params, buffers, layer_int, layer_float, ws_off,
                        ws, True, True, seed, step, l1, l2)
    network_backward(xb, params, grads, layer_int, layer_float, ws_off, ws, True, l1, l2)
    correct, counted = count_correct(network_output(ws, ws_off, layer_int, m, True), lbm, tbm,
                                     loss_code)
    return loss, correct, counted


@njit(**JIT)
def apply_update(params, grads, loss, clip_norm, opt_code, s0, s1, s2, coefficients, opt_flag,
                 opt_init):
    """Checks the loss and ``grads`` are finite, clips ``grads`` to global L2 norm ``clip_norm``
    (0: off) and applies the optimizer update with this step's ``coefficients`` row. Returns False,
    without touching ``params`` or the optimizer state, when a value was NaN/inf."""
    finite, norm = _finite_norm(grads)
    if not (finite and math.isfinite(loss)):
        return False
    if clip_norm > 0.0 and norm > clip_norm:
        scale = clip_norm / (norm + 1e-6)
        for i in range(grads.shape[0]):
            grads[i] *= scale
    optimizer_update(opt_code, params, grads, s0, s1, s2, coefficients, opt_flag, opt_init)
    return True


@njit(**JIT)
def train_epoch(X, labels, targets, loss_code, order, bounds, Xb, lb, tb, params, grads, buffers,
                layer_int, layer_float, ws_off_full, ws_off_last, ws, seed, first_step, l1, l2,
                clip_norm, opt_code, s0, s1, s2, opt_flag, opt_init, coefficients):
    """One epoch of minibatch training; see the module docstring."""
    steps = bounds.shape[0] - 1
    total = 0.0
    correct = 0
    counted = 0
    saved = np.empty_like(buffers)  # the running statistics before the current step
    for k in range(steps):
        start, stop = bounds[k], bounds[k + 1]
        ws_off = ws_off_last if k == steps - 1 else ws_off_full
        saved[:] = buffers
        loss, c, n = local_gradient(X, labels, targets, loss_code, order, start, stop, Xb, lb, tb,
                                    params, grads, buffers, layer_int, layer_float, ws_off, ws,
                                    seed, first_step + k, l1, l2)
        if not apply_update(params, grads, loss, clip_norm, opt_code, s0, s1, s2, coefficients[k],
                            opt_flag, opt_init and k == 0):
            buffers[:] = saved
            return k, total, correct, counted
        total += loss * (stop - start)
        correct += c
        counted += n
    return steps, total, correct, counted
