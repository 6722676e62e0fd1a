"""The scalar rules of the kernels, written once for the CPU loops and the CUDA kernels alike.

Each rule is a plain ``numba.njit`` function inlined where it is called: the CPU kernels call them
in their loops, and the CUDA kernels call the same functions, which numba.cuda compiles as device
functions (it accepts ``@jit`` functions in kernels). Rules stay within what both targets compile:
scalar arithmetic, ``math`` functions, indexing of the arrays they are given; no ``max()``/``min()``
on floats (numba's CUDA target does not type them), no allocation.

- activations: ``stable_sigmoid``, ``activation_value``, ``activation_derivative``;
- random stream: ``mix64``, ``stream_key``, ``uniform`` (SplitMix64, bit-identical everywhere);
- optimizer updates of element i: ``sgd_element``, ``adagrad_element``, ``rmsprop_element``,
  ``adam_element``, ``rprop_element``, the dispatch ``update_element`` and ``update_bound``
  (whether an update surely stays finite); ``flush_subnormal`` for their running averages;
- loss terms of row i: ``row_max``, ``row_logsumexp``, ``row_exp_sum``, ``loss_row``; accuracy
  of row i: ``row_correct``;
- penalty of one weight: ``penalty_term``;
- bfloat16 rounding of one float32 (its bits): ``bf16_bits``.

The formulas are in each docstring; where eps goes is stated for every optimizer.
"""

import math

import numba
import numpy as np

from .contract import (
    ADAGRAD,
    ADAM,
    BINARY_CROSS_ENTROPY,
    CROSS_ENTROPY,
    CROSS_ENTROPY_PROBS,
    ELU,
    GELU,
    HINGE,
    LEAKY_RELU,
    LINEAR,
    MSE,
    RELU,
    RMSPROP,
    SGD,
    SIGMOID,
    SOFTPLUS,
    TANH,
)

RULE = dict(inline="always")
ROUNDING = 1.001  # update_bound's allowance for the rounding of the update's arithmetic

_INV_SQRT2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


# ---------------------------------------------------------------- activations

@numba.njit(**RULE)
def stable_sigmoid(x):
    """σ(x) = 1 / (1 + e^-x), evaluated so that neither branch overflows."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@numba.njit(**RULE)
def activation_value(x, code, alpha):
    """f(x) for one pre-activation (maxout excluded: it is a reduction)::

        linear x;  sigmoid σ(x);  tanh;  relu max(x, 0);  leaky_relu x or alpha·x;
        elu x or alpha (e^x - 1);  softplus max(x, 0) + log1p(e^-|x|);  gelu x Φ(x)
    """
    if code == RELU:
        return x if x > 0 else 0.0 * x
    if code == LINEAR:
        return x
    if code == SIGMOID:
        return stable_sigmoid(x)
    if code == TANH:
        return math.tanh(x)
    if code == LEAKY_RELU:
        return x if x > 0 else alpha * x
    if code == ELU:
        return x if x > 0 else alpha * math.expm1(x)
    if code == SOFTPLUS:
        return (0.0 if 0.0 > x else x) + math.log1p(math.exp(-abs(x)))
    if code == GELU:
        return 0.5 * x * (1.0 + math.erf(x * _INV_SQRT2))
    return math.nan


@numba.njit(**RULE)
def activation_derivative(x, y, code, alpha):
    """f'(x) given the pre-activation x and the output y = f(x)::

        linear 1;  sigmoid y (1 - y);  tanh 1 - y²;  relu [x > 0];  leaky_relu 1 or alpha;
        elu 1 or y + alpha;  softplus σ(x);  gelu Φ(x) + x φ(x)
    """
    if code == RELU:
        return 1.0 if x > 0 else 0.0
    if code == LINEAR:
        return 1.0
    if code == SIGMOID:
        return y * (1.0 - y)
    if code == TANH:
        return 1.0 - y * y
    if code == LEAKY_RELU:
        return 1.0 if x > 0 else alpha
    if code == ELU:
        return 1.0 if x > 0 else y + alpha
    if code == SOFTPLUS:
        return stable_sigmoid(x)
    if code == GELU:
        cdf = 0.5 * (1.0 + math.erf(x * _INV_SQRT2))
        return cdf + x * _INV_SQRT_2PI * math.exp(-0.5 * x * x)
    return math.nan


# ---------------------------------------------------------------- random stream

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_TWO_POW_MINUS_53 = 1.0 / 9007199254740992.0


@numba.njit(**RULE)
def mix64(z):
    """SplitMix64 finalizer (Steele, Lea & Flood 2014): a bijective avalanche of a uint64; shifts
    are logical and products wrap modulo 2^64 because z is uint64."""
    z = np.uint64(z)
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@numba.njit(**RULE)
def stream_key(seed, layer, step):
    """uint64 key of the stream for (seed, layer, step); all three are non-negative integers."""
    k = mix64(np.uint64(seed) + _GOLDEN)
    k = mix64(k ^ (np.uint64(layer) * _MIX1 + _ONE))
    return mix64(k ^ (np.uint64(step) * _MIX2 + _GOLDEN))


@numba.njit(**RULE)
def uniform(key, counter):
    """A float64 in [0, 1) from the top 53 bits of mix64(key + (counter + 1)·golden)."""
    z = mix64(np.uint64(key) + (np.uint64(counter) + _ONE) * _GOLDEN)
    return np.float64(z >> _S11) * _TWO_POW_MINUS_53


# ---------------------------------------------------------------- optimizers (torch.optim rules)

SMALLEST_NORMAL = 2.0 ** -126  # float32's smallest normal number, numpy.finfo(numpy.float32).tiny


@numba.njit(**RULE)
def flush_subnormal(x):
    """x, or +0 of x's type when 0 < |x| < 2⁻¹²⁶ (float32's smallest normal number, for either
    dtype); NaN and ±inf pass unchanged.

    Applied to the running averages of the gradient (momentum buffers, Adam's first moment,
    centred RMSprop's average), where torch.optim keeps subnormal numbers. A gradient that stays
    exactly 0 (a dead ReLU unit) makes such an average decay geometrically into the subnormal
    range, where it never reaches 0: 0.9 · k·2⁻¹⁴⁹ rounds back to k·2⁻¹⁴⁹ for k ≤ 4. Every
    arithmetic on a subnormal float can cost an x86 CPU a microcode assist: with 4% of Adam's
    first moment subnormal, a float32 update of 15,210 elements took 5× as long. Stored as 0
    instead, the average changes its parameter's update by less than lr · 2⁻¹²⁶ (Adam: less than
    step_size · 2⁻¹²⁶ / (sqrt(v̂) + eps); centred RMSprop's a² < 2⁻²⁵² inside sqrt(v - a²)).
    """
    return x - x if abs(x) < SMALLEST_NORMAL else x


@numba.njit(**RULE)
def sgd_element(param, grad, momentum_buffer, i, lr, momentum, one_minus_dampening, weight_decay,
                nesterov, init_buffer):
    """SGD (torch.optim.SGD) on element i::

        g = grad + weight_decay · param                  (weight_decay != 0)
        b = g (first step) or momentum · b + (1 - dampening) · g     (momentum != 0),
            then flush_subnormal(b)
        g = g + momentum · b (nesterov) or b
        param = param - lr · g                            no eps
    """
    g = grad[i]
    if weight_decay != 0.0:
        g = g + weight_decay * param[i]
    if momentum != 0.0:
        if init_buffer:
            b = g
        else:
            b = momentum * momentum_buffer[i] + one_minus_dampening * g
        b = flush_subnormal(b)
        momentum_buffer[i] = b
        if nesterov:
            g = g + momentum * b
        else:
            g = b
    param[i] = param[i] - lr * g


@numba.njit(**RULE)
def adagrad_element(param, grad, state_sum, i, clr, weight_decay, eps):
    """Adagrad (torch.optim.Adagrad) on element i::

        g = grad + weight_decay · param;  sum = sum + g²
        param = param - clr · g / (sqrt(sum) + eps)       eps after the square root

    clr = lr / (1 + (t - 1) lr_decay) at step t.
    """
    g = grad[i]
    if weight_decay != 0.0:
        g = g + weight_decay * param[i]
    s = state_sum[i] + g * g
    state_sum[i] = s
    param[i] = param[i] - clr * g / (math.sqrt(s) + eps)


@numba.njit(**RULE)
def rmsprop_element(param, grad, square_avg, grad_avg, momentum_buffer, i, lr, alpha,
                    one_minus_alpha, eps, weight_decay, momentum, centered):
    """RMSprop (torch.optim.RMSprop) on element i::

        g = grad + weight_decay · param
        v = alpha · v + (1 - alpha) · g²
        avg = sqrt(v - a²) + eps with a = flush_subnormal(alpha · a + (1 - alpha) · g) (centered),
            else sqrt(v) + eps
        b = flush_subnormal(momentum · b + g / avg);  param = param - lr · b      (momentum > 0)
        param = param - lr · g / avg                              (otherwise)

    eps after the square root; like torch, v - a² is not clamped at zero.
    """
    g = grad[i]
    if weight_decay != 0.0:
        g = g + weight_decay * param[i]
    v = alpha * square_avg[i] + one_minus_alpha * g * g
    square_avg[i] = v
    if centered:
        a = flush_subnormal(alpha * grad_avg[i] + one_minus_alpha * g)
        grad_avg[i] = a
        avg = math.sqrt(v - a * a) + eps
    else:
        avg = math.sqrt(v) + eps
    if momentum > 0.0:
        b = flush_subnormal(momentum * momentum_buffer[i] + g / avg)
        momentum_buffer[i] = b
        param[i] = param[i] - lr * b
    else:
        param[i] = param[i] - lr * g / avg


@numba.njit(**RULE)
def adam_element(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, c, amsgrad):
    """Adam and AdamW (torch.optim.Adam / AdamW), optionally AMSGrad, on element i at step t::

        param = param_decay · param                      (AdamW: param_decay = 1 - lr · wd)
        g = grad + weight_decay · param                  (Adam's L2 term; 0 for AdamW)
        m = flush_subnormal(beta1 · m + (1 - beta1) · g);  v = beta2 · v + (1 - beta2) · g²
        v = max(v_max, v), kept in v_max                 (amsgrad)
        param = param - step_size · m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    c = (beta1, 1 - beta1, beta2, 1 - beta2, step_size, sqrt(1 - beta2^t), eps, weight_decay,
    param_decay), a tuple or the step's coefficient row; step_size = lr / (1 - beta1^t). eps
    after the bias-corrected square root, which equals torch's
    ``param - lr · m_hat / (sqrt(v_hat) + eps)``.
    """
    beta1, one_minus_beta1, beta2, one_minus_beta2 = c[0], c[1], c[2], c[3]
    step_size, bias_correction2_sqrt, eps, weight_decay, param_decay = c[4], c[5], c[6], c[7], c[8]
    p = param[i]
    if param_decay != 1.0:
        p = param_decay * p
    g = grad[i]
    if weight_decay != 0.0:
        g = g + weight_decay * p
    m = flush_subnormal(beta1 * exp_avg[i] + one_minus_beta1 * g)
    exp_avg[i] = m
    v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g
    exp_avg_sq[i] = v
    if amsgrad:
        w = max_exp_avg_sq[i]
        v = v if v > w else w
        max_exp_avg_sq[i] = v
    param[i] = p - step_size * m / (math.sqrt(v) / bias_correction2_sqrt + eps)


@numba.njit(**RULE)
def rprop_element(param, grad, prev, step_size, i, eta_minus, eta_plus, step_size_min,
                  step_size_max):
    """Rprop (torch.optim.Rprop's implementation) on element i, with s = grad · prev::

        s > 0: step · eta_plus;  s < 0: step · eta_minus and g = 0;  s = 0: step unchanged
        (s NaN: step NaN); step clamped to [step_size_min, step_size_max]
        param = param - sign(g) · step;  prev = g         no eps
    """
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
    # sign(g) with sign(±0) = ±0 and sign(NaN) = NaN as numpy.sign; 0 where the sign flipped.
    # One store per array (no store inside a branch) keeps the CPU loop vectorizable.
    sign = 1.0 if g > 0.0 else (-1.0 if g < 0.0 else g)
    prev[i] = 0.0 if flipped else g
    param[i] = param[i] - (0.0 if flipped else sign) * step


@numba.njit(**RULE)
def update_element(code, param, grad, s0, s1, s2, i, c, flag, init_buffer):
    """One update of element i by the optimizer ``code``; s0, s1, s2 are its state arrays in the
    order of its rule's arguments (empty when unused), c (N_COEFFICIENTS,) its scalars in order,
    ``flag`` nesterov / centered / amsgrad, ``init_buffer`` SGD's first step."""
    if code == SGD:
        sgd_element(param, grad, s0, i, c[0], c[1], c[2], c[3], flag, init_buffer)
    elif code == ADAGRAD:
        adagrad_element(param, grad, s0, i, c[0], c[1], c[2])
    elif code == RMSPROP:
        rmsprop_element(param, grad, s0, s1, s2, i, c[0], c[1], c[2], c[3], c[4], c[5], flag)
    elif code == ADAM:
        adam_element(param, grad, s0, s1, s2, i, c, flag)
    else:
        rprop_element(param, grad, s0, s1, i, c[0], c[1], c[2], c[3])


@numba.njit(**RULE)
def _larger(a, b):
    return a if a > b else b


@numba.njit(**RULE)
def update_bound(code, c, flag, init_buffer, g, bounds):
    """Whether one update by the optimizer ``code`` surely stays finite, from magnitudes alone.

    bounds (5,) float64 holds upper bounds of |param|, |s0|, |s1|, |s2| (the state arrays in the
    order of :func:`update_element`) and, in bounds[4], the limit (a fraction of the dtype's
    largest value); g bounds |grad| (the clipped gradient's L2 norm). The rules' formulas give
    bounds of every value the update computes (each |a·x + b·y| ≤ |a|·X + |b|·Y; every
    ``g / (sqrt(v) + eps)`` ≤ g / eps, with Adagrad's ≤ 1 and non-centred RMSprop's
    ≤ 1 / sqrt(1 - alpha) since their v already holds g²). bounds[0:4] become the bounds after
    the update. Returns True when every bound stays below the limit; False when the update must
    be checked element by element first (a bound reaches the limit, eps ≤ 0, or centred RMSprop,
    whose sqrt(v - a²) rounding can make NaN of finite values).
    """
    limit = bounds[4]
    p, s0, s1, s2 = bounds[0], bounds[1], bounds[2], bounds[3]
    worst = 0.0
    if code == SGD:
        lr, momentum, one_minus_dampening, weight_decay = (
            math.fabs(c[0]), math.fabs(c[1]), math.fabs(c[2]), math.fabs(c[3]))
        g1 = g + weight_decay * p
        step = g1
        if momentum != 0.0:
            b = g1 if init_buffer else momentum * s0 + one_minus_dampening * g1
            s0 = b
            step = g1 + momentum * b if flag else b
        worst = g1
        p = p + lr * step
    elif code == ADAGRAD:
        clr, weight_decay, eps = math.fabs(c[0]), math.fabs(c[1]), c[2]
        if not eps > 0.0:
            return False
        g1 = g + weight_decay * p
        worst = g1 * g1
        s0 = s0 + worst
        p = p + clr * 1.001
    elif code == RMSPROP:
        lr, alpha, one_minus_alpha, eps = (
            math.fabs(c[0]), math.fabs(c[1]), math.fabs(c[2]), c[3])
        weight_decay, momentum = math.fabs(c[4]), math.fabs(c[5])
        if flag or not eps > 0.0:
            return False
        g1 = g + weight_decay * p
        worst = g1 * g1
        s0 = alpha * s0 + one_minus_alpha * worst
        ratio = g1 / eps
        if one_minus_alpha > 0.0:
            capped = 1.001 / math.sqrt(one_minus_alpha)
            ratio = capped if capped < ratio else ratio
        if momentum > 0.0:
            s2 = momentum * s2 + ratio
            p = p + lr * s2
        else:
            p = p + lr * ratio
    elif code == ADAM:
        beta1, one_minus_beta1 = math.fabs(c[0]), math.fabs(c[1])
        beta2, one_minus_beta2 = math.fabs(c[2]), math.fabs(c[3])
        step_size, eps = math.fabs(c[4]), c[6]
        weight_decay, param_decay = math.fabs(c[7]), math.fabs(c[8])
        if not eps > 0.0:
            return False
        p = param_decay * p
        g1 = g + weight_decay * p
        worst = g1 * g1
        s0 = beta1 * s0 + one_minus_beta1 * g1
        s1 = beta2 * s1 + one_minus_beta2 * worst
        if flag:
            s2 = _larger(s2, s1)
        p = p + step_size * s0 / eps
    else:
        eta_plus, step_size_min, step_size_max = math.fabs(c[1]), math.fabs(c[2]), math.fabs(c[3])
        worst = s1 * eta_plus
        s1 = _larger(step_size_min, step_size_max)
        s0 = g
        p = p + s1
    # the dtype's rounding (a few operations of relative error ≤ 2⁻²⁴ each) stays within 0.1%
    p, s0, s1, s2 = p * ROUNDING, s0 * ROUNDING, s1 * ROUNDING, s2 * ROUNDING
    bounds[0], bounds[1], bounds[2], bounds[3] = p, s0, s1, s2
    worst = _larger(_larger(worst, p), _larger(_larger(s0, s1), s2))
    return worst < limit


# ---------------------------------------------------------------- losses and accuracy

@numba.njit(**RULE)
def row_max(z, i):
    """max_j z_ij of row i, in float64."""
    m = -math.inf
    for j in range(z.shape[1]):
        v = np.float64(z[i, j])
        if v > m:
            m = v
    return m


@numba.njit(**RULE)
def row_logsumexp(z, i):
    """(logsumexp z_i, max z_i, Σ_j exp(z_ij - max)) of row i, in float64."""
    m = row_max(z, i)
    s = 0.0
    for j in range(z.shape[1]):
        s += math.exp(np.float64(z[i, j]) - m)
    return m + math.log(s), m, s


@numba.njit(**RULE)
def row_exp_sum(e, z, i):
    """(max z_i, s = Σ_j exp(z_ij - max)) of row i in float64, with e_ij = exp(z_ij - max) written
    into row i of ``e`` (B, C), so that the softmax exp(z_ij - max) / s costs one exp per element.
    """
    m = row_max(z, i)
    s = 0.0
    for j in range(z.shape[1]):
        v = math.exp(np.float64(z[i, j]) - m)
        s += v
        e[i, j] = v
    return m, s


@numba.njit(**RULE)
def loss_row(dz, z, labels, targets, code, i, n):
    """Row i of a batch of n rows: its loss term (float64) and its row of dz, the gradient of the
    mean loss. z, dz (B, C); labels (B,) for the label losses, targets (B, C) for the others::

        cross_entropy     logsumexp(z_i) - z_iy              dz = (softmax(z_i) - onehot(y)) / n
        probability rows  Σ_c t_c (logsumexp(z_i) - z_ic)    dz = (softmax(z_i) Σ_c t_c - t) / n
        binary            Σ_c max(z,0) - z t + log1p(e^-|z|) dz = (σ(z) - t) / n
        mse               Σ_c (z - t)²                       dz = 2 (z - t) / (n C)
        hinge             Σ_{c≠y} max(0, z_c - z_y + 1)      dz = [margin > 0] / n, -count / n at y

    The mean loss is Σ of the terms over n (n·C for mse). For cross_entropy, dz's row first holds
    e_j = exp(z_ij - max) (one exp per element), then e_j / (s·n) - [j = y] / n with s = Σ_j e_j;
    dz may be z itself.
    """
    c = z.shape[1]
    total = 0.0
    if code == CROSS_ENTROPY:
        y = labels[i]
        zy = np.float64(z[i, y])  # read before dz's row is written: dz may be z itself
        m, s = row_exp_sum(dz, z, i)
        total = (m - zy) + math.log(s)
        # the label's term in float64 from its exp: when the label holds the row's max (its exp
        # exactly 1) and the softmax is near 1, rounding before the subtraction would cancel
        ey = np.float64(dz[i, y])
        inverse = 1.0 / (s * n)
        for j in range(c):
            dz[i, j] = np.float64(dz[i, j]) * inverse
        dz[i, y] = ey * inverse - 1.0 / n
    elif code == CROSS_ENTROPY_PROBS:
        lse, m, s = row_logsumexp(z, i)
        tsum = 0.0
        for j in range(c):
            t = np.float64(targets[i, j])
            tsum += t
            if t != 0.0:
                total += t * ((m - np.float64(z[i, j])) + math.log(s))
        for j in range(c):
            dz[i, j] = (math.exp(np.float64(z[i, j]) - m) / s * tsum
                        - np.float64(targets[i, j])) / n
    elif code == BINARY_CROSS_ENTROPY:
        for j in range(c):
            v = np.float64(z[i, j])
            t = np.float64(targets[i, j])
            total += (0.0 if 0.0 > v else v) - v * t + math.log1p(math.exp(-abs(v)))
            dz[i, j] = (stable_sigmoid(v) - t) / n
    elif code == MSE:
        scale = 2.0 / (n * c)
        for j in range(c):
            d = np.float64(z[i, j]) - np.float64(targets[i, j])
            total += d * d
            dz[i, j] = scale * d
    else:
        y = labels[i]
        zy = np.float64(z[i, y])
        positive = 0
        for j in range(c):
            if j == y:
                continue
            margin = np.float64(z[i, j]) - zy + 1.0
            if margin > 0.0:
                total += margin
                positive += 1
                dz[i, j] = 1.0 / n
            else:
                dz[i, j] = 0.0
        dz[i, y] = -positive / n
    return total


@numba.njit(**RULE)
def row_argmax(z, i):
    """Index of the first maximum of row i (as numpy.argmax)."""
    best = 0
    for j in range(1, z.shape[1]):
        if z[i, j] > z[i, best]:
            best = j
    return best


@numba.njit(**RULE)
def row_correct(z, labels, targets, code, i):
    """(correct, counted) of row i: argmax z_i against the label or the target row's argmax
    (label losses, probability rows: 1 counted), [z > 0] against [t ≥ 0.5] per output (binary:
    C counted); mse counts nothing."""
    if code == CROSS_ENTROPY or code == HINGE:
        return (1 if row_argmax(z, i) == labels[i] else 0), 1
    if code == CROSS_ENTROPY_PROBS:
        return (1 if row_argmax(z, i) == row_argmax(targets, i) else 0), 1
    if code == BINARY_CROSS_ENTROPY:
        correct = 0
        for j in range(z.shape[1]):
            if (z[i, j] > 0) == (targets[i, j] >= 0.5):
                correct += 1
        return correct, z.shape[1]
    return 0, 0


# ---------------------------------------------------------------- penalties

@numba.njit(**RULE)
def penalty_term(w, l1, l2):
    """(gradient l1 sign(w) + 2 l2 w, |w|, w² in float64) of one weight; sign(0) = 0."""
    s = 1.0 if w > 0 else (-1.0 if w < 0 else 0.0)
    v = np.float64(w)
    return l1 * s + 2.0 * l2 * w, abs(v), v * v


# ---------------------------------------------------------------- bfloat16 rounding

_U32 = np.uint32
_LOW = np.uint32(0x7FFF)
_ONE = np.uint32(1)
_SHIFT = np.uint32(16)
_QUIET = np.uint32(0x0040)
_ABS = np.uint32(0x7FFFFFFF)
_INF = np.uint32(0x7F800000)


@numba.njit(**RULE)
def bf16_bits(u):
    """The bfloat16 bits (uint16) of the float32 whose bits are ``u`` (uint32), rounded to nearest
    even: (u + 0x7FFF + ((u >> 16) & 1)) >> 16, and for a NaN its high half with the quiet bit
    (see ``cpu/bf16``, where the products that take these operands are)."""
    # Numba widens integer arithmetic to 64 bits; wrapping every step back to uint32 lets the loops
    # run on 32-bit vector lanes (twice as many per instruction). The result needs only bits 16–31
    # of the sum, which the wrap-around keeps.
    high = _U32(u >> _SHIFT)
    rounded = _U32(_U32(_U32(u + _LOW) + _U32(high & _ONE)) >> _SHIFT)
    is_nan = _U32(u & _ABS) > _INF
    return np.uint16(_U32(high | _QUIET) if is_nan else rounded)
