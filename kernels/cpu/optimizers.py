"""Fused elementwise optimizer updates, one kernel per torch.optim rule, writing in place.

Every kernel walks one parameter array once and updates it together with its state arrays, so a
step costs a single pass over memory and allocates nothing. Conventions shared by all kernels:

- Arrays are 1-D and C-contiguous, all of one float dtype (float32 or float64) and of one length n;
  callers pass ``reshape(-1)`` views of their (possibly multi-dimensional) arrays.
- Argument order: ``param`` (updated), ``grad`` (read only), the state arrays (updated), then the
  scalars. A state array that the chosen variant does not use may be an empty array of the same
  dtype (for example ``momentum_buffer`` when ``momentum == 0``).
- Scalars have the arrays' dtype. The caller computes every coefficient in float64 (``1 - beta``,
  bias corrections, the decayed learning rate, ...) and casts it, so the arithmetic inside the loop
  stays in the arrays' dtype, as in torch.
- Divisions follow NumPy's error model (IEEE results, no ZeroDivisionError branch) so the loops
  vectorize; a zero denominator (possible only with eps == 0) gives inf or NaN, as in torch.
- The loops over elements are compiled once per value of the variant's flags (plain
  ``numba.njit``, which specializes on constant arguments): a flag read inside the loop would stop
  it vectorizing.
- Each kernel applies the element rule of :mod:`fastmlp.kernels.rules` (shared with the CUDA
  kernels), which follows torch.optim's update rule (``maximize=False``) and states the formula
  and exactly where ``eps`` enters.

Kernels: ``sgd_update``, ``adagrad_update``, ``rmsprop_update``, ``adam_update`` (Adam and AdamW),
``rprop_update``; ``optimizer_update_part`` runs one of them on a block of a whole model's
parameters, ``optimizer_check_part`` computes a block's update on copies and reports whether every
new value is finite (the check of an update that ``rules.update_bound`` cannot clear).
"""

import math

import numba
import numpy as np

from ..config import COL_ALIGN, JIT, JIT_INTERNAL, JIT_INTERNAL_ALLOCATING
from ..contract import ADAGRAD, ADAM, P_BAD, P_MAX, RMSPROP, SGD
from ..jit import njit
from ..rules import (
    adagrad_element,
    adam_element,
    rmsprop_element,
    rprop_element,
    sgd_element,
)
from .bf16 import round_to_bf16_range
from .blocks import part


@njit(**JIT)
def _check_length(n, state_size, needed):
    """Raise when a state array that the variant reads does not have the parameter's length n."""
    if needed and state_size != n:
        raise ValueError("optimizer kernel: state array length differs from the parameter length")


@njit(**JIT)
def sgd_update(param, grad, momentum_buffer, lr, momentum, one_minus_dampening, weight_decay,
               nesterov, init_buffer):
    """SGD with momentum, dampening, Nesterov momentum and L2 weight decay (torch.optim.SGD):
    :func:`fastmlp.kernels.rules.sgd_element` on every element.

    Shapes: param, grad (n,); momentum_buffer (n,), or empty when momentum == 0.
    Scalars: lr, momentum, one_minus_dampening = 1 - dampening, weight_decay (the arrays' dtype);
    nesterov, init_buffer (bool: the first step creates the buffer). No eps.
    """
    n = param.size
    _check_length(n, grad.size, True)
    _check_length(n, momentum_buffer.size, momentum != 0.0)
    # each flag is a constant in its loop (read inside, it would stop the loop vectorizing)
    if nesterov and init_buffer:
        _sgd_loop(param, grad, momentum_buffer, lr, momentum, one_minus_dampening, weight_decay,
                  True, True)
    elif nesterov:
        _sgd_loop(param, grad, momentum_buffer, lr, momentum, one_minus_dampening, weight_decay,
                  True, False)
    elif init_buffer:
        _sgd_loop(param, grad, momentum_buffer, lr, momentum, one_minus_dampening, weight_decay,
                  False, True)
    else:
        _sgd_loop(param, grad, momentum_buffer, lr, momentum, one_minus_dampening, weight_decay,
                  False, False)


@numba.njit(**JIT_INTERNAL)
def _sgd_loop(param, grad, momentum_buffer, lr, momentum, one_minus_dampening, weight_decay,
              nesterov, init_buffer):
    for i in range(param.size):
        sgd_element(param, grad, momentum_buffer, i, lr, momentum, one_minus_dampening,
                    weight_decay, nesterov, init_buffer)


@njit(**JIT)
def adagrad_update(param, grad, state_sum, clr, weight_decay, eps):
    """Adagrad (torch.optim.Adagrad): :func:`fastmlp.kernels.rules.adagrad_element` on every
    element (eps added after the square root).

    Shapes: param, grad, state_sum (n,). Scalars: clr = lr / (1 + (t - 1) * lr_decay) for the
    parameter's step count t (counted from 1), weight_decay, eps.
    """
    n = param.size
    _check_length(n, grad.size, True)
    _check_length(n, state_sum.size, True)
    for i in range(n):
        adagrad_element(param, grad, state_sum, i, clr, weight_decay, eps)


@njit(**JIT)
def rmsprop_update(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, one_minus_alpha,
                   eps, weight_decay, momentum, centered):
    """RMSprop, optionally centered and with momentum (torch.optim.RMSprop):
    :func:`fastmlp.kernels.rules.rmsprop_element` on every element (eps after the square root).

    Shapes: param, grad, square_avg (n,); grad_avg (n,) or empty unless centered; momentum_buffer
    (n,) or empty unless momentum > 0. Scalars: lr, alpha, one_minus_alpha = 1 - alpha, eps,
    weight_decay, momentum; centered (bool). Like torch, v - a * a is not clamped at zero.
    """
    n = param.size
    _check_length(n, grad.size, True)
    _check_length(n, square_avg.size, True)
    _check_length(n, grad_avg.size, centered)
    _check_length(n, momentum_buffer.size, momentum > 0.0)
    if centered:  # a constant in each loop, so that it vectorizes
        _rmsprop_loop(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha,
                      one_minus_alpha, eps, weight_decay, momentum, True)
    else:
        _rmsprop_loop(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha,
                      one_minus_alpha, eps, weight_decay, momentum, False)


@numba.njit(**JIT_INTERNAL)
def _rmsprop_loop(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, one_minus_alpha,
                  eps, weight_decay, momentum, centered):
    for i in range(param.size):
        rmsprop_element(param, grad, square_avg, grad_avg, momentum_buffer, i, lr, alpha,
                        one_minus_alpha, eps, weight_decay, momentum, centered)


@njit(**JIT)
def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, c, amsgrad):
    """Adam and AdamW, optionally AMSGrad (torch.optim.Adam, torch.optim.AdamW):
    :func:`fastmlp.kernels.rules.adam_element` on every element; eps is added after the
    bias-corrected square root, which equals torch's ``param - lr * m_hat / (sqrt(v_hat) + eps)``.

    Shapes: param, grad, exp_avg, exp_avg_sq (n,); max_exp_avg_sq (n,) or empty unless amsgrad;
    c (≥ 9,): beta1, 1 - beta1, beta2, 1 - beta2, step_size = lr / (1 - beta1**t),
    bias_correction2_sqrt = sqrt(1 - beta2**t), eps, weight_decay, param_decay (AdamW: 1 - lr *
    weight_decay, else 1) in the arrays' dtype (the step's coefficient row); amsgrad (bool).
    """
    n = param.size
    _check_length(n, grad.size, True)
    _check_length(n, exp_avg.size, True)
    _check_length(n, exp_avg_sq.size, True)
    _check_length(n, max_exp_avg_sq.size, amsgrad)
    scalars = (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8])  # values, not loads
    if amsgrad:  # a constant in each loop, so that it vectorizes
        _adam_loop(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, scalars, True)
    else:
        _adam_loop(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, scalars, False)


@numba.njit(**JIT_INTERNAL)
def _adam_loop(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, scalars, amsgrad):
    for i in range(param.size):
        adam_element(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, scalars, amsgrad)


@njit(**JIT)
def rprop_update(param, grad, prev, step_size, eta_minus, eta_plus, step_size_min, step_size_max):
    """Rprop (torch.optim.Rprop's implementation): :func:`fastmlp.kernels.rules.rprop_element` on
    every element. Shapes: param, grad, prev, step_size (n,); step_size starts at lr, prev at 0.
    Scalars: eta_minus, eta_plus, step_size_min, step_size_max. No eps.
    """
    n = param.size
    _check_length(n, grad.size, True)
    _check_length(n, prev.size, True)
    _check_length(n, step_size.size, True)
    for i in range(n):
        rprop_element(param, grad, prev, step_size, i, eta_minus, eta_plus, step_size_min,
                      step_size_max)


@njit(**JIT)
def optimizer_update(code, param, grad, s0, s1, s2, c, flag, init_buffer):
    """One update by the kernel ``code`` (SGD, ADAGRAD, RMSPROP, ADAM, RPROP) of (n,) arrays.

    s0, s1, s2: the variant's state arrays in the order of the kernel's arguments (empty when
    unused); c (N_COEFFICIENTS,): the kernel's scalar arguments in order, in the arrays' dtype;
    flag: nesterov (SGD), centered (RMSprop) or amsgrad (Adam); init_buffer: SGD's first step.
    """
    if code == SGD:
        sgd_update(param, grad, s0, c[0], c[1], c[2], c[3], flag, init_buffer)
    elif code == ADAGRAD:
        adagrad_update(param, grad, s0, c[0], c[1], c[2])
    elif code == RMSPROP:
        rmsprop_update(param, grad, s0, s1, s2, c[0], c[1], c[2], c[3], c[4], c[5], flag)
    elif code == ADAM:
        adam_update(param, grad, s0, s1, s2, c, flag)
    else:
        rprop_update(param, grad, s0, s1, c[0], c[1], c[2], c[3])


ROUND_CHUNK = 4096  # elements updated, then rounded to bfloat16, at a time (16 KB of float32)


@njit(**JIT_INTERNAL)
def optimizer_update_part(index, parts, params, grads, scale, code, s0, s1, s2, c, flag,
                          init_buffer, half):
    """Part ``index`` of ``parts`` of one update of (P,) arrays: the block's gradient scaled by
    ``scale`` (gradient clipping; 1 leaves it), then :func:`optimizer_update` on the block (state
    arrays that the variant does not use are empty and stay so). For a mixed model ``half`` (P,)
    uint16 receives the bfloat16 rounding of the new parameters, ROUND_CHUNK elements at a time
    right after their update, while they are still in cache; otherwise it is empty."""
    lo, hi = part(params.shape[0], parts, index, COL_ALIGN)
    if hi <= lo:
        return
    g = grads[lo:hi]
    if scale != 1.0:
        for i in range(hi - lo):
            g[i] *= scale
    mixed = half.shape[0] != 0
    chunk = ROUND_CHUNK if mixed else hi - lo  # float32: the whole block in one call
    for a in range(lo, hi, chunk):
        b = min(hi, a + chunk)
        optimizer_update(code, params[a:b], grads[a:b], s0[a:b], s1[a:b], s2[a:b], c, flag,
                         init_buffer)
        if mixed:
            round_to_bf16_range(half, params, a, b)


CHECK_CHUNK = 256  # elements of a block copied at a time by optimizer_check_part


@njit(**JIT_INTERNAL_ALLOCATING)
def optimizer_check_part(index, parts, params, grads, scale, code, s0, s1, s2, c, flag,
                         init_buffer, partials):
    """Part ``index`` of ``parts`` of the check of one update of (P,) arrays: the update of
    :func:`optimizer_update_part` computed by :func:`optimizer_update` on copies of the block,
    CHECK_CHUNK elements at a time, nothing written to the arrays.

    Writes partials[index, P_BAD] = 1 + 4·i + a for the first element i whose new value in array a
    (0 param, 1-3 s0-s2) is NaN or inf (0 when there is none) and partials[index, P_MAX + a] the
    largest |new value| of array a in the block (float64)."""
    lo, hi = part(params.shape[0], parts, index, COL_ALIGN)
    for a in range(5):
        partials[index, P_BAD + a] = 0.0
    copy = np.empty((5, CHECK_CHUNK), dtype=params.dtype)
    p, g, a0, a1, a2 = copy[0], copy[1], copy[2], copy[3], copy[4]
    used = (True, s0.shape[0] > 0, s1.shape[0] > 0, s2.shape[0] > 0)
    for start in range(lo, hi, CHECK_CHUNK):
        m = min(CHECK_CHUNK, hi - start)
        for i in range(m):
            p[i] = params[start + i]
            g[i] = grads[start + i] * scale if scale != 1.0 else grads[start + i]
            if used[1]:
                a0[i] = s0[start + i]
            if used[2]:
                a1[i] = s1[start + i]
            if used[3]:
                a2[i] = s2[start + i]
        optimizer_update(code, p[:m], g[:m], a0[:m] if used[1] else a0[:0],
                         a1[:m] if used[2] else a1[:0], a2[:m] if used[3] else a2[:0], c, flag,
                         init_buffer)
        for i in range(m):
            new = (p[i], a0[i], a1[i], a2[i])
            for a in range(4):
                if not used[a]:
                    continue
                value = np.float64(new[a])
                if not math.isfinite(value):
                    if partials[index, P_BAD] == 0.0:
                        partials[index, P_BAD] = 1.0 + 4.0 * (start + i) + a
                elif abs(value) > partials[index, P_MAX + a]:
                    partials[index, P_MAX + a] = abs(value)
