"""Whole-network forward, loss and backward on the GPU (twin of ``kernels/cpu/network.py``).

Same functions, same arguments and the same flat-array layout as the CPU module:

- ``params`` / ``grads`` (P,), ``buffers`` (R,), ``ws`` (S,), ``X`` (B, I), ``labels`` (B,) int64
  (or empty), ``targets`` (B, C) (or (0, C)) are **device arrays** of one float dtype (labels
  int64);
- ``layer_int`` (L, 12) int64, ``layer_float`` (L, 4) float64 and ``ws_off`` (L, 9) int64 are
  **host** NumPy arrays: the host reads them to choose the launches, layer by layer, and slices
  the flat device arrays into views (no copies, no transfers).

Each function launches the CUDA launchers of ``dense``, ``activations``, ``batchnorm``,
``dropout``, ``losses`` and ``penalties`` in the order of the CPU kernel, so the results match it
to rounding (dropout masks bit for bit: same stream keys, same counters).

Scalar results: ``network_loss``, ``network_loss_and_grad`` and ``network_penalty`` return a host
float when ``out`` is None (one device-to-host copy). Given a device array ``out`` (1,) float64 they
write the value to out[0] (add it when ``accumulate``) and return None, so a training loop keeps
the loss on the device. ``partials`` optionally supplies the float64 per-block workspace of those
reductions (at least :func:`partials_size` entries) to avoid allocations.
"""

import numpy as np
from numba import cuda

from ..contract import (
    F_ALPHA,
    F_BN_EPS,
    F_BN_MOMENTUM,
    F_DROP_P,
    L_ACT,
    L_B,
    L_BETA,
    L_BN,
    L_DROPOUT,
    L_GAMMA,
    L_IN,
    L_PIECES,
    L_RMEAN,
    L_RVAR,
    L_UNITS,
    L_W,
    MAXOUT,
    N_LAYER_FLOAT,
    N_LAYER_INT,
    N_WS,
    W_ACT,
    W_DOUT,
    W_DPRE,
    W_INVSTD,
    W_MASK,
    W_MEAN,
    W_OUT,
    W_PRE,
    W_XHAT,
)
from ..cpu.random import stream_key
from . import _views
from . import losses as _losses
from . import penalties as _penalties
from ._reduce import finish_sum, partials_for
from .activations import activation_forward, maxout_forward
from .batchnorm import (
    batchnorm_backward,
    batchnorm_backward_eval,
    batchnorm_forward_eval,
    batchnorm_forward_train,
)
from .dense import (
    activation_grad_into,
    dense_activation_backward,
    dense_activation_forward,
    dense_backward,
    dense_forward,
)
from .dropout import dropout_backward, dropout_forward
from .losses import loss_forward_backward
from .penalties import penalty_grad, penalty_value

__all__ = ["N_LAYER_INT", "N_LAYER_FLOAT", "N_WS", "partials_size", "network_forward",
           "network_output", "network_penalty", "network_loss", "network_backward",
           "network_loss_and_grad"]


_mat = _views.matrix  # (rows, cols) view of a flat device array from an offset, made once
_vec = _views.vector


def _sizes(layer_int, l):
    """(fan_in, units, activation code, pieces, width = units · pieces) of layer l as ints."""
    row = layer_int[l]
    fan_in, units, code, pieces = (int(row[L_IN]), int(row[L_UNITS]), int(row[L_ACT]),
                                   int(row[L_PIECES]))
    return fan_in, units, code, pieces, units * pieces


def partials_size(layer_int, batch_size):
    """Entries of the float64 workspace that the loss and penalty reductions over ``batch_size``
    rows need with the current launch geometry."""
    size = _losses.partials_size(batch_size)
    for l in range(layer_int.shape[0]):
        fan_in, _, _, _, width = _sizes(layer_int, l)
        size = max(size, _penalties.partials_size(fan_in * width))
    return size


def network_forward(X, params, buffers, layer_int, layer_float, ws_off, ws, training, update_stats,
                    seed, step, stream=0):
    """Forward pass of every layer; returns the (B, C) output of the last layer (a device view
    into ws). X (B, I) device; ``training`` selects batch statistics and dropout,
    ``update_stats`` the running-statistics update (training only); ``seed`` and ``step`` choose
    the dropout masks (the CPU streams)."""
    n = X.shape[0]
    h = X
    for l in range(layer_int.shape[0]):
        fan_in, units, code, pieces, width = _sizes(layer_int, l)
        alpha = float(layer_float[l, F_ALPHA])
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
            dense_forward(pre, h, W, b, stream=stream)
            if training:
                batchnorm_forward_train(pre, xhat, mean, invstd, pre, gamma, beta, rmean, rvar,
                                        float(layer_float[l, F_BN_MOMENTUM]),
                                        float(layer_float[l, F_BN_EPS]), bool(update_stats),
                                        stream=stream)
            else:
                batchnorm_forward_eval(pre, xhat, invstd, pre, gamma, beta, rmean, rvar,
                                       float(layer_float[l, F_BN_EPS]), stream=stream)
            if code == MAXOUT:
                maxout_forward(act, pre, pieces, stream=stream)
            else:
                activation_forward(act, pre, code, alpha, stream=stream)
        else:
            dense_activation_forward(act, pre, h, W, b, code, alpha, pieces, stream=stream)
        h = act
        if training and layer_int[l, L_DROPOUT]:
            out = _mat(ws, ws_off[l, W_OUT], n, units)
            mask = _mat(ws, ws_off[l, W_MASK], n, units)
            dropout_forward(out, mask, act, float(layer_float[l, F_DROP_P]),
                            stream_key(seed, l, step), stream=stream)
            h = out
    return h


def network_output(ws, ws_off, layer_int, n, training):
    """The (n, C) device view of the last layer's output left in ws by the latest forward pass."""
    last = layer_int.shape[0] - 1
    column = W_OUT if training and layer_int[last, L_DROPOUT] else W_ACT
    return _mat(ws, ws_off[last, column], n, layer_int[last, L_UNITS])


def network_penalty(params, layer_int, l1, l2, out=None, accumulate=False, partials=None,
                    stream=0):
    """l1 Σ|W| + l2 Σ W² over the weight matrices of every layer (float64 accumulation).

    Host float when ``out`` is None; else written to (added to, when ``accumulate``) out[0]."""
    wanted = out is None
    if wanted:
        out = cuda.device_array(1, dtype=np.float64)
        accumulate = False
    if l1 == 0.0 and l2 == 0.0:
        if not accumulate:  # out[0] = 0: the sum of no partials
            finish_sum(out, partials_for(None, 0, np.float64), 1.0, False, stream)
    else:
        for l in range(layer_int.shape[0]):
            fan_in, _, _, _, width = _sizes(layer_int, l)
            w = _vec(params, layer_int[l, L_W], fan_in * width)
            penalty_value(w, l1, l2, out=out, accumulate=accumulate or l > 0, partials=partials,
                          stream=stream)
    if wanted:
        return float(out.copy_to_host(stream=stream)[0])
    return None


def network_loss(X, labels, targets, loss_code, params, buffers, layer_int, layer_float, ws_off, ws,
                 training, update_stats, seed, step, l1, l2, out=None, accumulate=False,
                 partials=None, stream=0):
    """Mean loss plus penalty without gradients (the output gradient is still written to ws, at
    W_DOUT of the last layer). labels (B,) int64 device or empty, targets (B, C) device or (0, C).
    Host float when ``out`` is None, else out[0] = (or +=) the value."""
    wanted = out is None
    if wanted:
        out = cuda.device_array(1, dtype=np.float64)
        accumulate = False
    z = network_forward(X, params, buffers, layer_int, layer_float, ws_off, ws, training,
                        update_stats, seed, step, stream=stream)
    last = layer_int.shape[0] - 1
    dz = _mat(ws, ws_off[last, W_DOUT], z.shape[0], z.shape[1])
    loss_forward_backward(dz, z, labels, targets, int(loss_code), out=out, accumulate=accumulate,
                          partials=partials, stream=stream)
    if l1 != 0.0 or l2 != 0.0:
        network_penalty(params, layer_int, l1, l2, out=out, accumulate=True, partials=partials,
                        stream=stream)
    if wanted:
        return float(out.copy_to_host(stream=stream)[0])
    return None


def network_backward(X, params, grads, layer_int, layer_float, ws_off, ws, training, l1, l2,
                     stream=0):
    """Backward pass of every layer from the output gradient already in ws (W_DOUT of the last
    layer) into the device array ``grads`` (P,), laid out like ``params``, penalties included."""
    n = X.shape[0]
    for l in range(layer_int.shape[0] - 1, -1, -1):
        fan_in, units, code, pieces, width = _sizes(layer_int, l)
        alpha = float(layer_float[l, F_ALPHA])
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
            prev_units = int(layer_int[l - 1, L_UNITS])
            h = _mat(ws, ws_off[l - 1, W_ACT], n, prev_units)
            if training and layer_int[l - 1, L_DROPOUT]:
                h = _mat(ws, ws_off[l - 1, W_OUT], n, prev_units)
            dh = _mat(ws, ws_off[l - 1, W_DOUT], n, prev_units)
        if training and layer_int[l, L_DROPOUT]:
            dropout_backward(dout, dout, _mat(ws, ws_off[l, W_MASK], n, units), stream=stream)
        if layer_int[l, L_BN]:
            gamma = _vec(params, layer_int[l, L_GAMMA], width)
            dgamma = _vec(grads, layer_int[l, L_GAMMA], width)
            dbeta = _vec(grads, layer_int[l, L_BETA], width)
            xhat = _mat(ws, ws_off[l, W_XHAT], n, width)
            invstd = _vec(ws, ws_off[l, W_INVSTD], width)
            activation_grad_into(dpre, dout, pre, act, code, alpha, pieces, stream=stream)
            if training:
                batchnorm_backward(dpre, dgamma, dbeta, dpre, xhat, gamma, invstd, stream=stream)
            else:
                batchnorm_backward_eval(dpre, dgamma, dbeta, dpre, xhat, gamma, invstd,
                                        stream=stream)
            dense_backward(dh, dW, db, dpre, h, W, l > 0, stream=stream)
        else:
            dense_activation_backward(dh, dW, db, dpre, dout, h, W, pre, act, code, alpha, pieces,
                                      l > 0, stream=stream)
        if l1 != 0.0 or l2 != 0.0:
            size = fan_in * width
            w_off = layer_int[l, L_W]
            penalty_grad(_vec(grads, w_off, size), _vec(params, w_off, size), l1, l2,
                         stream=stream)


def network_loss_and_grad(X, labels, targets, loss_code, params, grads, buffers, layer_int,
                          layer_float, ws_off, ws, training, update_stats, seed, step, l1, l2,
                          out=None, accumulate=False, partials=None, stream=0):
    """Forward, loss, backward and penalties; fills the device array ``grads`` (P,) with the
    gradient of mean loss + penalty and returns that value (host float when ``out`` is None,
    else out[0] = (or +=) it)."""
    loss = network_loss(X, labels, targets, loss_code, params, buffers, layer_int, layer_float,
                        ws_off, ws, training, update_stats, seed, step, l1, l2, out=out,
                        accumulate=accumulate, partials=partials, stream=stream)
    network_backward(X, params, grads, layer_int, layer_float, ws_off, ws, training, l1, l2,
                     stream=stream)
    return loss
