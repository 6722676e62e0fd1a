"""Optimizers with torch.optim's update rules, defaults and hyper-parameter names.

Each optimizer updates a dict of parameter arrays in place from a dict of gradient arrays with the
same keys::

    opt = Adam(lr=1e-3)
    opt.step(model.params, grads)      # one compiled kernel call per array
    opt.lr = 5e-4                      # learning-rate schedules assign lr between steps

Classes: ``SGD``, ``Adagrad``, ``RMSProp`` (alias ``RMSprop``), ``Adam``, ``AdamW``, ``Rprop``; all
derive from ``Optimizer``. The per-element formulas live in the docstrings of the kernels in
``fastmlp.kernels.cpu.optimizers``; every coefficient (bias corrections, decayed learning rates,
``1 - beta``) is computed on the host in float64 and cast to the parameter's dtype, and the update
runs in that dtype (float32 or float64).

State is kept per parameter key in ``opt.state[key]``: a dict holding ``"step"`` (int, the number of
updates of that key, torch's t) and the torch-named state arrays (``exp_avg``, ``momentum_buffer``,
...), each with the parameter's shape and dtype. It is created on the key's first step.

Checkpoints. ``opt.state_dict()`` returns a flat dict that ``np.savez(path, **d)`` stores without
pickling::

    "class"              str, the class name, e.g. "Adam"
    "hyper"              str, JSON of get_config(), e.g. '{"lr": 0.001, "betas": [0.9, 0.999], ...}'
    "state/<key>/step"   int
    "state/<key>/<name>" ndarray, a copy of a state array, e.g. "state/0.W/exp_avg"

``opt.load_state_dict(d)`` (``d`` may be that dict or the ``np.load`` result) restores the
hyper-parameters, lr included, and the state, so that continuing is bit-identical;
``Optimizer.from_state_dict(d)`` builds the right class first. ``get_config()`` returns the
constructor's keyword arguments (JSON-able) and ``Cls.from_config(config)`` rebuilds from them.
"""

import json
import math
import numbers

import numpy as np

from .kernels.cpu import optimizers as _kernels

__all__ = [
    "Optimizer", "SGD", "Adagrad", "RMSProp", "RMSprop", "Adam", "AdamW", "Rprop",
    "OPTIMIZERS", "get_optimizer",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_EMPTY = {dtype: np.empty(0, dtype) for dtype in _FLOAT_DTYPES}
_STATE_PREFIX = "state/"


# ---------------------------------------------------------------- hyper-parameter validation

def _real(name, value):
    """value as a finite Python float; TypeError unless it is a real number (bools excluded)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _non_negative(name, value):
    value = _real(name, value)
    if value < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def _in_interval(name, value, low, high, high_closed=False):
    """Validate low <= value < high (value <= high when high_closed)."""
    value = _real(name, value)
    if not (low <= value and (value <= high if high_closed else value < high)):
        bracket = "]" if high_closed else ")"
        raise ValueError(f"{name} must be in [{low}, {high}{bracket}, got {value!r}")
    return value


def _pair(name, value):
    """Validate a length-2 sequence of real numbers; returns a tuple of two floats."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(f"{name} must be a pair of numbers, got {value!r}")
    return _real(f"{name}[0]", value[0]), _real(f"{name}[1]", value[1])


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


# ---------------------------------------------------------------- params / grads validation

def _check_array(argument, key, array):
    """Validate one params/grads entry: a C-contiguous float32/float64 ndarray."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{argument}[{key!r}] must be a numpy array, got {type(array).__name__}")
    if array.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{argument}[{key!r}] must have dtype float32 or float64, "
                        f"got {array.dtype}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{argument}[{key!r}] must be C-contiguous")


def _check_pairs(params, grads):
    """Validate that params and grads are dicts of matching, updatable float arrays."""
    for argument, mapping in (("params", params), ("grads", grads)):
        if not isinstance(mapping, dict):
            raise TypeError(f"{argument} must be a dict of str -> ndarray, "
                            f"got {type(mapping).__name__}")
    if params.keys() != grads.keys():
        missing = [k for k in params if k not in grads]
        extra = [k for k in grads if k not in params]
        raise ValueError(f"grads keys differ from params keys: missing {missing}, "
                         f"unexpected {extra}")
    for key, param in params.items():
        grad = grads[key]
        _check_array("params", key, param)
        _check_array("grads", key, grad)
        if not param.flags.writeable:
            raise ValueError(f"params[{key!r}] is read-only")
        if grad.shape != param.shape:
            raise ValueError(f"grads[{key!r}] has shape {grad.shape}, "
                             f"params[{key!r}] has {param.shape}")
        if grad.dtype != param.dtype:
            raise ValueError(f"grads[{key!r}] has dtype {grad.dtype}, "
                             f"params[{key!r}] has {param.dtype}")


def _as_str(value):
    """A str from a str or a 0-d string array (what np.load returns)."""
    return str(value.item()) if isinstance(value, np.ndarray) else str(value)


def _read_header(state_dict):
    """(class name, config dict) of a state_dict; "hyper" may be a JSON str or a dict."""
    for entry in ("class", "hyper"):
        if entry not in state_dict:
            raise ValueError(f"state_dict has no {entry!r} entry")
    hyper = state_dict["hyper"]
    config = hyper if isinstance(hyper, dict) else json.loads(_as_str(hyper))
    return _as_str(state_dict["class"]), config


# ---------------------------------------------------------------- base class

class Optimizer:
    """Base class: per-key lazy state, validated ``step``, ``state_dict`` and config round trips.

    Subclasses define ``_STATE_NAMES`` (the torch names of their state arrays), ``get_config``,
    ``_coefficients(t)`` (the kernel's scalars at step t, computed in float64; ``step`` casts them
    to the parameter's dtype) and ``_update(param, grad, state, scalars)``, which calls the
    compiled kernel on flat views.
    """

    _STATE_NAMES = ()

    def __init__(self, lr):
        self.lr = lr
        self.state = {}

    @property
    def lr(self):
        """The learning rate (float >= 0, validated on assignment).

        Schedules assign it between steps; the other hyper-parameters are fixed at construction
        (or by ``load_state_dict``).
        """
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _non_negative("lr", value)

    def get_config(self):
        """The constructor's keyword arguments (JSON-able); ``type(self)(**config)`` rebuilds it."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        """Build an optimizer from ``get_config()`` output (tuples may come back as lists)."""
        if cls is Optimizer:
            raise TypeError("call from_config on a concrete optimizer class, e.g. Adam.from_config")
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # -- stepping

    def step(self, params, grads):
        """Update every array of ``params`` in place from the same-key array of ``grads``.

        params, grads: dicts str -> ndarray with equal keys; each pair has one shape and one dtype
        (float32 or float64) and is C-contiguous. State for a key is created on its first step.
        Raises TypeError/ValueError naming the argument and key before anything is updated.
        """
        _check_pairs(params, grads)
        states = [self._state_for(key, param) for key, param in params.items()]
        scalars = {}  # (dtype, step) -> kernel scalars, shared by the keys at the same step
        for (key, param), state in zip(params.items(), states):
            state["step"] += 1
            at = (param.dtype, state["step"])
            if at not in scalars:
                cast = param.dtype.type
                scalars[at] = tuple(cast(c) for c in self._coefficients(state["step"]))
            self._update(param, grads[key], state, scalars[at])

    def _state_for(self, key, param):
        """The state of ``key``, created if absent; checked against ``param``'s shape and dtype."""
        state = self.state.get(key)
        if state is None:
            state = self.state[key] = self._init_state(param)
            return state
        for name, value in state.items():
            if name != "step" and (value.shape != param.shape or value.dtype != param.dtype):
                raise ValueError(
                    f"optimizer state {name!r} of key {key!r} has shape {value.shape} and dtype "
                    f"{value.dtype}, params[{key!r}] has shape {param.shape} and dtype "
                    f"{param.dtype}")
        return state

    def _init_state(self, param):
        """Fresh state for one parameter: step 0 plus the arrays the current variant needs."""
        return {"step": 0}

    @staticmethod
    def _buffer(state, name, like, fill=0.0):
        """The flat view of state[name], created with ``fill`` (like ``like``) when missing."""
        array = state.get(name)
        if array is None:
            array = state[name] = np.full(like.shape, fill, like.dtype)
        return array.reshape(-1)

    def _coefficients(self, t):
        """The kernel's scalar arguments at step t (from 1), as Python floats (float64 math)."""
        raise NotImplementedError

    def _update(self, param, grad, state, scalars):
        """Run the kernel on flat views of param, grad and the state, with the cast scalars."""
        raise NotImplementedError

    # -- whole-epoch kernels

    def _kernel_arguments(self, param, state):
        """(kernel code, s0, s1, s2, flag, init_buffer) for ``optimizer_update``; creates the state
        arrays the variant needs."""
        raise NotImplementedError

    def fused_arguments(self, key, param):
        """Arguments of ``fastmlp.kernels.cpu.optimizers.optimizer_update`` for ``params[key]``
        (1-D, C-contiguous), its state created if needed: (code, s0, s1, s2, flag, init_buffer)."""
        return self._kernel_arguments(param, self._state_for(key, param))

    def coefficient_table(self, key, steps, dtype):
        """(steps, N_COEFFICIENTS) kernel scalars for the next ``steps`` updates of ``key``, cast
        to ``dtype`` exactly as ``step`` casts them, so fused and unfused training agree bitwise."""
        t0 = self.state[key]["step"] if key in self.state else 0
        table = np.zeros((steps, _kernels.N_COEFFICIENTS), dtype=dtype)
        cast = np.dtype(dtype).type
        for k in range(steps):
            row = self._coefficients(t0 + k + 1)
            table[k, :len(row)] = [cast(c) for c in row]
        return table

    def advance(self, key, steps):
        """Count ``steps`` updates of ``key`` done by a fused kernel."""
        self.state[key]["step"] += steps

    # -- checkpoints

    def state_dict(self):
        """A flat dict of copies: "class", "hyper" (JSON str) and "state/<key>/<name>" entries."""
        out = {"class": type(self).__name__, "hyper": json.dumps(self.get_config())}
        for key, state in self.state.items():
            for name, value in state.items():
                entry = f"{_STATE_PREFIX}{key}/{name}"
                out[entry] = int(value) if name == "step" else value.copy()
        return out

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters (lr included) and state from ``state_dict()`` output.

        Accepts the dict itself or an ``np.load`` of its ``np.savez`` (0-d arrays for the scalars).
        The class must match; unknown entries raise ValueError. Arrays are copied.
        """
        name, config = _read_header(state_dict)
        if name != type(self).__name__:
            raise ValueError(f"state_dict is for optimizer {name!r}, not {type(self).__name__!r}")
        fresh = type(self).from_config(config)
        state = {}
        for entry in state_dict.keys():
            if entry in ("class", "hyper"):
                continue
            key, item = self._parse_entry(entry)
            state.setdefault(key, {})[item] = self._parse_value(entry, item, state_dict[entry])
        for key, items in state.items():
            if "step" not in items:
                raise ValueError(f"state_dict has no entry '{_STATE_PREFIX}{key}/step'")
        vars(self).update({k: v for k, v in vars(fresh).items() if k != "state"})
        self.state = state

    @classmethod
    def from_state_dict(cls, state_dict):
        """Build the optimizer named by ``state_dict["class"]`` and load the state into it."""
        name, config = _read_header(state_dict)
        klass = OPTIMIZERS.get(name)
        if klass is None or not issubclass(klass, cls):
            raise ValueError(f"state_dict is for optimizer {name!r}, "
                             f"which is not a {cls.__name__}")
        opt = klass.from_config(config)
        opt.load_state_dict(state_dict)
        return opt

    def _parse_entry(self, entry):
        """Split "state/<key>/<name>" into (key, name); the key may itself contain '/'."""
        if not entry.startswith(_STATE_PREFIX) or entry.count("/") < 2:
            raise ValueError(f"unexpected state_dict entry {entry!r}")
        key, item = entry[len(_STATE_PREFIX):].rsplit("/", 1)
        if item != "step" and item not in self._STATE_NAMES:
            raise ValueError(f"state_dict entry {entry!r}: {type(self).__name__} has no state "
                             f"{item!r} (expected one of {('step',) + self._STATE_NAMES})")
        return key, item

    @staticmethod
    def _parse_value(entry, item, value):
        if item == "step":
            step = np.asarray(value)
            if step.ndim != 0 or step.dtype.kind not in "iu" or int(step) < 0:
                raise ValueError(f"state_dict entry {entry!r} must be an integer >= 0, "
                                 f"got {value!r}")
            return int(step)
        array = np.array(value, copy=True, order="C")
        if array.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"state_dict entry {entry!r} must be float32 or float64, "
                            f"got {array.dtype}")
        return array


# ---------------------------------------------------------------- optimizers

class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay.

    torch.optim.SGD: g = grad + weight_decay * p; with momentum mu != 0 the buffer b is g on the
    first step and mu * b + (1 - dampening) * g afterwards, and g becomes g + mu * b (nesterov)
    or b; then p = p - lr * g. State: "momentum_buffer" (only when momentum != 0).

    Args:
        lr: learning rate, >= 0.
        momentum: momentum factor mu, >= 0.
        dampening: dampening of the momentum, in [0, 1].
        weight_decay: L2 penalty coefficient added to the gradient, >= 0.
        nesterov: Nesterov momentum; requires momentum > 0 and dampening == 0.
    """

    _STATE_NAMES = ("momentum_buffer",)

    def __init__(self, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(lr)
        self.momentum = _non_negative("momentum", momentum)
        self.dampening = _in_interval("dampening", dampening, 0.0, 1.0, high_closed=True)
        self.weight_decay = _non_negative("weight_decay", weight_decay)
        self.nesterov = _flag("nesterov", nesterov)
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise ValueError("nesterov=True requires momentum > 0 and dampening == 0")

    def get_config(self):
        return dict(lr=self.lr, momentum=self.momentum, dampening=self.dampening,
                    weight_decay=self.weight_decay, nesterov=self.nesterov)

    def _coefficients(self, t):
        return self.lr, self.momentum, 1.0 - self.dampening, self.weight_decay

    def _update(self, param, grad, state, scalars):
        use_momentum = self.momentum != 0.0
        init_buffer = use_momentum and "momentum_buffer" not in state
        buffer = (self._buffer(state, "momentum_buffer", param) if use_momentum
                  else _EMPTY[param.dtype])
        _kernels.sgd_update(param.reshape(-1), grad.reshape(-1), buffer, *scalars, self.nesterov,
                            init_buffer)

    def _kernel_arguments(self, param, state):
        use_momentum = self.momentum != 0.0
        init_buffer = use_momentum and "momentum_buffer" not in state
        empty = _EMPTY[param.dtype]
        buffer = self._buffer(state, "momentum_buffer", param) if use_momentum else empty
        return _kernels.SGD, buffer, empty, empty, self.nesterov, init_buffer


class Adagrad(Optimizer):
    """Adagrad with learning-rate decay and L2 weight decay (torch.optim.Adagrad).

    At the key's step t (from 1): g = grad + weight_decay * p; clr = lr / (1 + (t - 1) * lr_decay);
    sum = sum + g^2; p = p - clr * g / (sqrt(sum) + eps). State: "sum", initialised to
    initial_accumulator_value.

    Args:
        lr: learning rate, >= 0.
        lr_decay: learning-rate decay per step, >= 0.
        weight_decay: L2 penalty coefficient added to the gradient, >= 0.
        initial_accumulator_value: starting value of the squared-gradient sum, >= 0.
        eps: added to sqrt(sum) in the denominator, >= 0.
    """

    _STATE_NAMES = ("sum",)

    def __init__(self, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10):
        super().__init__(lr)
        self.lr_decay = _non_negative("lr_decay", lr_decay)
        self.weight_decay = _non_negative("weight_decay", weight_decay)
        self.initial_accumulator_value = _non_negative("initial_accumulator_value",
                                                       initial_accumulator_value)
        self.eps = _non_negative("eps", eps)

    def get_config(self):
        return dict(lr=self.lr, lr_decay=self.lr_decay, weight_decay=self.weight_decay,
                    initial_accumulator_value=self.initial_accumulator_value, eps=self.eps)

    def _init_state(self, param):
        return {"step": 0, "sum": np.full(param.shape, self.initial_accumulator_value, param.dtype)}

    def _coefficients(self, t):
        clr = self.lr / (1.0 + (t - 1) * self.lr_decay)
        return clr, self.weight_decay, self.eps

    def _update(self, param, grad, state, scalars):
        state_sum = self._buffer(state, "sum", param, self.initial_accumulator_value)
        _kernels.adagrad_update(param.reshape(-1), grad.reshape(-1), state_sum, *scalars)

    def _kernel_arguments(self, param, state):
        empty = _EMPTY[param.dtype]
        state_sum = self._buffer(state, "sum", param, self.initial_accumulator_value)
        return _kernels.ADAGRAD, state_sum, empty, empty, False, False


class RMSProp(Optimizer):
    """RMSprop, optionally centered and with momentum (torch.optim.RMSprop).

    g = grad + weight_decay * p; v = alpha * v + (1 - alpha) * g^2; centered: a = alpha * a +
    (1 - alpha) * g and avg = sqrt(v - a^2) + eps, else avg = sqrt(v) + eps; momentum > 0:
    b = momentum * b + g / avg and p = p - lr * b, else p = p - lr * g / avg.
    State: "square_avg", "grad_avg" (centered), "momentum_buffer" (momentum > 0), all from zero.

    Args:
        lr: learning rate, >= 0.
        alpha: smoothing constant of the averages, in [0, 1).
        eps: added to the square root in the denominator, >= 0.
        weight_decay: L2 penalty coefficient added to the gradient, >= 0.
        momentum: momentum factor, >= 0.
        centered: normalise by the estimated variance instead of the second moment.
    """

    _STATE_NAMES = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(lr)
        self.alpha = _in_interval("alpha", alpha, 0.0, 1.0)
        self.eps = _non_negative("eps", eps)
        self.weight_decay = _non_negative("weight_decay", weight_decay)
        self.momentum = _non_negative("momentum", momentum)
        self.centered = _flag("centered", centered)

    def get_config(self):
        return dict(lr=self.lr, alpha=self.alpha, eps=self.eps, weight_decay=self.weight_decay,
                    momentum=self.momentum, centered=self.centered)

    def _coefficients(self, t):
        return (self.lr, self.alpha, 1.0 - self.alpha, self.eps, self.weight_decay,
                self.momentum)

    def _update(self, param, grad, state, scalars):
        empty = _EMPTY[param.dtype]
        square_avg = self._buffer(state, "square_avg", param)
        grad_avg = self._buffer(state, "grad_avg", param) if self.centered else empty
        buffer = self._buffer(state, "momentum_buffer", param) if self.momentum > 0.0 else empty
        _kernels.rmsprop_update(param.reshape(-1), grad.reshape(-1), square_avg, grad_avg, buffer,
                                *scalars, self.centered)

    def _kernel_arguments(self, param, state):
        empty = _EMPTY[param.dtype]
        square_avg = self._buffer(state, "square_avg", param)
        grad_avg = self._buffer(state, "grad_avg", param) if self.centered else empty
        buffer = self._buffer(state, "momentum_buffer", param) if self.momentum > 0.0 else empty
        return _kernels.RMSPROP, square_avg, grad_avg, buffer, self.centered, False


RMSprop = RMSProp


class Adam(Optimizer):
    """Adam with bias correction, optional AMSGrad and L2 weight decay (torch.optim.Adam).

    At the key's step t (from 1): g = grad + weight_decay * p; m = beta1 * m + (1 - beta1) * g;
    v = beta2 * v + (1 - beta2) * g^2; (amsgrad: v_max = max(v_max, v), used in place of v);
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps), i.e.
    p - lr * m_hat / (sqrt(v_hat) + eps). State: "exp_avg", "exp_avg_sq", "max_exp_avg_sq"
    (amsgrad), all from zero.

    Args:
        lr: learning rate, >= 0.
        betas: (beta1, beta2), each in [0, 1).
        eps: added to the bias-corrected square root in the denominator, >= 0.
        weight_decay: L2 penalty added to the gradient (AdamW: decoupled decay), >= 0.
        amsgrad: use the running maximum of the second moment.
    """

    _STATE_NAMES = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _DECOUPLED = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(lr)
        beta1, beta2 = _pair("betas", betas)
        self.betas = (_in_interval("betas[0]", beta1, 0.0, 1.0),
                      _in_interval("betas[1]", beta2, 0.0, 1.0))
        self.eps = _non_negative("eps", eps)
        self.weight_decay = _non_negative("weight_decay", weight_decay)
        self.amsgrad = _flag("amsgrad", amsgrad)

    def get_config(self):
        return dict(lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay,
                    amsgrad=self.amsgrad)

    def _coefficients(self, t):
        beta1, beta2 = self.betas
        step_size = self.lr / (1.0 - beta1 ** t)
        bias_correction2_sqrt = math.sqrt(1.0 - beta2 ** t)
        if self._DECOUPLED:
            weight_decay, param_decay = 0.0, 1.0 - self.lr * self.weight_decay
        else:
            weight_decay, param_decay = self.weight_decay, 1.0
        return (beta1, 1.0 - beta1, beta2, 1.0 - beta2, step_size, bias_correction2_sqrt,
                self.eps, weight_decay, param_decay)

    def _update(self, param, grad, state, scalars):
        exp_avg = self._buffer(state, "exp_avg", param)
        exp_avg_sq = self._buffer(state, "exp_avg_sq", param)
        max_exp_avg_sq = (self._buffer(state, "max_exp_avg_sq", param) if self.amsgrad
                          else _EMPTY[param.dtype])
        _kernels.adam_update(param.reshape(-1), grad.reshape(-1), exp_avg, exp_avg_sq,
                             max_exp_avg_sq, *scalars, self.amsgrad)

    def _kernel_arguments(self, param, state):
        exp_avg = self._buffer(state, "exp_avg", param)
        exp_avg_sq = self._buffer(state, "exp_avg_sq", param)
        max_exp_avg_sq = (self._buffer(state, "max_exp_avg_sq", param) if self.amsgrad
                          else _EMPTY[param.dtype])
        return _kernels.ADAM, exp_avg, exp_avg_sq, max_exp_avg_sq, self.amsgrad, False


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW).

    Before the Adam step (with no L2 term in the gradient): p = p * (1 - lr * weight_decay).
    Same arguments, state and formula as ``Adam``; weight_decay defaults to 1e-2.
    """

    _DECOUPLED = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


class Rprop(Optimizer):
    """Resilient backpropagation (torch.optim.Rprop's implementation).

    Per element, with s = grad * prev: s > 0 multiplies the step size by eta_plus, s < 0 by
    eta_minus and zeroes the gradient (no move this step); the step size is clamped to
    step_sizes; p = p - sign(g) * step_size; prev = g. State: "prev" (from zero) and
    "step_size" (from lr: later changes of lr do not affect existing state, as in torch).

    Args:
        lr: initial step size, >= 0.
        etas: (eta_minus, eta_plus) with 0 < eta_minus < 1 < eta_plus.
        step_sizes: (min, max) bounds of the step size with 0 < min <= max.
    """

    _STATE_NAMES = ("prev", "step_size")

    def __init__(self, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0)):
        super().__init__(lr)
        eta_minus, eta_plus = _pair("etas", etas)
        if not 0.0 < eta_minus < 1.0 < eta_plus:
            raise ValueError(f"etas must satisfy 0 < etas[0] < 1 < etas[1], got {etas!r}")
        low, high = _pair("step_sizes", step_sizes)
        if not 0.0 < low <= high:
            raise ValueError(f"step_sizes must satisfy 0 < step_sizes[0] <= step_sizes[1], "
                             f"got {step_sizes!r}")
        self.etas = (eta_minus, eta_plus)
        self.step_sizes = (low, high)

    def get_config(self):
        return dict(lr=self.lr, etas=self.etas, step_sizes=self.step_sizes)

    def _init_state(self, param):
        return {"step": 0, "prev": np.zeros(param.shape, param.dtype),
                "step_size": np.full(param.shape, self.lr, param.dtype)}

    def _coefficients(self, t):
        return self.etas + self.step_sizes

    def _update(self, param, grad, state, scalars):
        prev = self._buffer(state, "prev", param)
        step_size = self._buffer(state, "step_size", param, self.lr)
        _kernels.rprop_update(param.reshape(-1), grad.reshape(-1), prev, step_size, *scalars)

    def _kernel_arguments(self, param, state):
        prev = self._buffer(state, "prev", param)
        step_size = self._buffer(state, "step_size", param, self.lr)
        return _kernels.RPROP, prev, step_size, _EMPTY[param.dtype], False, False


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adagrad, RMSProp, Adam, AdamW, Rprop)}
"""Class name -> optimizer class (the names ``state_dict()["class"]`` uses)."""


def get_optimizer(name, **hyper):
    """An optimizer from its case-insensitive class name: ``get_optimizer("adam", lr=1e-3)``."""
    lookup = {key.lower(): cls for key, cls in OPTIMIZERS.items()}
    cls = lookup.get(str(name).lower())
    if cls is None:
        raise ValueError(f"name must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return cls(**hyper)
