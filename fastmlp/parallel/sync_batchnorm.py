"""One rank's gradient with batch statistics synchronized over MPI ranks (``batchnorm="sync"``).

The global batch of B rows is split over the ranks; rank r holds m_r rows. Layer by layer, with
the same CPU kernels as the whole-network step for everything but batch normalization:

- forward: μ = Σ_ranks Σ_rows x / B and σ² = Σ_ranks Σ_rows (x - μ)² / B (two Allreduces of F
  values), x̂ = (x - μ)/sqrt(σ² + eps), y = γ x̂ + β; the running statistics use μ and σ² B/(B-1),
  identically on every rank;
- the output gradient is (1/B) ∂ℓ/∂z for each local row (not 1/m_r), so every gradient this rank
  computes is its rows' share of the global batch's gradient and the shares simply add up;
- backward: dx = γ/sqrt(σ²+eps) (dy - (Σdy + x̂ Σ dy x̂)/B) with both sums over the global batch (one
  Allreduce of 2F values); dγ and dβ are left as this rank's sums, added by the caller's Allreduce.

The penalty gradient is added on rank 0 only, for the same reason. The result equals a 1-rank step
over the whole batch up to summation order.
"""

import numpy as np

from ..kernels.contract import (
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
from ..kernels.cpu.activations import activation_forward, maxout_forward
from ..kernels.cpu.dense import (
    activation_grad_into,
    dense_activation_backward,
    dense_activation_forward,
    dense_backward,
    dense_forward,
)
from ..kernels.cpu.dropout import dropout_backward, dropout_forward
from ..kernels.cpu.losses import loss_forward_backward
from ..kernels.cpu.metrics import count_correct
from ..kernels.cpu.penalties import penalty_grad
from ..kernels.cpu.random import stream_key


def _mat(flat, offset, rows, cols):
    return flat[offset:offset + rows * cols].reshape(rows, cols)


def _vec(flat, offset, size):
    return flat[offset:offset + size]


def sync_batchnorm_gradient(comm, xb, labels, targets, loss_code, params, grads, buffers,
                            layer_int, layer_float, ws_off, ws, seed, step, l1, l2, global_rows):
    """This rank's share of the global batch's gradient (into ``grads``), for the local rows
    ``xb`` (m, d) with ``labels``/``targets``; returns (Σ_local-rows loss, correct, counted).
    ``comm`` is a :class:`fastmlp.parallel.mpi.Communicator`; every rank calls this together."""
    m = xb.shape[0]
    B = float(global_rows)
    h = xb
    for l in range(layer_int.shape[0]):
        fan_in, units, code, pieces = (int(v) for v in layer_int[l, [L_IN, L_UNITS, L_ACT,
                                                                      L_PIECES]])
        width, alpha = units * pieces, float(layer_float[l, F_ALPHA])
        W = _mat(params, layer_int[l, L_W], fan_in, width)
        b = _vec(params, layer_int[l, L_B], width)
        pre = _mat(ws, ws_off[l, W_PRE], m, width)
        act = _mat(ws, ws_off[l, W_ACT], m, units)
        if layer_int[l, L_BN]:
            dense_forward(pre, h, W, b)
            mean = comm.allreduce_sum(pre.sum(axis=0, dtype=np.float64), "the batch mean") / B
            var = comm.allreduce_sum(((pre - mean) ** 2).sum(axis=0, dtype=np.float64),
                                     "the batch variance") / B
            momentum = layer_float[l, F_BN_MOMENTUM]
            rmean = _vec(buffers, layer_int[l, L_RMEAN], width)
            rvar = _vec(buffers, layer_int[l, L_RVAR], width)
            rmean[...] = (1.0 - momentum) * rmean + momentum * mean
            rvar[...] = (1.0 - momentum) * rvar + momentum * var * B / (B - 1.0)
            invstd = 1.0 / np.sqrt(var + layer_float[l, F_BN_EPS])
            _vec(ws, ws_off[l, W_MEAN], width)[...] = mean
            _vec(ws, ws_off[l, W_INVSTD], width)[...] = invstd
            xhat = _mat(ws, ws_off[l, W_XHAT], m, width)
            xhat[...] = (pre - mean) * invstd
            pre[...] = _vec(params, layer_int[l, L_GAMMA], width) * xhat + \
                _vec(params, layer_int[l, L_BETA], width)
            if code == MAXOUT:
                maxout_forward(act, pre, pieces)
            else:
                activation_forward(act, pre, code, alpha)
        else:
            dense_activation_forward(act, pre, h, W, b, code, alpha, pieces)
        h = act
        if layer_int[l, L_DROPOUT]:
            out = _mat(ws, ws_off[l, W_OUT], m, units)
            dropout_forward(out, _mat(ws, ws_off[l, W_MASK], m, units), act,
                            layer_float[l, F_DROP_P], np.uint64(stream_key(seed, l, step)))
            h = out
    last = layer_int.shape[0] - 1
    dz = _mat(ws, ws_off[last, W_DOUT], m, h.shape[1])
    local_mean = loss_forward_backward(dz, h, labels, targets, loss_code)
    correct, counted = count_correct(h, labels, targets, loss_code)
    dz *= m / B

    for l in range(last, -1, -1):
        fan_in, units, code, pieces = (int(v) for v in layer_int[l, [L_IN, L_UNITS, L_ACT,
                                                                      L_PIECES]])
        width, alpha = units * pieces, float(layer_float[l, F_ALPHA])
        W = _mat(params, layer_int[l, L_W], fan_in, width)
        dW = _mat(grads, layer_int[l, L_W], fan_in, width)
        db = _vec(grads, layer_int[l, L_B], width)
        pre = _mat(ws, ws_off[l, W_PRE], m, width)
        act = _mat(ws, ws_off[l, W_ACT], m, units)
        dpre = _mat(ws, ws_off[l, W_DPRE], m, width)
        dout = _mat(ws, ws_off[l, W_DOUT], m, units)
        if l == 0:
            h, dh = xb, dout  # no input gradient for the first layer
        else:
            prev = int(layer_int[l - 1, L_UNITS])
            column = W_OUT if layer_int[l - 1, L_DROPOUT] else W_ACT
            h = _mat(ws, ws_off[l - 1, column], m, prev)
            dh = _mat(ws, ws_off[l - 1, W_DOUT], m, prev)
        if layer_int[l, L_DROPOUT]:
            dropout_backward(dout, dout, _mat(ws, ws_off[l, W_MASK], m, units))
        if layer_int[l, L_BN]:
            activation_grad_into(dpre, dout, pre, act, code, alpha, pieces)
            xhat = _mat(ws, ws_off[l, W_XHAT], m, width)
            dgamma = _vec(grads, layer_int[l, L_GAMMA], width)
            dbeta = _vec(grads, layer_int[l, L_BETA], width)
            dbeta[...] = dpre.sum(axis=0)
            dgamma[...] = (dpre * xhat).sum(axis=0)
            sums = comm.allreduce_sum(np.concatenate([dbeta, dgamma]).astype(np.float64),
                                      "the batchnorm gradient sums")
            gamma = _vec(params, layer_int[l, L_GAMMA], width)
            invstd = _vec(ws, ws_off[l, W_INVSTD], width)
            dpre[...] = gamma * invstd * (dpre - (sums[:width] + xhat * sums[width:]) / B)
            dense_backward(dh, dW, db, dpre, h, W, l > 0)
        else:
            dense_activation_backward(dh, dW, db, dpre, dout, h, W, pre, act, code, alpha, pieces,
                                      l > 0)
        if comm.rank == 0 and (l1 != 0.0 or l2 != 0.0):
            size = fan_in * width
            penalty_grad(_vec(grads, layer_int[l, L_W], size),
                         _vec(params, layer_int[l, L_W], size), l1, l2)
    return local_mean * m, correct, counted
