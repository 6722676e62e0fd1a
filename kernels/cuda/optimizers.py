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


from numba import cuda

from .. import rules
from ..contract import ADAGRAD, ADAM, N_COEFFICIENTS, RMSPROP, RPROP, SGD
from . import config
from ._simulator import device_rule

sgd_element = device_rule(rules.sgd_element)
adagrad_element = device_rule(rules.adagrad_element)
rmsprop_element = device_rule(rules.rmsprop_element)
adam_element = device_rule(rules.adam_element)
rprop_element = device_rule(rules.rprop_element)
update_element = device_rule(rules.update_element)
update_bound = device_rule(rules.update_bound)

__all__ = ["SGD", "ADAGRAD", "RMSPROP", "ADAM", "RPROP", "N_COEFFICIENTS", "sgd_update",
           "adagrad_update", "rmsprop_update", "adam_update", "rprop_update", "optimizer_update"]


@cuda.jit(**config.CUDA_JIT)
def sgd_update_kernel(param, grad, momentum_buffer, lr, momentum, one_minus_dampening,
                      weight_decay, nesterov, init_buffer):
    """SGD (torch.optim.SGD) on every element."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, param.shape[0], step):
        sgd_element(param, grad, momentum_buffer, i, lr, momentum, one_minus_dampening, weight_decay,
             nesterov, init_buffer)


@cuda.jit(**config.CUDA_JIT)
def adagrad_update_kernel(param, grad, state_sum, clr, weight_decay, eps):
    """Adagrad (torch.optim.Adagrad) on every element."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, param.shape[0], step):
        adagrad_element(param, grad, state_sum, i, clr, weight_decay, eps)


@cuda.jit(**config.CUDA_JIT)
def rmsprop_update_kernel(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha,
                          one_minus_alpha, eps, weight_decay, momentum, centered):
    """RMSprop (torch.optim.RMSprop) on every element."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, param.shape[0], step):
        rmsprop_element(param, grad, square_avg, grad_avg, momentum_buffer, i, lr, alpha, one_minus_alpha,
                 eps, weight_decay, momentum, centered)


@cuda.jit(**config.CUDA_JIT)
def adam_update_kernel(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, c, amsgrad):
    """Adam / AdamW (torch.optim.Adam, torch.optim.AdamW) on every element; c the coefficient
    row (see ``adam_update``)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, param.shape[0], step):
        adam_element(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, c, amsgrad)


@cuda.jit(**config.CUDA_JIT)
def rprop_update_kernel(param, grad, prev, step_size, eta_minus, eta_plus, step_size_min,
                        step_size_max):
    """Rprop (torch.optim.Rprop) on every element."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, param.shape[0], step):
        rprop_element(param, grad, prev, step_size, i, eta_minus, eta_plus, step_size_min, step_size_max)


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


def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, c, amsgrad, stream=0):
    """Adam and AdamW, optionally AMSGrad (torch.optim.Adam, torch.optim.AdamW).

    denom = sqrt(v) / sqrt(1 - beta2^t) + eps (eps after the bias-corrected root);
    param = param_decay·param - step_size·m / denom with step_size = lr / (1 - beta1^t).
    Shapes: param, grad, exp_avg, exp_avg_sq (n,); max_exp_avg_sq (n,) or empty unless amsgrad;
    c (≥ 9,) the step's coefficient row in the arrays' dtype (host or device array): beta1,
    1 - beta1, beta2, 1 - beta2, step_size, sqrt(1 - beta2^t), eps, weight_decay, param_decay.
    """
    n = param.shape[0]
    _check_length(n, grad, True)
    _check_length(n, exp_avg, True)
    _check_length(n, exp_avg_sq, True)
    _check_length(n, max_exp_avg_sq, amsgrad)
    blocks, tpb = _grid(n)
    adam_update_kernel[blocks, tpb, stream](param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, c,
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
