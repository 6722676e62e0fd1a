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
- Divisions use ``_div`` (IEEE results, no ZeroDivisionError branch) so the loops vectorize; a
  zero denominator (possible only with eps == 0) gives inf or NaN, as in torch.
- Each kernel follows torch.optim's update rule (``maximize=False``); the docstrings state the
  formula per element and exactly where ``eps`` enters.

Kernels: ``sgd_update``, ``adagrad_update``, ``rmsprop_update``, ``adam_update`` (Adam and AdamW),
``rprop_update``.
"""

import math

import numpy as np
from ..jit import njit

from ..config import COL_ALIGN, JIT, JIT_INTERNAL
from .blocks import part


@njit(**JIT)
def _div(a, b):
    """a / b with IEEE semantics (x/0 gives inf or NaN, as in torch).

    Scalar ``/`` under Numba's default error model checks for zero and raises
    ZeroDivisionError; that branch also stops LLVM from vectorizing the loop (about 14x slower
    on float32). np.divide on scalars follows NumPy's error model and returns the operands' dtype.
    """
    return np.divide(a, b)


@njit(**JIT)
def _check_length(n, state_size, needed):
    """Raise when a state array that the variant reads does not have the parameter's length n."""
    if needed and state_size != n:
        raise ValueError("optimizer kernel: state array length differs from the parameter length")


@njit(**JIT)
def sgd_update(param, grad, momentum_buffer, lr, momentum, one_minus_dampening, weight_decay,
               nesterov, init_buffer):
    """SGD with momentum, dampening, Nesterov momentum and L2 weight decay (torch.optim.SGD).

    Per element, with mu = momentum::

        g = grad + weight_decay * param                  (only if weight_decay != 0)
        if mu != 0:
            b = g                                        (init_buffer: the first step)
            b = mu * b + (1 - dampening) * g             (every later step)
            g = g + mu * b   if nesterov   else   g = b
        param = param - lr * g

    Shapes: param, grad (n,); momentum_buffer (n,), or empty when momentum == 0.
    Scalars: lr, momentum, one_minus_dampening = 1 - dampening, weight_decay (the arrays' dtype);
    nesterov, init_buffer (bool). No eps.
    """
    n = param.size
    _check_length(n, grad.size, True)
    use_momentum = momentum != 0.0
    _check_length(n, momentum_buffer.size, use_momentum)
    for i in range(n):
        g = grad[i]
        if weight_decay != 0.0:
            g = g + weight_decay * param[i]
        if use_momentum:
            if init_buffer:
                b = g
            else:
                b = momentum * momentum_buffer[i] + one_minus_dampening * g
            momentum_buffer[i] = b
            if nesterov:
                g = g + momentum * b
            else:
                g = b
        param[i] = param[i] - lr * g


@njit(**JIT)
def adagrad_update(param, grad, state_sum, clr, weight_decay, eps):
    """Adagrad (torch.optim.Adagrad).

    Per element::

        g = grad + weight_decay * param                  (only if weight_decay != 0)
        sum = sum + g * g
        param = param - clr * g / (sqrt(sum) + eps)      eps added after the square root

    Shapes: param, grad, state_sum (n,). Scalars: clr = lr / (1 + (t - 1) * lr_decay) for the
    parameter's step count t (counted from 1), weight_decay, eps.
    """
    n = param.size
    _check_length(n, grad.size, True)
    _check_length(n, state_sum.size, True)
    for i in range(n):
        g = grad[i]
        if weight_decay != 0.0:
            g = g + weight_decay * param[i]
        s = state_sum[i] + g * g
        state_sum[i] = s
        param[i] = param[i] - _div(clr * g, math.sqrt(s) + eps)


@njit(**JIT)
def rmsprop_update(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, one_minus_alpha,
                   eps, weight_decay, momentum, centered):
    """RMSprop, optionally centered and with momentum (torch.optim.RMSprop).

    Per element::

        g = grad + weight_decay * param                  (only if weight_decay != 0)
        v = alpha * v + (1 - alpha) * g * g              (square_avg)
        if centered:
            a = alpha * a + (1 - alpha) * g              (grad_avg)
            avg = sqrt(v - a * a) + eps                  eps added after the square root
        else:
            avg = sqrt(v) + eps                          eps added after the square root
        if momentum > 0:
            b = momentum * b + g / avg                   (momentum_buffer)
            param = param - lr * b
        else:
            param = param - lr * g / avg

    Shapes: param, grad, square_avg (n,); grad_avg (n,) or empty unless centered; momentum_buffer
    (n,) or empty unless momentum > 0. Scalars: lr, alpha, one_minus_alpha = 1 - alpha, eps,
    weight_decay, momentum; centered (bool). Like torch, v - a * a is not clamped at zero.
    """
    n = param.size
    _check_length(n, grad.size, True)
    _check_length(n, square_avg.size, True)
    _check_length(n, grad_avg.size, centered)
    use_momentum = momentum > 0.0
    _check_length(n, momentum_buffer.size, use_momentum)
    for i in range(n):
        g = grad[i]
        if weight_decay != 0.0:
            g = g + weight_decay * param[i]
        v = alpha * square_avg[i] + one_minus_alpha * g * g
        square_avg[i] = v
        if centered:
            a = alpha * grad_avg[i] + one_minus_alpha * g
            grad_avg[i] = a
            avg = math.sqrt(v - a * a) + eps
        else:
            avg = math.sqrt(v) + eps
        if use_momentum:
            b = momentum * momentum_buffer[i] + _div(g, avg)
            momentum_buffer[i] = b
            param[i] = param[i] - lr * b
        else:
            param[i] = param[i] - _div(lr * g, avg)


@njit(**JIT)
def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1, beta2,
                one_minus_beta2, step_size, bias_correction2_sqrt, eps, weight_decay, param_decay,
                amsgrad):
    """Adam and AdamW, optionally AMSGrad (torch.optim.Adam, torch.optim.AdamW).

    Per element, at the parameter's step count t (counted from 1)::

        param = param_decay * param                      (AdamW: param_decay = 1 - lr * wd)
        g = grad + weight_decay * param                  (Adam's L2 term; 0 for AdamW)
        m = beta1 * m + (1 - beta1) * g                  (exp_avg)
        v = beta2 * v + (1 - beta2) * g * g              (exp_avg_sq)
        if amsgrad: v_max = max(v_max, v); use v_max in place of v below
        denom = sqrt(v) / sqrt(1 - beta2**t) + eps       eps added after the bias-corrected root
        param = param - step_size * m / denom            step_size = lr / (1 - beta1**t)

    which equals torch's documented ``param - lr * m_hat / (sqrt(v_hat) + eps)``.

    Shapes: param, grad, exp_avg, exp_avg_sq (n,); max_exp_avg_sq (n,) or empty unless amsgrad.
    Scalars: beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, bias_correction2_sqrt =
    sqrt(1 - beta2**t), eps, weight_decay, param_decay; amsgrad (bool).
    """
    n = param.size
    _check_length(n, grad.size, True)
    _check_length(n, exp_avg.size, True)
    _check_length(n, exp_avg_sq.size, True)
    _check_length(n, max_exp_avg_sq.size, amsgrad)
    decay = param_decay != 1.0
    for i in range(n):
        p = param[i]
        if decay:
            p = param_decay * p
        g = grad[i]
        if weight_decay != 0.0:
            g = g + weight_decay * p
        m = beta1 * exp_avg[i] + one_minus_beta1 * g
        exp_avg[i] = m
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g
        exp_avg_sq[i] = v
        if amsgrad:
            v = max(max_exp_avg_sq[i], v)
            max_exp_avg_sq[i] = v
        denom = _div(math.sqrt(v), bias_correction2_sqrt) + eps
        param[i] = p - _div(step_size * m, denom)


@njit(**JIT)
def rprop_update(param, grad, prev, step_size, eta_minus, eta_plus, step_size_min, step_size_max):
    """Rprop (torch.optim.Rprop's implementation).

    Per element, with s = grad * prev (the previous step's stored gradient)::

        s > 0:  step = step * eta_plus
        s < 0:  step = step * eta_minus;  g = 0          (sign flip: no move, forget the gradient)
        s = 0:  step unchanged                           (s NaN: step becomes NaN, as in torch)
        step = clamp(step, step_size_min, step_size_max) (every element, every step)
        param = param - sign(g) * step
        prev = g

    Shapes: param, grad, prev, step_size (n,); step_size starts at lr, prev at 0.
    Scalars: eta_minus, eta_plus, step_size_min, step_size_max. No eps.
    """
    n = param.size
    _check_length(n, grad.size, True)
    _check_length(n, prev.size, True)
    _check_length(n, step_size.size, True)
    for i in range(n):
        g = grad[i]
        s = g * prev[i]
        step = step_size[i]
        flipped = s < 0.0
        if s > 0.0:
            step = step * eta_plus
        elif flipped:
            step = step * eta_minus
        elif s != s:
            step = s
        if step < step_size_min:
            step = step_size_min
        elif step > step_size_max:
            step = step_size_max
        step_size[i] = step
        if flipped:
            prev[i] = 0.0
        else:
            prev[i] = g
            param[i] = param[i] - np.sign(g) * step


SGD = 0
ADAGRAD = 1
RMSPROP = 2
ADAM = 3
RPROP = 4
N_COEFFICIENTS = 9


@njit(**JIT)
def optimizer_update(code, param, grad, s0, s1, s2, c, flag, init_buffer):
    """One update by the kernel ``code`` (SGD, ADAGRAD, RMSPROP, ADAM, RPROP) for whole-step and
    whole-epoch kernels.

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
        adam_update(param, grad, s0, s1, s2, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8],
                    flag)
    else:
        rprop_update(param, grad, s0, s1, c[0], c[1], c[2], c[3])


@njit(**JIT_INTERNAL)
def optimizer_update_part(index, parts, params, grads, scale, code, s0, s1, s2, c, flag,
                          init_buffer):
    """Part ``index`` of ``parts`` of one update of (P,) arrays: the block's gradient scaled by
    ``scale`` (gradient clipping; 1 leaves it), then :func:`optimizer_update` on the block (state
    arrays that the variant does not use are empty and stay so)."""
    lo, hi = part(params.shape[0], parts, index, COL_ALIGN)
    if hi <= lo:
        return
    g = grads[lo:hi]
    if scale != 1.0:
        for i in range(hi - lo):
            g[i] *= scale
    optimizer_update(code, params[lo:hi], g, s0[lo:hi], s1[lo:hi], s2[lo:hi], c, flag,
                     init_buffer)

