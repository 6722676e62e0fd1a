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

from ._validation import MAX_STEP, check_state_values
from .kernels.contract import ADAGRAD, ADAM, N_COEFFICIENTS, RMSPROP, RPROP, SGD
from .kernels.cpu import optimizers as _kernels

__all__ = [
    "Optimizer", "SGD", "Adagrad", "RMSProp", "RMSprop", "Adam", "AdamW", "Rprop",
    "OPTIMIZERS", "get_optimizer",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_LARGEST = {np.dtype(t): float(np.finfo(t).max) for t in (np.float32, np.float64)}
_EMPTY = {dtype: np.empty(0, dtype) for dtype in _FLOAT_DTYPES}
_STATE_PREFIX = "state/"
# state arrays that hold sums of squares or step sizes: negative values are never valid
NON_NEGATIVE_STATES = frozenset({"sum", "square_avg", "exp_avg_sq", "max_exp_avg_sq", "step_size"})


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
    """Base class: per-key lazy state, one update path, ``state_dict`` and config round trips.

    Subclasses define ``_CODE`` (the kernel's optimizer code), ``STATE_NAMES`` (the torch names
    of their state arrays), ``get_config``, ``_kernel_states()`` (the state names the kernel reads
    as s0, s1, s2 in the current configuration, None where it reads nothing),
    ``_coefficients(t)`` (the kernel's scalars at step t, computed in float64 and cast to the
    parameter's dtype) and, where they differ from the defaults, ``_fill(name)`` (a state array's
    initial value), ``_flag()`` and ``_creates_buffer(state)``.

    Every update, by :meth:`step` or by the Trainer's compiled epoch, is the kernel
    ``optimizer_update`` on state kept per parameter key in ``self.state[key]``: a dict with
    ``"step"`` (the key's update count t) and its arrays. For a model the Trainer lays those
    arrays out end to end (:meth:`kernel_state`), so each key's arrays are views of one flat array
    per state name and a whole epoch updates them in one call.
    """

    _CODE = -1
    STATE_NAMES = ()

    def __init__(self, lr):
        self.lr = lr
        self.state = {}
        self._flat = {}  # state name -> the flat array the model's per-key arrays are views of

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

    # -- what subclasses describe

    def _kernel_states(self):
        """(name or None, name or None, name or None): the state arrays s0, s1, s2."""
        raise NotImplementedError

    def _coefficients(self, t):
        """The kernel's scalar arguments at step t (from 1), as Python floats (float64 math)."""
        raise NotImplementedError

    def _fill(self, name):
        """Initial value of state array ``name``."""
        return 0.0

    def _flag(self):
        """The kernel's flag: nesterov (SGD), centered (RMSprop), amsgrad (Adam); else False."""
        return False

    def _creates_buffer(self, state):
        """Whether the next update creates its buffer from the gradient (SGD's momentum)."""
        return False

    # -- stepping

    def step(self, params, grads):
        """Update every array of ``params`` in place from the same-key array of ``grads``.

        params, grads: dicts str -> ndarray with equal keys; each pair has one shape and one dtype
        (float32 or float64) and is C-contiguous. State for a key is created on its first step.
        Raises TypeError/ValueError naming the argument and key before anything is updated.
        """
        _check_pairs(params, grads)
        states = [self._state_for(key, param) for key, param in params.items()]
        for (key, param), state in zip(params.items(), states):
            init = self._creates_buffer(state)
            arrays = [self._buffer(state, name, param) if name else _EMPTY[param.dtype]
                      for name in self._kernel_states()]
            row = self._coefficient_row(state["step"] + 1, param.dtype)
            _kernels.optimizer_update(self._CODE, param.reshape(-1), grads[key].reshape(-1),
                                      *arrays, row, self._flag(), init)
            state["step"] += 1

    def _coefficient_row(self, t, dtype):
        """The kernel's scalars at step t cast to ``dtype`` (N_COEFFICIENTS,); see
        :meth:`_coefficient_rows`."""
        return self._coefficient_rows(t, 1, dtype)[0]

    def _coefficient_rows(self, t, steps, dtype):
        """(steps, N_COEFFICIENTS) kernel scalars of steps t, t+1, …: :meth:`_coefficients` in
        float64, each value rounded once to ``dtype`` (unused columns 0). ValueError when one of
        them (the learning rate, typically) does not fit in ``dtype``."""
        dtype = np.dtype(dtype)
        table = np.zeros((steps, N_COEFFICIENTS), dtype=np.float64)
        if steps == 0:
            return table.astype(dtype)
        rows = [self._coefficients(step) for step in range(t, t + steps)]
        values = np.array(rows, dtype=np.float64)
        table[:, :values.shape[1]] = values
        largest = _LARGEST[dtype]
        too_large = np.flatnonzero(~(np.abs(values) <= largest).all(axis=1))  # NaN too
        if too_large.size:
            k = int(too_large[0])
            raise ValueError(
                f"{self!r}: at step {t + k} its update scalars {tuple(rows[k])} do not fit in "
                f"{dtype.name} (largest {largest:.4g}); use a smaller lr (or a float64 model)")
        return table.astype(dtype)

    def _state_for(self, key, param):
        """The state of ``key``, created if absent; checked against ``param``'s shape and dtype."""
        state = self.state.get(key)
        if state is None:
            state = self.state[key] = {"step": 0}
            return state
        for name, value in state.items():
            if name != "step" and (value.shape != param.shape or value.dtype != param.dtype):
                raise ValueError(
                    f"optimizer state {name!r} of key {key!r} has shape {value.shape} and dtype "
                    f"{value.dtype}, params[{key!r}] has shape {param.shape} and dtype "
                    f"{param.dtype}")
        return state

    def _buffer(self, state, name, like):
        """The flat view of state[name], created with its initial value when missing."""
        array = state.get(name)
        if array is None:
            array = state[name] = np.full(like.shape, self._fill(name), like.dtype)
        return array.reshape(-1)

    # -- a whole model's state, for the compiled epoch

    def kernel_state(self, params):
        """(code, s0, s1, s2, flag, init_buffer) for updating all of ``params`` (ArrayViews of a
        model: views into one flat array, in layout order) in one kernel call.

        Each used state array is one flat array (P,) whose slices are the per-key arrays of
        ``self.state`` (created if missing, copied in once if they were separate arrays), so
        :meth:`step`, :meth:`state_dict` and the compiled epoch see the same numbers. Raises
        ValueError when the keys' step counts differ (then they cannot share one update)."""
        first = next(iter(params.values()))
        total = sum(v.size for v in params.values())
        states = [self._state_for(key, value) for key, value in params.items()]
        if len({state["step"] for state in states}) > 1:
            raise ValueError("the optimizer has taken different numbers of steps for the model's "
                             "parameters; use a fresh optimizer (or the same one for all of them)")
        creates = {self._creates_buffer(state) for state in states}
        if len(creates) > 1:
            raise ValueError("the optimizer has a momentum buffer for some of the model's "
                             "parameters only; use a fresh optimizer")
        arrays = [self._flat_state(name, params, states, total, first.dtype) if name
                  else _EMPTY[first.dtype] for name in self._kernel_states()]
        return (self._CODE, *arrays, self._flag(), creates.pop())

    def kernel_state_names(self):
        """The names of the state arrays :meth:`kernel_state` returns as s0, s1, s2 ("" where the
        current configuration uses none)."""
        return tuple(name or "" for name in self._kernel_states())

    def _flat_state(self, name, params, states, total, dtype):
        flat = self._flat.get(name)
        if (flat is not None and flat.shape == (total,) and flat.dtype == dtype
                and all(state.get(name) is not None and state[name].base is flat
                        for state in states)):
            return flat
        flat = np.empty(total, dtype=dtype)
        offset = 0
        for (key, value), state in zip(params.items(), states):
            part = flat[offset:offset + value.size]
            old = state.get(name)
            part[...] = self._fill(name) if old is None else old.reshape(-1)
            state[name] = part.reshape(value.shape)
            offset += value.size
        self._flat[name] = flat
        return flat

    def coefficient_table(self, keys, steps, dtype):
        """(steps, N_COEFFICIENTS) kernel scalars for the next ``steps`` updates of ``keys`` (which
        share one step count), cast to ``dtype`` exactly as :meth:`step` casts them."""
        keys = list(keys)
        t0 = self.state[keys[0]]["step"] if keys and keys[0] in self.state else 0
        return self._coefficient_rows(t0 + 1, steps, dtype)

    def advance(self, keys, steps):
        """Count ``steps`` updates of ``keys`` done by a compiled epoch."""
        for key in keys:
            self.state[key]["step"] += steps

    def split_flat_state(self, key, slots):
        """Replace the state of ``key`` holding flat arrays (as checkpoints of format 1 stored a
        model's state, under "params") by the per-parameter state of ``slots`` (key, offset,
        shape), views of those arrays."""
        flat = self.state.pop(key)
        for slot in slots:
            state = {"step": flat["step"]}
            for name, value in flat.items():
                if name != "step":
                    state[name] = value[slot.offset:slot.offset + slot.size].reshape(slot.shape)
            self.state[slot.key] = state

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
        if item != "step" and item not in self.STATE_NAMES:
            raise ValueError(f"state_dict entry {entry!r}: {type(self).__name__} has no state "
                             f"{item!r} (expected one of {('step',) + self.STATE_NAMES})")
        return key, item

    @staticmethod
    def _parse_value(entry, item, value):
        if item == "step":
            step = np.asarray(value)
            if step.ndim != 0 or step.dtype.kind not in "iu" or not 0 <= int(step) <= MAX_STEP:
                raise ValueError(f"state_dict entry {entry!r} must be an integer in [0, 2**62], "
                                 f"got {value!r}")
            return int(step)
        array = np.array(value, copy=True, order="C")
        if array.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"state_dict entry {entry!r} must be float32 or float64, "
                            f"got {array.dtype}")
        return check_state_values(array, f"state_dict entry {entry!r}",
                                  non_negative=item in NON_NEGATIVE_STATES)


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

    _CODE = SGD
    STATE_NAMES = ("momentum_buffer",)

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

    def _kernel_states(self):
        return ("momentum_buffer" if self.momentum != 0.0 else None, None, None)

    def _flag(self):
        return self.nesterov

    def _creates_buffer(self, state):
        return self.momentum != 0.0 and "momentum_buffer" not in state


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

    _CODE = ADAGRAD
    STATE_NAMES = ("sum",)

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

    def _kernel_states(self):
        return ("sum", None, None)

    def _fill(self, name):
        return self.initial_accumulator_value

    def _coefficients(self, t):
        clr = self.lr / (1.0 + (t - 1) * self.lr_decay)
        return clr, self.weight_decay, self.eps



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

    _CODE = RMSPROP
    STATE_NAMES = ("square_avg", "grad_avg", "momentum_buffer")

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

    def _kernel_states(self):
        return ("square_avg", "grad_avg" if self.centered else None,
                "momentum_buffer" if self.momentum > 0.0 else None)

    def _flag(self):
        return self.centered


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

    _CODE = ADAM
    STATE_NAMES = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
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

    def _kernel_states(self):
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq" if self.amsgrad else None)

    def _flag(self):
        return self.amsgrad


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

    _CODE = RPROP
    STATE_NAMES = ("prev", "step_size")

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

    def _kernel_states(self):
        return ("prev", "step_size", None)

    def _fill(self, name):
        return self.lr if name == "step_size" else 0.0

    def _coefficients(self, t):
        return self.etas + self.step_sizes



OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adagrad, RMSProp, Adam, AdamW, Rprop)}
"""Class name -> optimizer class (the names ``state_dict()["class"]`` uses)."""


def get_optimizer(name, **hyper):
    """An optimizer from its case-insensitive class name: ``get_optimizer("adam", lr=1e-3)``."""
    lookup = {key.lower(): cls for key, cls in OPTIMIZERS.items()}
    cls = lookup.get(str(name).lower())
    if cls is None:
        raise ValueError(f"name must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return cls(**hyper)
