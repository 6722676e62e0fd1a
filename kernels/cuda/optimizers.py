"""Fused elementwise optimizer updates on the GPU (twin of ``kernels/cpu/optimizers.py``).

One thread per parameter element (grid-stride loop) updates the parameter together with its state
arrays in a single pass, following torch.optim's rules exactly as the CPU kernels do. Conventions
are the CPU module's:

- Arrays are 1-D contiguous device arrays of one float dtype (float32 or float64) and one length n.
- Argument order: ``param`` (updated), ``grad`` (read only), the state arrays (updated), then the
  scalars — the same order and names as the CPU kernels, plus an optional ``stream``. A state array
  that the chosen variant does not use may be an empty device array of the same dtype.
- Scalars have the arrays' dtype: the caller computes every coefficient in float64 (``1 - beta``,
  bias corrections, the decayed learning rate, ...) and casts it, so the arithmetic per element
  stays in the arrays' dtype, as in torch. Divisions follow IEEE (x/0 gives inf or NaN).

Per-element formulas (see the CPU kernels for the full statements):

- SGD:     g = grad + wd·param;  b = g (first step) or mu·b + (1-dampening)·g;
           g = g + mu·b (nesterov) or b;  param -= lr·g
- Adagrad: g = grad + wd·param;  sum += g²;  param -= clr·g / (sqrt(sum) + eps)
- RMSprop: g = grad + wd·param;  v = alpha·v + (1-alpha)·g²;  [a = alpha·a + (1-alpha)·g]
           avg = sqrt(v [- a²]) + eps;  b = mu·b + g/avg, param -= lr·b  (or param -= lr·g/avg)
- Adam/AdamW: param *= param_decay;  g = grad + wd·param;  m = b1·m + (1-b1)·g;
           v = b2·v + (1-b2)·g²;  [v_max = max(v_max, v)];
           param -= step_size·m / (sqrt(v)/sqrt(1-b2^t) + eps)
- Rprop:   s = grad·prev;  step ×= eta_plus (s>0) or eta_minus (s<0, and g = 0);  clamp step;
           param -= sign(g)·step;  prev = g

``optimizer_update(code, param, grad, s0, s1, s2, c, flag, init_buffer)`` dispatches on the kernel
code like the CPU version; its coefficient row ``c`` (N_COEFFICIENTS,) is a device array in the
arrays' dtype, so a schedule of coefficients can live on the device.
"""

import math

from numba import cuda

from ..contract import ADAGRAD, ADAM, N_COEFFICIENTS, RMSPROP, RPROP, SGD
from . import config

__all__ = ["SGD", "ADAGRAD", "RMSPROP", "ADAM", "RPROP", "N_COEFFICIENTS", "sgd_update",
           "adagrad_update", "rmsprop_update", "adam_update", "rprop_update", "optimizer_update"]


@cuda.jit(device=True)
def _sgd(param, grad, momentum_buffer, i, lr, momentum, one_minus_dampening, weight_decay,
         nesterov, init_buffer):
    g = grad[i]
    if weight_decay != 0.0:
        g = g + weight_decay * param[i]
    if momentum != 0.0:
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


@cuda.jit(device=True)
def _adagrad(param, grad, state_sum, i, clr, weight_decay, eps):
    g = grad[i]
    if weight_decay != 0.0:
        g = g + weight_decay * param[i]
    s = state_sum[i] + g * g
    state_sum[i] = s
    param[i] = param[i] - clr * g / (math.sqrt(s) + eps)


@cuda.jit(device=True)
def _rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, i, lr, alpha, one_minus_alpha, eps,
             weight_decay, momentum, centered):
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
    if momentum > 0.0:
        b = momentum * momentum_buffer[i] + g / avg
        momentum_buffer[i] = b
        param[i] = param[i] - lr * b
    else:
        param[i] = param[i] - lr * g / avg


@cuda.jit(device=True)
def _adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, beta1, one_minus_beta1, beta2,
          one_minus_beta2, step_size, bias_correction2_sqrt, eps, weight_decay, param_decay,
          amsgrad):
    p = param[i]
    if param_decay != 1.0:
        p = param_decay * p
    g = grad[i]
    if weight_decay != 0.0:
        g = g + weight_decay * p
    m = beta1 * exp_avg[i] + one_minus_beta1 * g
    exp_avg[i] = m
    v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g
    exp_avg_sq[i] = v
    if amsgrad:
        w = max_exp_avg_sq[i]  # v = max(w, v), spelled out for numba's built-in CUDA target
        v = v if v > w else w
        max_exp_avg_sq[i] = v
    denom = math.sqrt(v) / bias_correction2_sqrt + eps
    param[i] = p - step_size * m / denom


@cuda.jit(device=True)
def _rprop(param, grad, prev, step_size, i, eta_minus, eta_plus, step_size_min, step_size_max):
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
        # param - sign(g)·step, with sign(±0) = ±0 and sign(NaN) = NaN as numpy.sign
        if g > 0.0:
            param[i] = param[i] - step
        elif g < 0.0:
            param[i] = param[i] + step
        else:
            param[i] = param[i] - g * step


@cuda.jit(**config.CUDA_JIT)
def sgd_update_kernel(param, grad, momentum_buffer, lr, momentum, one_minus_dampening,
                      weight_decay, nesterov, init_buffer):
    """SGD (torch.optim.SGD) on every element."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, param.shape[0], step):
        _sgd(param, grad, momentum_buffer, i, lr, momentum, one_minus_dampening, weight_decay,
             nesterov, init_buffer)


@cuda.jit(**config.CUDA_JIT)
def adagrad_update_kernel(param, grad, state_sum, clr, weight_decay, eps):
    """Adagrad (torch.optim.Adagrad) on every element."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, param.shape[0], step):
        _adagrad(param, grad, state_sum, i, clr, weight_decay, eps)


@cuda.jit(**config.CUDA_JIT)
def rmsprop_update_kernel(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha,
                          one_minus_alpha, eps, weight_decay, momentum, centered):
    """RMSprop (torch.optim.RMSprop) on every element."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, param.shape[0], step):
        _rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, i, lr, alpha, one_minus_alpha,
                 eps, weight_decay, momentum, centered)


@cuda.jit(**config.CUDA_JIT)
def adam_update_kernel(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1,
                       beta2, one_minus_beta2, step_size, bias_correction2_sqrt, eps, weight_decay,
                       param_decay, amsgrad):
    """Adam / AdamW (torch.optim.Adam, torch.optim.AdamW) on every element."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, param.shape[0], step):
        _adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, beta1, one_minus_beta1, beta2,
              one_minus_beta2, step_size, bias_correction2_sqrt, eps, weight_decay, param_decay,
              amsgrad)


@cuda.jit(**config.CUDA_JIT)
def rprop_update_kernel(param, grad, prev, step_size, eta_minus, eta_plus, step_size_min,
                        step_size_max):
    """Rprop (torch.optim.Rprop) on every element."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, param.shape[0], step):
        _rprop(param, grad, prev, step_size, i, eta_minus, eta_plus, step_size_min, step_size_max)


@cuda.jit(device=True)
def update_element(code, param, grad, s0, s1, s2, i, c, flag, init_buffer):
    """Element i of one update by the rule ``code``, its scalars read from the device row c."""
    if code == SGD:
        _sgd(param, grad, s0, i, c[0], c[1], c[2], c[3], flag, init_buffer)
    elif code == ADAGRAD:
        _adagrad(param, grad, s0, i, c[0], c[1], c[2])
    elif code == RMSPROP:
        _rmsprop(param, grad, s0, s1, s2, i, c[0], c[1], c[2], c[3], c[4], c[5], flag)
    elif code == ADAM:
        _adam(param, grad, s0, s1, s2, i, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
              c[8], flag)
    else:
        _rprop(param, grad, s0, s1, i, c[0], c[1], c[2], c[3])


@cuda.jit(**config.CUDA_JIT)
def optimizer_update_kernel(code, param, grad, s0, s1, s2, c, flag, init_buffer):
    """One update by the rule ``code``; scalars read from the device row c (see the module doc)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, param.shape[0], step):
        update_element(code, param, grad, s0, s1, s2, i, c, flag, init_buffer)


def _check_length(n, state, needed):
    """Raise when a state array that the variant reads does not have the parameter's length n."""
    if needed and state.shape[0] != n:
        raise ValueError("optimizer kernel: state array length differs from the parameter length")


def _grid(n):
    tpb = config.THREADS_PER_BLOCK
    return config.blocks_for(n, tpb), tpb


def sgd_update(param, grad, momentum_buffer, lr, momentum, one_minus_dampening, weight_decay,
               nesterov, init_buffer, stream=0):
    """SGD with momentum, dampening, Nesterov momentum and L2 weight decay (torch.optim.SGD).

    Shapes: param, grad (n,); momentum_buffer (n,), or empty when momentum == 0. Scalars: lr,
    momentum, one_minus_dampening = 1 - dampening, weight_decay (the arrays' dtype); nesterov,
    init_buffer (bool; init_buffer on the first step). No eps.
    """
    n = param.shape[0]
    _check_length(n, grad, True)
    _check_length(n, momentum_buffer, momentum != 0.0)
    blocks, tpb = _grid(n)
    sgd_update_kernel[blocks, tpb, stream](param, grad, momentum_buffer, lr, momentum,
                                           one_minus_dampening, weight_decay, bool(nesterov),
                                           bool(init_buffer))


def adagrad_update(param, grad, state_sum, clr, weight_decay, eps, stream=0):
    """Adagrad (torch.optim.Adagrad); eps is added after the square root.

    Shapes: param, grad, state_sum (n,). Scalars: clr = lr / (1 + (t - 1) lr_decay), weight_decay,
    eps.
    """
    n = param.shape[0]
    _check_length(n, grad, True)
    _check_length(n, state_sum, True)
    blocks, tpb = _grid(n)
    adagrad_update_kernel[blocks, tpb, stream](param, grad, state_sum, clr, weight_decay, eps)


def rmsprop_update(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, one_minus_alpha,
                   eps, weight_decay, momentum, centered, stream=0):
    """RMSprop, optionally centered and with momentum (torch.optim.RMSprop); eps after the root.

    Shapes: param, grad, square_avg (n,); grad_avg (n,) or empty unless centered; momentum_buffer
    (n,) or empty unless momentum > 0. Like torch, v - a² is not clamped at zero.
    """
    n = param.shape[0]
    _check_length(n, grad, True)
    _check_length(n, square_avg, True)
    _check_length(n, grad_avg, centered)
    _check_length(n, momentum_buffer, momentum > 0.0)
    blocks, tpb = _grid(n)
    rmsprop_update_kernel[blocks, tpb, stream](param, grad, square_avg, grad_avg, momentum_buffer,
                                               lr, alpha, one_minus_alpha, eps, weight_decay,
                                               momentum, bool(centered))


def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1, beta2,
                one_minus_beta2, step_size, bias_correction2_sqrt, eps, weight_decay, param_decay,
                amsgrad, stream=0):
    """Adam and AdamW, optionally AMSGrad (torch.optim.Adam, torch.optim.AdamW).

    denom = sqrt(v) / sqrt(1 - beta2^t) + eps (eps after the bias-corrected root);
    param = param_decay·param - step_size·m / denom with step_size = lr / (1 - beta1^t).
    Shapes: param, grad, exp_avg, exp_avg_sq (n,); max_exp_avg_sq (n,) or empty unless amsgrad.
    """
    n = param.shape[0]
    _check_length(n, grad, True)
    _check_length(n, exp_avg, True)
    _check_length(n, exp_avg_sq, True)
    _check_length(n, max_exp_avg_sq, amsgrad)
    blocks, tpb = _grid(n)
    adam_update_kernel[blocks, tpb, stream](param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1,
                                            one_minus_beta1, beta2, one_minus_beta2, step_size,
                                            bias_correction2_sqrt, eps, weight_decay, param_decay,
                                            bool(amsgrad))


def rprop_update(param, grad, prev, step_size, eta_minus, eta_plus, step_size_min, step_size_max,
                 stream=0):
    """Rprop (torch.optim.Rprop's implementation).

    Shapes: param, grad, prev, step_size (n,); step_size starts at lr, prev at 0. No eps.
    """
    n = param.shape[0]
    _check_length(n, grad, True)
    _check_length(n, prev, True)
    _check_length(n, step_size, True)
    blocks, tpb = _grid(n)
    rprop_update_kernel[blocks, tpb, stream](param, grad, prev, step_size, eta_minus, eta_plus,
                                             step_size_min, step_size_max)


def optimizer_update(code, param, grad, s0, s1, s2, c, flag, init_buffer, stream=0):
    """One update by the kernel ``code`` (SGD, ADAGRAD, RMSPROP, ADAM, RPROP) in one launch.

    s0, s1, s2: the variant's state arrays in the order of the kernel's arguments (empty when
    unused); c (N_COEFFICIENTS,): a device array of the kernel's scalar arguments in order, in the
    arrays' dtype; flag: nesterov (SGD), centered (RMSprop) or amsgrad (Adam); init_buffer: SGD's
    first step. State lengths are the caller's responsibility (checked by the per-rule launchers).
    """
    blocks, tpb = _grid(param.shape[0])
    optimizer_update_kernel[blocks, tpb, stream](int(code), param, grad, s0, s1, s2, c, bool(flag),
                                                 bool(init_buffer))
