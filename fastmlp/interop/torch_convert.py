"""Conversion between ``torch.nn.Sequential`` and :class:`fastmlp.MLP`, with the same
evaluation-mode outputs.

A fastmlp layer is one group of modules, in this order:

    Linear → [BatchNorm1d] → [activation] → [Dropout]

- ``Linear(in, out)``: weight (out, in) is W transposed (fastmlp's W is (in, out)); bias → b
  (zeros for ``bias=False``).
- ``BatchNorm1d(out)``: weight → γ, bias → β (1 and 0 for ``affine=False``), running_mean and
  running_var are copied. It must track running statistics (they are what evaluation uses) and
  have eps = 1e-5, fastmlp's. Its momentum only matters for further training: the MLP updates the
  running statistics with momentum 0.1 (torch's default) whatever the module's was.
- activations: ``ReLU``, ``LeakyReLU(negative_slope)`` → leaky_relu with alpha = negative_slope,
  ``ELU(alpha)``, ``Sigmoid``, ``Tanh``, ``GELU()`` (exact erf form; ``approximate="tanh"`` is
  refused), ``Softplus()`` with beta = 1. torch's Softplus returns x itself where x > threshold
  (20 by default) instead of x + log1p(e^-x); the two differ by less than e^-20 ≈ 2.1e-9, below
  float32 resolution at such x and a relative 1e-10 in float64, so thresholds ≥ 20 are accepted
  and smaller ones refused.
- ``Dropout(p)`` → dropout p (identity in evaluation).
- ``Identity`` and ``Flatten(start_dim=1, end_dim=-1)`` are dropped: on the (n, features) rows an
  MLP takes they change nothing. Nested ``Sequential`` modules are read in order.

The MLP's dtype is that of the module's parameters (float32 or float64) unless ``dtype`` says
otherwise; its loss is the caller's choice (torch modules do not carry one). ``to_torch`` builds
the module back in evaluation mode. maxout has no torch.nn module and is refused; a stored
Standardizer is not part of the module (apply ``model.standardizer.transform`` to its inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..engines.layout import BN_EPS, BN_MOMENTUM
from ..layers import Dense
from ..model import MLP
from ._optional import require

# torch.nn's Softplus returns x above this threshold; the exact value differs by < e^-20
_MIN_SOFTPLUS_THRESHOLD = 20.0
_SUPPORTED = ("Linear", "BatchNorm1d", "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Softplus",
              "GELU", "Dropout", "Identity", "Flatten", "Sequential")
_STAGES = {"batchnorm": 1, "activation": 2, "dropout": 3}
_STAGE_NAMES = {0: "Linear", 1: "BatchNorm1d", 2: "an activation", 3: "Dropout"}


@dataclass
class _LayerModules:
    """The torch modules that make one fastmlp Dense layer."""
    linear: object
    batchnorm: Optional[object] = None
    activation: str = "linear"
    alpha: Optional[float] = None
    dropout: float = 0.0
    stage: int = 0  # the last part seen: 0 Linear, 1 BatchNorm1d, 2 activation, 3 Dropout


def _flatten(nn, module, prefix=""):
    """[(index path, module)] of a Sequential, nested Sequentials expanded in order."""
    out = []
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            out.extend(_flatten(nn, child, f"{path}."))
        else:
            out.append((path, child))
    return out


def _activation(nn, where, child):
    """(activation name, alpha) of a torch activation module, or None if it is not one."""
    if type(child) is nn.ReLU:
        return "relu", None
    if type(child) is nn.LeakyReLU:
        return "leaky_relu", float(child.negative_slope)
    if type(child) is nn.ELU:
        return "elu", float(child.alpha)
    if type(child) is nn.Sigmoid:
        return "sigmoid", None
    if type(child) is nn.Tanh:
        return "tanh", None
    if type(child) is nn.GELU:
        if child.approximate != "none":
            raise ValueError(f"{where} is GELU(approximate={child.approximate!r}); fastmlp's gelu "
                             f"is the exact erf form, GELU(approximate='none')")
        return "gelu", None
    if type(child) is nn.Softplus:
        if float(child.beta) != 1.0:
            raise ValueError(f"{where} is Softplus(beta={child.beta}); fastmlp's softplus has "
                             f"beta = 1")
        if float(child.threshold) < _MIN_SOFTPLUS_THRESHOLD:
            raise ValueError(f"{where} is Softplus(threshold={child.threshold}): it returns x "
                             f"above the threshold, which fastmlp's exact softplus does not; "
                             f"thresholds >= {_MIN_SOFTPLUS_THRESHOLD:g} are converted")
        return "softplus", None
    return None


def _unsupported(where, child):
    name = type(child).__name__
    hint = ""
    if name in ("Softmax", "LogSoftmax"):
        hint = ("; fastmlp's losses take the raw outputs (logits): drop the final " + name +
                " and use loss='cross_entropy' (predict_proba gives the softmax)")
    return TypeError(f"{where} is a {type(child).__module__}.{name}, which from_torch does not "
                     f"convert (supported: {', '.join(_SUPPORTED)}){hint}")


def _check_batchnorm(where, bn, units):
    if bn.num_features != units:
        raise ValueError(f"{where} is BatchNorm1d({bn.num_features}) after a Linear layer with "
                         f"{units} outputs")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{where} is a BatchNorm1d without running statistics "
                         f"(track_running_stats=False); fastmlp's evaluation uses them")
    if float(bn.eps) != BN_EPS:
        raise ValueError(f"{where} is a BatchNorm1d with eps={bn.eps}; fastmlp's batchnorm uses "
                         f"eps={BN_EPS}")


def _group_layers(nn, entries):
    """Split the flattened modules into one _LayerModules per Linear, checking the order."""
    layers = []
    for path, child in entries:
        where = f"module {path} ({type(child).__name__})"
        if type(child) is nn.Identity:
            continue
        if type(child) is nn.Flatten:
            if (child.start_dim, child.end_dim) != (1, -1):
                raise ValueError(f"{where} is Flatten(start_dim={child.start_dim}, "
                                 f"end_dim={child.end_dim}); only Flatten() is converted")
            continue
        if type(child) is nn.Linear:
            if layers and child.in_features != layers[-1].linear.out_features:
                raise ValueError(f"{where} takes {child.in_features} inputs, but the layer before "
                                 f"gives {layers[-1].linear.out_features}")
            layers.append(_LayerModules(child))
            continue
        if type(child) is nn.BatchNorm1d:
            kind, activation = "batchnorm", None
        elif type(child) is nn.Dropout:
            kind, activation = "dropout", None
        else:
            activation = _activation(nn, where, child)
            if activation is None:
                raise _unsupported(where, child)
            kind = "activation"
        if not layers:
            raise ValueError(f"{where} comes before the first Linear; a layer is Linear → "
                             f"[BatchNorm1d] → [activation] → [Dropout]")
        layer = layers[-1]
        if _STAGES[kind] <= layer.stage:
            raise ValueError(f"{where} follows {_STAGE_NAMES[layer.stage]} in the same layer; a "
                             f"layer is Linear → [BatchNorm1d] → [activation] → [Dropout]")
        layer.stage = _STAGES[kind]
        if kind == "batchnorm":
            _check_batchnorm(where, child, layer.linear.out_features)
            layer.batchnorm = child
        elif kind == "dropout":
            layer.dropout = float(child.p)
        else:
            layer.activation, layer.alpha = activation
    if not layers:
        raise ValueError("the Sequential has no Linear layer")
    return layers


def _module_dtype(torch, module):
    """'float32' or 'float64': the one floating dtype of the module's parameters and buffers."""
    names = {torch.float32: "float32", torch.float64: "float64"}
    found = {t.dtype for t in list(module.parameters()) + list(module.buffers())
             if t.is_floating_point()}
    if len(found) == 1 and next(iter(found)) in names:
        return names[next(iter(found))]
    listed = ", ".join(sorted(str(d) for d in found)) or "none"
    raise ValueError(f"the module's floating parameters have dtype(s) {listed}; pass "
                     f"dtype='float32' or dtype='float64' to convert them")


def _numpy(tensor):
    return tensor.detach().to("cpu").double().numpy()


def from_torch(module, loss="cross_entropy", dtype=None, seed=0, model_class=None):
    """An MLP with the layers, weights and running statistics of ``module``.

    Parameters
    ----------
    module : torch.nn.Sequential
        Linear, BatchNorm1d, activation and Dropout modules as in the module docstring.
    loss : str
        The MLP's loss (``cross_entropy`` by default; see :class:`fastmlp.MLP`).
    dtype : str, optional
        ``float32`` or ``float64``; default: the dtype of the module's parameters.
    seed : int
        The MLP's seed (it chooses the dropout masks of further training).
    model_class : type, optional
        The class to build, :class:`fastmlp.MLP` (default) or a subclass.

    Returns the MLP; ``model.forward(X)`` equals ``module.eval()(X)`` for (n, in_features) X.
    TypeError names an unsupported module; ValueError a module in the wrong place or with
    settings fastmlp does not have.
    """
    torch = require("torch", "MLP.from_torch")
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"module must be a torch.nn.Sequential; got {type(module).__name__}")
    layers = _group_layers(torch.nn, _flatten(torch.nn, module))
    dtype = _module_dtype(torch, module) if dtype is None else dtype
    dense = [Dense(layer.linear.out_features, layer.activation,
                   batchnorm=layer.batchnorm is not None, dropout=layer.dropout, alpha=layer.alpha)
             for layer in layers]
    model = (model_class or MLP)(layers[0].linear.in_features, dense, loss=loss, dtype=dtype,
                                 seed=seed)
    for index, layer in enumerate(layers):
        model.params[f"{index}.W"] = _numpy(layer.linear.weight).T
        if layer.linear.bias is not None:
            model.params[f"{index}.b"] = _numpy(layer.linear.bias)
        bn = layer.batchnorm
        if bn is not None:
            if bn.affine:
                model.params[f"{index}.gamma"] = _numpy(bn.weight)
                model.params[f"{index}.beta"] = _numpy(bn.bias)
            model.buffers[f"{index}.running_mean"] = _numpy(bn.running_mean)
            model.buffers[f"{index}.running_var"] = _numpy(bn.running_var)
    return model


_TORCH_ACTIVATIONS = {
    "sigmoid": lambda nn, layer: nn.Sigmoid(),
    "tanh": lambda nn, layer: nn.Tanh(),
    "relu": lambda nn, layer: nn.ReLU(),
    "leaky_relu": lambda nn, layer: nn.LeakyReLU(layer.alpha),
    "elu": lambda nn, layer: nn.ELU(layer.alpha),
    "softplus": lambda nn, layer: nn.Softplus(),
    "gelu": lambda nn, layer: nn.GELU(),
}


def to_torch(model):
    """A ``torch.nn.Sequential`` in evaluation mode computing ``model.forward``: per layer Linear,
    BatchNorm1d (eps 1e-5, momentum 0.1) when the layer has batchnorm, the activation module
    (none for linear) and Dropout(p) when p > 0; parameters in the model's dtype, on the CPU.
    ValueError for maxout layers, which torch.nn has no module for."""
    torch = require("torch", "MLP.to_torch")
    nn = torch.nn
    for index, layer in enumerate(model.layers):
        if layer.activation == "maxout":
            raise ValueError(f"layer {index} uses maxout, which has no torch.nn module; to_torch "
                             f"converts {', '.join(['linear'] + list(_TORCH_ACTIVATIONS))}")
    dtype = {"float32": torch.float32, "float64": torch.float64}[model.dtype.name]

    def tensor(array):
        return torch.tensor(np.array(array), dtype=dtype)

    modules = []
    fan_in = model.input_dim
    with torch.no_grad():
        for index, layer in enumerate(model.layers):
            linear = nn.Linear(fan_in, layer.units, dtype=dtype)
            linear.weight.copy_(tensor(model.params[f"{index}.W"].T))
            linear.bias.copy_(tensor(model.params[f"{index}.b"]))
            modules.append(linear)
            if layer.batchnorm:
                bn = nn.BatchNorm1d(layer.units, eps=BN_EPS, momentum=BN_MOMENTUM, dtype=dtype)
                bn.weight.copy_(tensor(model.params[f"{index}.gamma"]))
                bn.bias.copy_(tensor(model.params[f"{index}.beta"]))
                bn.running_mean.copy_(tensor(model.buffers[f"{index}.running_mean"]))
                bn.running_var.copy_(tensor(model.buffers[f"{index}.running_var"]))
                modules.append(bn)
            if layer.activation != "linear":
                modules.append(_TORCH_ACTIVATIONS[layer.activation](nn, layer))
            if layer.dropout > 0.0:
                modules.append(nn.Dropout(layer.dropout))
            fan_in = layer.units
    return nn.Sequential(*modules).eval()
