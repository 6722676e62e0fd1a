"""Checks of a training checkpoint file (:meth:`fastmlp.Trainer.load_checkpoint`), done before
anything is built: the metadata's fields (kinds, types, ranges), the stored arrays' names, shapes
and dtypes against those the metadata needs (from the array headers, before any array data is
read), and then the arrays' values. Every problem is a FileFormatError naming the field or array.
"""

from __future__ import annotations

import numbers

from ._validation import (
    check_real,
    check_seed,
    check_shuffle_state,
    check_size,
    check_state_values,
    check_step,
    resolve_dtype,
)
from .architecture import expected_state_arrays, file_config
from .engines.layout import build_layout, views
from .io import FileFormatError, check_arrays, config_error, meta_field, open_npz
from .model import check_model_state_values
from .optimizers import OPTIMIZERS
from .schedules import SCHEDULES

# the Trainer arguments a checkpoint stores, each with the check of its value
_TRAINER_FIELDS = {
    "batch_size": lambda v, name: check_size(v, name),
    "epochs": lambda v, name: check_step(v, name),
    "shuffle": lambda v, name: _check_bool(v, name),
    "seed": lambda v, name: check_seed(v, name),
    "l1": lambda v, name: check_real(v, name, minimum=0.0),
    "l2": lambda v, name: check_real(v, name, minimum=0.0),
    "clip_norm": lambda v, name: None if v is None else check_real(v, name, minimum=0.0),
    "progress": lambda v, name: _check_bool(v, name),
}


def _check_bool(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false; got {value!r}")
    return value


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class CheckedCheckpoint:
    """What a checkpoint file holds, every part checked: ``meta`` (the metadata, its fields of the
    right types), ``config`` (the model's constructor arguments), ``arrays`` (name → ndarray)."""

    def __init__(self, meta, config, arrays):
        self.meta, self.config, self.arrays = meta, config, arrays


def read_checkpoint(path, file_format, max_version):
    """A :class:`CheckedCheckpoint` of the file at ``path``; FileFormatError for any problem."""
    source = repr(str(path))
    with open_npz(path, file_format, max_version) as npz:
        meta = npz.meta
        config = file_config(meta_field(meta, "model.config", dict, source), source,
                                  "model.config")
        _check_fields(meta, source)
        layout = build_layout(config["input_dim"], config["layers"])
        required = expected_state_arrays(config)
        optional = _optimizer_arrays(meta, layout, resolve_dtype(config["dtype"]), source)
        early = _early_stopping_arrays(meta, layout)
        check_arrays(npz.headers, source, required, dict(optional, **early))
        stored = set(early) & set(npz.headers)
        if stored and stored != set(early):
            raise FileFormatError(f"{source} has {sorted(stored)} without "
                                  f"{sorted(set(early) - stored)}")
        arrays = npz.read_all()
    check_model_state_values(arrays, source)
    _check_early_stopping_values(arrays, layout, source)
    return CheckedCheckpoint(meta, config, arrays)


def _check_fields(meta, source):
    """FileFormatError naming the first metadata field of the wrong type or out of range."""
    _checked(source, "model.dropout_step", check_step,
             meta_field(meta, "model.dropout_step", int, source))
    trainer = meta_field(meta, "trainer", dict, source)
    unknown = sorted(set(trainer) - set(_TRAINER_FIELDS))
    if unknown:
        raise FileFormatError(f"{source}: metadata field 'trainer' has unknown entries {unknown}")
    for name, check in _TRAINER_FIELDS.items():
        if name in trainer:
            _checked(source, f"trainer.{name}", check, trainer[name])
    _check_optimizer_fields(meta, source)
    for section in ("schedule", "early_stopping"):
        value = meta_field(meta, section, (dict, type(None)), source)
        if value is not None:
            _check_hook_fields(meta, section, source)
    _checked(source, "epoch", check_step, meta_field(meta, "epoch", int, source))
    history = meta_field(meta, "history", dict, source)
    for key, values in history.items():
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            raise config_error(source, f"history.{key}", "a list of numbers", values)
    meta_field(meta, "stop_reason", (str, type(None)), source, "a string or null")
    _checked(source, "rng", check_shuffle_state, meta_field(meta, "rng", dict, source))


def _checked(source, field, check, value):
    """``check(value, field)``, its TypeError/ValueError turned into a FileFormatError."""
    try:
        return check(value, field)
    except (TypeError, ValueError) as exc:
        raise FileFormatError(f"{source}: metadata field {exc}") from None


def _check_optimizer_fields(meta, source):
    """The optimizer's class, hyper-parameters and step counters."""
    optimizer = meta_field(meta, "optimizer", dict, source)
    name = meta_field(meta, "optimizer.class", str, source)
    if name not in OPTIMIZERS:
        raise config_error(source, "optimizer.class", f"one of {', '.join(OPTIMIZERS)}", name)
    meta_field(meta, "optimizer.hyper", (str, dict), source, "a JSON string or object")
    for key, value in optimizer.items():  # keys hold parameter names such as "0.W"
        if key.startswith("state/"):
            _checked(source, f"optimizer.{key}", check_step, value)


def _check_hook_fields(meta, section, source):
    """The ``config`` and ``state`` objects (and the ``class``) of metadata field ``section``
    (the schedule or the early stopping)."""
    if section == "schedule":
        name = meta_field(meta, "schedule.class", str, source)
        if name not in SCHEDULES:
            raise config_error(source, "schedule.class", f"one of {', '.join(SCHEDULES)}", name)
    meta_field(meta, f"{section}.config", dict, source)
    state = meta_field(meta, f"{section}.state", dict, source)
    for key, item in state.items():
        if item is not None and not _is_number(item):
            raise config_error(source, f"{section}.state.{key}", "a number or null", item)


def _optimizer_arrays(meta, layout, dtype, source):
    """{"optimizer/state/<key>/<name>": (shape, dtype)} of every state array the checkpoint's
    optimizer may store (format 1 kept a model's state flat under the key "params")."""
    names = OPTIMIZERS[meta["optimizer"]["class"]].STATE_NAMES
    slots = [(slot.key, slot.shape) for slot in layout.param_slots]
    if meta["format_version"] == 1:
        slots.append(("params", (layout.n_params,)))
    return {f"optimizer/state/{key}/{name}": (shape, dtype) for key, shape in slots
            for name in names}


def _early_stopping_arrays(meta, layout):
    """The best weights an early-stopping checkpoint may store (both or neither)."""
    if meta["early_stopping"] is None:
        return {}
    return {"early_stopping/params": ((layout.n_params,), None),
            "early_stopping/buffers": ((layout.n_buffers,), None)}


def _check_early_stopping_values(arrays, layout, source):
    """The stored best weights obey the model's rules (finite, running variances >= 0)."""
    if "early_stopping/params" not in arrays:
        return
    check_state_values(arrays["early_stopping/params"], f"{source}: early_stopping/params",
                       error=FileFormatError)
    for key, value in views(arrays["early_stopping/buffers"], layout.buffer_slots).items():
        check_state_values(value, f"{source}: early_stopping/buffers ({key})",
                           non_negative=key.endswith(".running_var"), error=FileFormatError)
