"""Whole-network kernels: one compiled call runs the forward pass, the loss and the backward pass of
every layer, so a training step costs a single call from Python.

The network lives in flat arrays described by small integer/float tables (built by
``fastmlp._layout``), which keeps the kernel independent of Python objects:

- ``params`` / ``grads`` (P,): every parameter, at the offsets of ``layer_int`` (columns ``L_*``);
- ``buffers`` (R,): the batchnorm running statistics;
- ``layer_int`` (L, 12) int64 and ``layer_float`` (L, 4) float64: sizes, codes, options, offsets;
- ``ws`` (S,): the workspace for one batch size B, at the offsets of ``ws_off`` (L, 9) int64.

Per layer l with input h (B, I): pre = h·W + b → [batchnorm] → act = f(pre) → [dropout] → output.
Dropout masks use the stream (seed, l, step) of :mod:`.random`.
"""

from numba import njit

from ..config import JIT
from .activations import MAXOUT, activation_forward, maxout_forward
from .batchnorm import (batchnorm_backward, batchnorm_backward_eval, batchnorm_forward_eval,
                        batchnorm_forward_train)
from .dense import (activation_grad_into, dense_activation_backward, dense_activation_forward,
                    dense_backward, dense_forward)
from .dropout import dropout_backward, dropout_forward
from .losses import loss_forward_backward
from .penalties import penalty_grad, penalty_value
from .random import stream_key

# layer_int columns
L_IN, L_UNITS, L_ACT, L_PIECES, L_BN, L_DROPOUT = 0, 1, 2, 3, 4, 5
L_W, L_B, L_GAMMA, L_BETA, L_RMEAN, L_RVAR = 6, 7, 8, 9, 10, 11
N_LAYER_INT = 12
# layer_float columns
F_ALPHA, F_DROP_P, F_BN_EPS, F_BN_MOMENTUM = 0, 1, 2, 3
N_LAYER_FLOAT = 4
# ws_off columns: (B, F) pre, (B, F) xhat, (B, U) act, (B, U) dropout out, (B, U) mask,
# (B, U) gradient of the layer output, (B, F) gradient of pre, (F,) batch mean, (F,) 1/std
W_PRE, W_XHAT, W_ACT, W_OUT, W_MASK, W_DOUT, W_DPRE, W_MEAN, W_INVSTD = 0, 1, 2, 3, 4, 5, 6, 7, 8
N_WS = 9


@njit(inline="always", **JIT)
def _mat(flat, offset, rows, cols):
    return flat[offset:offset + rows * cols].reshape((rows, cols))


@njit(inline="always", **JIT)
def _vec(flat, offset, size):
    return flat[offset:offset + size]


@njit(**JIT)
def network_forward(X, params, buffers, layer_int, layer_float, ws_off, ws, training, update_stats,
                    seed, step):
    """Forward pass of every layer; returns the (B, C) output of the last layer (a view into ws).

    ``training`` selects batch statistics and dropout; ``update_stats`` the running-statistics
    update (training only); ``seed`` and ``step`` choose the dropout masks.
    """
    n = X.shape[0]
    h = X
    for l in range(layer_int.shape[0]):
        fan_in = layer_int[l, L_IN]
        units = layer_int[l, L_UNITS]
        code = layer_int[l, L_ACT]
        pieces = layer_int[l, L_PIECES]
        width = units * pieces
        alpha = layer_float[l, F_ALPHA]
        W = _mat(params, layer_int[l, L_W], fan_in, width)
        b = _vec(params, layer_int[l, L_B], width)
        pre = _mat(ws, ws_off[l, W_PRE], n, width)
        act = _mat(ws, ws_off[l, W_ACT], n, units)
        if layer_int[l, L_BN]:
            gamma = _vec(params, layer_int[l, L_GAMMA], width)
            beta = _vec(params, layer_int[l, L_BETA], width)
            rmean = _vec(buffers, layer_int[l, L_RMEAN], width)
            rvar = _vec(buffers, layer_int[l, L_RVAR], width)
            xhat = _mat(ws, ws_off[l, W_XHAT], n, width)
            mean = _vec(ws, ws_off[l, W_MEAN], width)
            invstd = _vec(ws, ws_off[l, W_INVSTD], width)
            dense_forward(pre, h, W, b)
            if training:
                batchnorm_forward_train(pre, xhat, mean, invstd, pre, gamma, beta, rmean, rvar,
                                        layer_float[l, F_BN_MOMENTUM], layer_float[l, F_BN_EPS],
                                        update_stats)
            else:
                batchnorm_forward_eval(pre, xhat, invstd, pre, gamma, beta, rmean, rvar,
                                       layer_float[l, F_BN_EPS])
            if code == MAXOUT:
                maxout_forward(act, pre, pieces)
            else:
                activation_forward(act, pre, code, alpha)
        else:
            dense_activation_forward(act, pre, h, W, b, code, alpha, pieces)
        h = act
        if training and layer_int[l, L_DROPOUT]:
            out = _mat(ws, ws_off[l, W_OUT], n, units)
            mask = _mat(ws, ws_off[l, W_MASK], n, units)
            dropout_forward(out, mask, act, layer_float[l, F_DROP_P], stream_key(seed, l, step))
            h = out
    return h


@njit(**JIT)
def network_output(ws, ws_off, layer_int, n, training):
    """The (n, C) output of the last layer left in ws by the latest forward pass."""
    last = layer_int.shape[0] - 1
    column = W_OUT if training and layer_int[last, L_DROPOUT] else W_ACT
    return _mat(ws, ws_off[last, column], n, layer_int[last, L_UNITS])


@njit(**JIT)
def network_penalty(params, layer_int, l1, l2):
    """l1 Σ|W| + l2 Σ W² over the weight matrices of every layer."""
    total = 0.0
    if l1 == 0.0 and l2 == 0.0:
        return total
    for l in range(layer_int.shape[0]):
        size = layer_int[l, L_IN] * layer_int[l, L_UNITS] * layer_int[l, L_PIECES]
        total += penalty_value(_vec(params, layer_int[l, L_W], size), l1, l2)
    return total


@njit(**JIT)
def network_loss(X, labels, targets, loss_code, params, buffers, layer_int, layer_float, ws_off, ws,
                 training, update_stats, seed, step, l1, l2):
    """Mean loss plus penalty, without gradients (the output gradient is still written to ws)."""
    z = network_forward(X, params, buffers, layer_int, layer_float, ws_off, ws, training,
                        update_stats, seed, step)
    last = layer_int.shape[0] - 1
    dz = _mat(ws, ws_off[last, W_DOUT], z.shape[0], z.shape[1])
    loss = loss_forward_backward(dz, z, labels, targets, loss_code)
    return loss + network_penalty(params, layer_int, l1, l2)


@njit(**JIT)
def network_backward(X, params, grads, layer_int, layer_float, ws_off, ws, training, l1, l2):
    """Backward pass of every layer from the output gradient already in ws (W_DOUT of the last
    layer) into ``grads`` (same layout as ``params``), penalties included."""
    n = X.shape[0]
    for l in range(layer_int.shape[0] - 1, -1, -1):
        fan_in = layer_int[l, L_IN]
        units = layer_int[l, L_UNITS]
        code = layer_int[l, L_ACT]
        pieces = layer_int[l, L_PIECES]
        width = units * pieces
        alpha = layer_float[l, F_ALPHA]
        W = _mat(params, layer_int[l, L_W], fan_in, width)
        dW = _mat(grads, layer_int[l, L_W], fan_in, width)
        db = _vec(grads, layer_int[l, L_B], width)
        pre = _mat(ws, ws_off[l, W_PRE], n, width)
        act = _mat(ws, ws_off[l, W_ACT], n, units)
        dpre = _mat(ws, ws_off[l, W_DPRE], n, width)
        dout = _mat(ws, ws_off[l, W_DOUT], n, units)
        if l == 0:
            h = X
            dh = dout  # unused: no input gradient for the first layer
        else:
            prev_units = layer_int[l - 1, L_UNITS]
            h = _mat(ws, ws_off[l - 1, W_ACT], n, prev_units)
            if training and layer_int[l - 1, L_DROPOUT]:
                h = _mat(ws, ws_off[l - 1, W_OUT], n, prev_units)
            dh = _mat(ws, ws_off[l - 1, W_DOUT], n, prev_units)
        if training and layer_int[l, L_DROPOUT]:
            dropout_backward(dout, dout, _mat(ws, ws_off[l, W_MASK], n, units))
        if layer_int[l, L_BN]:
            gamma = _vec(params, layer_int[l, L_GAMMA], width)
            dgamma = _vec(grads, layer_int[l, L_GAMMA], width)
            dbeta = _vec(grads, layer_int[l, L_BETA], width)
            xhat = _mat(ws, ws_off[l, W_XHAT], n, width)
            invstd = _vec(ws, ws_off[l, W_INVSTD], width)
            activation_grad_into(dpre, dout, pre, act, code, alpha, pieces)
            if training:
                batchnorm_backward(dpre, dgamma, dbeta, dpre, xhat, gamma, invstd)
            else:
                batchnorm_backward_eval(dpre, dgamma, dbeta, dpre, xhat, gamma, invstd)
            dense_backward(dh, dW, db, dpre, h, W, l > 0)
        else:
            dense_activation_backward(dh, dW, db, dpre, dout, h, W, pre, act, code, alpha, pieces,
                                      l > 0)
        if l1 != 0.0 or l2 != 0.0:
            size = fan_in * width
            penalty_grad(_vec(grads, layer_int[l, L_W], size), _vec(params, layer_int[l, L_W], size),
                         l1, l2)


@njit(**JIT)
def network_loss_and_grad(X, labels, targets, loss_code, params, grads, buffers, layer_int,
                          layer_float, ws_off, ws, training, update_stats, seed, step, l1, l2):
    """Forward, loss, backward and penalties in one call; returns mean loss + penalty and fills
    ``grads`` with its gradient."""
    loss = network_loss(X, labels, targets, loss_code, params, buffers, layer_int, layer_float,
                        ws_off, ws, training, update_stats, seed, step, l1, l2)
    network_backward(X, params, grads, layer_int, layer_float, ws_off, ws, training, l1, l2)
    return loss
