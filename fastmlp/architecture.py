"""The architecture of an :class:`fastmlp.MLP` checked without building it: the constructor's
arguments, the configuration a model file stores, and the state arrays that configuration needs
(their names, shapes and dtypes), so that files are checked before anything is allocated."""

from __future__ import annotations

import numpy as np

from ._validation import (
    MAX_SEED,
    MIXED_BFLOAT16,
    check_network_size,
    check_seed,
    check_size,
    dtype_policy,
    resolve_dtype,
)
from .engines import DEVICES
from .engines.layout import build_layout
from .initializers import INITS
from .io import FileFormatError, config_error
from .layers import Dense
from .losses import LABEL_LOSSES, check_loss_name


def checked_arguments(input_dim, layers, loss="cross_entropy", dtype="float32", device="cpu",
                      init="auto", seed=0):
    """:class:`fastmlp.MLP`'s constructor arguments validated, without allocating anything: a
    dict of them (``layers`` as fresh Dense copies, ``seed`` drawn when None) plus ``layout``, the
    :class:`~fastmlp.engines.layout.NetworkLayout`. Raises TypeError/ValueError naming the
    argument; sizes are held to the limits of ``fastmlp._validation`` (MAX_SIZE, MAX_SEED,
    MAX_PARAMS)."""
    input_dim = check_size(input_dim, "input_dim")
    if isinstance(layers, Dense) or not isinstance(layers, (list, tuple)):
        raise TypeError("layers must be a list of fastmlp.Dense")
    if not layers:
        raise ValueError("layers must contain at least one Dense layer")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Dense):
            raise TypeError(f"layers[{i}] must be a fastmlp.Dense; got {type(layer).__name__}")
    layers = [Dense.from_config(layer.get_config()) for layer in layers]
    loss = check_loss_name(loss)
    dtype = dtype_policy(dtype)
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device must be 'cpu' or 'cuda'; got {device!r}")
    if dtype == MIXED_BFLOAT16 and device != "cpu":
        raise ValueError("dtype 'mixed_bfloat16' runs on the CPU only (device='cpu'); on a GPU "
                         "use 'float32'")
    if not isinstance(init, str) or init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}; got {init!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (MAX_SEED + 1))
    seed = check_seed(seed)
    if loss in LABEL_LOSSES and layers[-1].units < 2:
        raise ValueError(f"loss {loss!r} needs a last layer with at least 2 units (one per "
                         f"class); got {layers[-1].units}")
    check_network_size(input_dim, layers)
    return {"input_dim": input_dim, "layers": layers, "loss": loss, "dtype": dtype,
            "device": device, "init": init, "seed": seed,
            "layout": build_layout(input_dim, layers)}


def file_config(config, source, field, device=None):
    """Constructor arguments from a file's ``field`` (a dict like
    :meth:`fastmlp.MLP.get_config`), checked by :func:`checked_arguments` (nothing allocated);
    FileFormatError naming the field otherwise. ``device`` (not None) replaces the stored
    device."""
    if not isinstance(config, dict):
        raise config_error(source, field, "a JSON object (dict)", config)
    config = dict(config)
    layers = config.get("layers")
    if not isinstance(layers, list):
        raise config_error(source, f"{field}.layers", "a list of layer configs", layers)
    dense = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise config_error(source, f"{field}.layers[{i}]", "a JSON object (dict)", layer)
        try:
            dense.append(Dense.from_config(layer))
        except (TypeError, ValueError) as exc:
            raise FileFormatError(f"{source} has an invalid architecture in metadata field "
                                  f"'{field}.layers[{i}]': {exc}") from None
    config["layers"] = dense
    if device is not None:
        config["device"] = device
    try:
        checked = checked_arguments(**config)
    except (TypeError, ValueError) as exc:
        raise FileFormatError(f"{source} has an invalid architecture in metadata field "
                              f"{field!r}: {exc}") from None
    checked.pop("layout")
    return checked


def expected_state_arrays(config):
    """{"params/0.W": ((in, out), dtype), …, "buffers/…": …}: what
    :meth:`fastmlp.MLP.state_arrays` of a model built from the checked ``config`` holds, computed
    without building it."""
    layout = build_layout(config["input_dim"], config["layers"])
    dtype = resolve_dtype(config["dtype"])
    expected = {f"params/{slot.key}": (slot.shape, dtype) for slot in layout.param_slots}
    expected.update({f"buffers/{slot.key}": (slot.shape, dtype)
                     for slot in layout.buffer_slots})
    return expected
