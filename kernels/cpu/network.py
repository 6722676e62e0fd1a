"""Whole-network kernels: one compiled call runs the forward pass, the loss and the backward pass of
every layer, so a training step costs a single call from Python.

The network lives in flat arrays described by small integer/float tables (built by
``fastmlp.engines.layout``), which keeps the kernel independent of Python objects:

- ``params`` / ``grads`` (P,): every parameter, at the offsets of ``layer_int`` (columns ``L_*``);
- ``buffers`` (R,): the batchnorm running statistics;
- ``layer_int`` (L, 12) int64 and ``layer_float`` (L, 4) float64: sizes, codes, options, offsets;
- ``ws`` (S,): the workspace for one batch size B, at the offsets of ``ws_off`` (L, N_WS) int64,
  whose last columns are the plan: how the threads share each layer's products (``W_SPLIT_*``).

Per layer l with input h (B, I): pre = h·W + b → [batchnorm] → act = f(pre) → [dropout] → output.
Dropout masks use the stream (seed, l, step) of :mod:`.random`.

Mixed precision (``mixed_bfloat16``: the workspace's ``Half`` record is not empty). Every matrix
product takes bfloat16 operands and sums in float32 (:func:`.bf16.gemm_bf16`): h·W from
bf16(h) and bf16(W), dW = bf16(h)ᵀ·bf16(dpre), dh = bf16(dpre)·bf16(W)ᵀ. The part that writes a
block of a layer output or of a dpre also writes its bfloat16 rounding into ``half.ws`` at the same
offset, so the products read operands rounded once; bf16(W) is ``half.params``, kept current by
the tasks (:mod:`.phases`). Everything else — bias, batchnorm, activations, dropout, the loss,
the gradients and the update — stays in float32.

Parts. Each phase of a step is cut into T parts (run by a team of threads, see :mod:`.phases`);
part t computes its block of the phase's outputs, calling the BLAS on that block:

- forward of layer l: a block of units (all rows) or of rows (all units) of pre = h·W + b, then
  the bias, batchnorm (columns are independent), activation and dropout of that block;
- loss: a block of rows (their loss terms, output gradient and the last layer's local backward),
  in training after the last layer's forward on the same rows unless that layer has batchnorm;
- backward of layer l: a block of dW = hᵀ·dpre (rows or columns), a block of columns of db (and
  the gradient norm of both), and a block of dh = dpre·Wᵀ followed by layer l-1's dropout,
  activation and batchnorm backward on that block, which gives the next region its dpre.

No two parts write the same element and every result is independent of the split, up to the
order in which the BLAS and the float64 sums add terms. Per-part sums (loss, accuracy counts,
squared gradient norm, penalty) go to row t of ``partials`` (T, N_PARTIALS).
"""

import math

from ..config import COL_ALIGN, JIT, JIT_INTERNAL, ROW_ALIGN
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
    LINEAR,
    MAXOUT,
    P_CORRECT,
    P_COUNTED,
    P_GRAD_SQ,
    P_LOSS,
    P_PENALTY,
    W_ACT,
    W_DOUT,
    W_DPRE,
    W_INVSTD,
    W_MASK,
    W_MEAN,
    W_OUT,
    W_PRE,
    W_SPLIT_DW,
    W_SPLIT_DX,
    W_SPLIT_FWD,
    W_XHAT,
)
from ..jit import njit
from ..rules import stream_key
from .activations import (
    activation_backward_block,
    bias_activation_block,
    maxout_backward_block,
    maxout_forward_block,
)
from .batchnorm import (
    batchnorm_backward_cols,
    batchnorm_forward_eval_block,
    batchnorm_forward_train_cols,
)
from .bf16 import gemm_bf16, round_to_bf16_block
from .blocks import part, split_block
from .dense import (
    bias_grad_cols,
    forward_product_block,
    input_grad_block,
    weight_grad_block,
)
from .dropout import dropout_backward_block, dropout_forward_block
from .losses import loss_rows
from .metrics import count_correct_rows
from .norms import sum_squares, sum_squares_block
from .penalties import penalty_block, penalty_value


@njit(inline="always", **JIT)
def _mat(flat, offset, rows, cols):
    return flat[offset:offset + rows * cols].reshape((rows, cols))


@njit(inline="always", **JIT)
def _vec(flat, offset, size):
    return flat[offset:offset + size]


@njit(inline="always", **JIT)
def layer_output(X, ws, ws_off, layer_int, l, n, training):
    """The (n, U) output of layer l (the input X for l = -1) left by the latest forward pass."""
    if l < 0:
        return X
    column = W_OUT if training and layer_int[l, L_DROPOUT] else W_ACT
    return _mat(ws, ws_off[l, column], n, layer_int[l, L_UNITS])


@njit(inline="always", **JIT)
def is_mixed(half):
    """Whether the products take bfloat16 operands (a ``mixed_bfloat16`` model)."""
    return half.params.shape[0] != 0


@njit(inline="always", **JIT)
def half_output(half, ws_off, layer_int, l, n, training):
    """The bfloat16 bits (n, U) of :func:`layer_output` (the batch's input rows for l = -1)."""
    if l < 0:
        return half.x[:n]
    column = W_OUT if training and layer_int[l, L_DROPOUT] else W_ACT
    return _mat(half.ws, ws_off[l, column], n, layer_int[l, L_UNITS])


@njit(**JIT_INTERNAL)
def product_bf16(C, A, B, trans_a, trans_b):
    """C = op(A)·op(B) from bfloat16 bits (:func:`.bf16.gemm_bf16`); C becomes NaN where the
    product cannot run, so a failure can never pass for a result."""
    if gemm_bf16(C, A, B, trans_a, trans_b, False) != 0:
        for i in range(C.shape[0]):
            for j in range(C.shape[1]):
                C[i, j] = math.nan


@njit(inline="always", **JIT)
def network_output(ws, ws_off, layer_int, n, training):
    """The (n, C) output of the last layer left in ws by the latest forward pass."""
    return layer_output(ws[:0].reshape((0, 0)), ws, ws_off, layer_int, layer_int.shape[0] - 1, n,
                        training)


# ------------------------------------------------------------------------------ forward

@njit(**JIT_INTERNAL)
def forward_layer_block(l, h, net, ws_off, ws, half, training, update_stats, seed, step, r0, r1,
                        u0, u1):
    """Forward of layer l of ``net`` (a Network record) on rows r0:r1 and units u0:u1 (columns
    u0·k:u1·k of pre): product, bias, [batchnorm], activation, [dropout], and for a mixed model
    the bfloat16 rounding of the output block. Batchnorm in training mode needs every row
    (r0 = 0, r1 = B)."""
    params, buffers, layer_int, layer_float = net.params, net.buffers, net.layer_int, net.layer_float
    n = h.shape[0]
    fan_in = layer_int[l, L_IN]
    units = layer_int[l, L_UNITS]
    code = layer_int[l, L_ACT]
    pieces = layer_int[l, L_PIECES]
    width = units * pieces
    c0, c1 = u0 * pieces, u1 * pieces
    alpha = layer_float[l, F_ALPHA]
    W = _mat(params, layer_int[l, L_W], fan_in, width)
    b = _vec(params, layer_int[l, L_B], width)
    pre = _mat(ws, ws_off[l, W_PRE], n, width)
    act = _mat(ws, ws_off[l, W_ACT], n, units)
    if is_mixed(half):
        product_bf16(pre[r0:r1, c0:c1],
                     half_output(half, ws_off, layer_int, l - 1, n, training)[r0:r1],
                     _mat(half.params, layer_int[l, L_W], fan_in, width)[:, c0:c1], False, False)
    else:
        forward_product_block(pre, h, W, r0, r1, c0, c1)
    if layer_int[l, L_BN]:
        bias_activation_block(pre, pre, b, LINEAR, 0.0, r0, r1, c0, c1)
        gamma = _vec(params, layer_int[l, L_GAMMA], width)
        beta = _vec(params, layer_int[l, L_BETA], width)
        rmean = _vec(buffers, layer_int[l, L_RMEAN], width)
        rvar = _vec(buffers, layer_int[l, L_RVAR], width)
        xhat = _mat(ws, ws_off[l, W_XHAT], n, width)
        mean = _vec(ws, ws_off[l, W_MEAN], width)
        invstd = _vec(ws, ws_off[l, W_INVSTD], width)
        if training:
            batchnorm_forward_train_cols(pre, xhat, mean, invstd, pre, gamma, beta, rmean, rvar,
                                         layer_float[l, F_BN_MOMENTUM], layer_float[l, F_BN_EPS],
                                         update_stats, c0, c1)
        else:
            batchnorm_forward_eval_block(pre, xhat, invstd, pre, gamma, beta, rmean, rvar,
                                         layer_float[l, F_BN_EPS], r0, r1, c0, c1)
        if code == MAXOUT:
            maxout_forward_block(act, pre, pieces, r0, r1, u0, u1)
        else:
            bias_activation_block(act, pre, b[:0], code, alpha, r0, r1, c0, c1)
    elif code == MAXOUT:
        bias_activation_block(pre, pre, b, LINEAR, 0.0, r0, r1, c0, c1)
        maxout_forward_block(act, pre, pieces, r0, r1, u0, u1)
    else:
        bias_activation_block(act, pre, b, code, alpha, r0, r1, c0, c1)
    if training and layer_int[l, L_DROPOUT]:
        out = _mat(ws, ws_off[l, W_OUT], n, units)
        mask = _mat(ws, ws_off[l, W_MASK], n, units)
        dropout_forward_block(out, mask, act, layer_float[l, F_DROP_P], stream_key(seed, l, step),
                              r0, r1, u0, u1)
    if is_mixed(half) and l < layer_int.shape[0] - 1:
        round_to_bf16_block(half_output(half, ws_off, layer_int, l, n, training),
                            layer_output(h, ws, ws_off, layer_int, l, n, training), r0, r1, u0, u1)


@njit(inline="always", **JIT)
def forward_layer_part(t, parts, l, h, net, ws_off, ws, half, training, update_stats, seed, step):
    """Thread t's block of the forward of layer l, as the plan column W_SPLIT_FWD says."""
    r0, r1, u0, u1 = split_block(ws_off[l, W_SPLIT_FWD], h.shape[0], net.layer_int[l, L_UNITS],
                                 parts, t)
    if r1 > r0 and u1 > u0:
        forward_layer_block(l, h, net, ws_off, ws, half, training, update_stats, seed, step, r0,
                            r1, u0, u1)


@njit(inline="always", **JIT)
def forward_layer_rows_part(t, parts, l, h, net, ws_off, ws, half, training, seed, step):
    """Thread t's rows (the rows of its part of the loss, :func:`loss_part`) of the forward of
    layer l without batchnorm, every unit; the loss phase runs it for the last layer."""
    r0, r1 = part(h.shape[0], parts, t, ROW_ALIGN)
    if r1 > r0:
        forward_layer_block(l, h, net, ws_off, ws, half, training, False, seed, step, r0, r1, 0,
                            net.layer_int[l, L_UNITS])


@njit(inline="always", **JIT)
def forward_rows_part(t, parts, X, net, ws_off, ws, half):
    """Thread t's block of rows through every layer in evaluation mode (rows are independent)."""
    layer_int = net.layer_int
    n = X.shape[0]
    r0, r1 = part(n, parts, t, ROW_ALIGN)
    if r1 <= r0:
        return
    h = X
    for l in range(layer_int.shape[0]):
        forward_layer_block(l, h, net, ws_off, ws, half, False, False, 0, 0, r0, r1, 0,
                            layer_int[l, L_UNITS])
        h = layer_output(X, ws, ws_off, layer_int, l, n, False)


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


# ------------------------------------------------------------------------------ backward

@njit(**JIT_INTERNAL)
def local_backward_block(l, net, grads, ws_off, ws, half, n, training, r0, r1, u0, u1):
    """dpre of layer l from its output gradient (W_DOUT) on rows r0:r1, units u0:u1: dropout,
    activation and batchnorm backward (batchnorm needs every row; it also writes dγ, dβ), and for
    a mixed model the bfloat16 rounding of the dpre block."""
    params, layer_int, layer_float = net.params, net.layer_int, net.layer_float
    units = layer_int[l, L_UNITS]
    code = layer_int[l, L_ACT]
    pieces = layer_int[l, L_PIECES]
    width = units * pieces
    c0, c1 = u0 * pieces, u1 * pieces
    alpha = layer_float[l, F_ALPHA]
    pre = _mat(ws, ws_off[l, W_PRE], n, width)
    act = _mat(ws, ws_off[l, W_ACT], n, units)
    dpre = _mat(ws, ws_off[l, W_DPRE], n, width)
    dout = _mat(ws, ws_off[l, W_DOUT], n, units)
    if training and layer_int[l, L_DROPOUT]:
        dropout_backward_block(dout, dout, _mat(ws, ws_off[l, W_MASK], n, units), r0, r1, u0, u1)
    if code == MAXOUT:
        maxout_backward_block(dpre, dout, pre, pieces, r0, r1, u0, u1)
    else:
        activation_backward_block(dpre, dout, pre, act, code, alpha, r0, r1, c0, c1)
    if layer_int[l, L_BN]:
        batchnorm_backward_cols(dpre, _vec(grads, layer_int[l, L_GAMMA], width),
                                _vec(grads, layer_int[l, L_BETA], width), dpre,
                                _mat(ws, ws_off[l, W_XHAT], n, width),
                                _vec(params, layer_int[l, L_GAMMA], width),
                                _vec(ws, ws_off[l, W_INVSTD], width), training, c0, c1)
    if is_mixed(half):
        round_to_bf16_block(_mat(half.ws, ws_off[l, W_DPRE], n, width), dpre, r0, r1, c0, c1)


@njit(inline="always", **JIT)
def backward_layer_part(t, parts, l, X, net, grads, ws_off, ws, half, training, l1, l2,
                        partials):
    """Thread t's share of layer l's backward, from a complete dpre of layer l: its block of dW
    (+ penalty gradient), its columns of db, and (l > 0) its block of dh = dpre·Wᵀ followed by the
    local backward of layer l-1 there. Adds the squared norm of the gradient entries it wrote
    (and their penalty value) to partials[t]."""
    params, layer_int = net.params, net.layer_int
    n = X.shape[0]
    fan_in = layer_int[l, L_IN]
    width = layer_int[l, L_UNITS] * layer_int[l, L_PIECES]
    W = _mat(params, layer_int[l, L_W], fan_in, width)
    dW = _mat(grads, layer_int[l, L_W], fan_in, width)
    db = _vec(grads, layer_int[l, L_B], width)
    dpre = _mat(ws, ws_off[l, W_DPRE], n, width)
    h = layer_output(X, ws, ws_off, layer_int, l - 1, n, training)
    i0, i1, c0, c1 = split_block(ws_off[l, W_SPLIT_DW], fan_in, width, parts, t)
    mixed = is_mixed(half)
    if mixed:
        hb = half_output(half, ws_off, layer_int, l - 1, n, training)
        dpreb = _mat(half.ws, ws_off[l, W_DPRE], n, width)
        Wb = _mat(half.params, layer_int[l, L_W], fan_in, width)
    if i1 > i0 and c1 > c0:
        if mixed:
            product_bf16(dW[i0:i1, c0:c1], hb[:, i0:i1], dpreb[:, c0:c1], True, False)
        else:
            weight_grad_block(dW, h, dpre, i0, i1, c0, c1)
        if l1 != 0.0 or l2 != 0.0:
            partials[t, P_PENALTY] += penalty_block(dW, W, l1, l2, i0, i1, c0, c1)
        partials[t, P_GRAD_SQ] += sum_squares_block(dW, i0, i1, c0, c1)
    b0, b1 = part(width, parts, t, COL_ALIGN)
    if b1 > b0:
        bias_grad_cols(db, dpre, b0, b1)
        partials[t, P_GRAD_SQ] += sum_squares(db[b0:b1])
        if layer_int[l, L_BN]:
            partials[t, P_GRAD_SQ] += sum_squares(grads[layer_int[l, L_GAMMA] + b0:
                                                        layer_int[l, L_GAMMA] + b1])
            partials[t, P_GRAD_SQ] += sum_squares(grads[layer_int[l, L_BETA] + b0:
                                                        layer_int[l, L_BETA] + b1])
    if l == 0:
        return
    dh = _mat(ws, ws_off[l - 1, W_DOUT], n, fan_in)
    r0, r1, u0, u1 = split_block(ws_off[l, W_SPLIT_DX], n, fan_in, parts, t)
    if r1 > r0 and u1 > u0:
        if mixed:
            product_bf16(dh[r0:r1, u0:u1], dpreb[r0:r1], Wb[u0:u1], False, True)
        else:
            input_grad_block(dh, dpre, W, r0, r1, u0, u1)
        local_backward_block(l - 1, net, grads, ws_off, ws, half, n, training, r0, r1, u0, u1)


@njit(inline="always", **JIT)
def loss_part(t, parts, labels, targets, loss_code, net, grads, ws_off, ws, half, n, training,
              count, partials):
    """Thread t's rows of the loss: their loss terms, output gradient (W_DOUT of the last layer),
    accuracy counts (when ``count``) and, unless the last layer has batchnorm, its local backward
    on those rows."""
    layer_int = net.layer_int
    last = layer_int.shape[0] - 1
    units = layer_int[last, L_UNITS]
    z = network_output(ws, ws_off, layer_int, n, training)
    dz = _mat(ws, ws_off[last, W_DOUT], n, units)
    r0, r1 = part(n, parts, t, ROW_ALIGN)
    if r1 <= r0:
        return
    partials[t, P_LOSS] += loss_rows(dz, z, labels, targets, loss_code, r0, r1, n)
    if count:
        correct, counted = count_correct_rows(z, labels, targets, loss_code, r0, r1)
        partials[t, P_CORRECT] += correct
        partials[t, P_COUNTED] += counted
    if not layer_int[last, L_BN]:
        local_backward_block(last, net, grads, ws_off, ws, half, n, training, r0, r1, 0, units)


@njit(inline="always", **JIT)
def last_batchnorm_part(t, parts, net, grads, ws_off, ws, half, n, training):
    """Thread t's units of the local backward of a last layer with batchnorm (every row)."""
    last = net.layer_int.shape[0] - 1
    u0, u1 = part(net.layer_int[last, L_UNITS], parts, t, COL_ALIGN)
    if u1 > u0:
        local_backward_block(last, net, grads, ws_off, ws, half, n, training, 0, n, u0, u1)
