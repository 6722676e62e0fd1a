"""Where every number of a network lives in its flat arrays.

A model keeps all parameters in one flat array (and all running statistics in another); the public
``params`` / ``buffers`` dicts hold views into them. This module builds the integer/float tables the
whole-network kernels read (see ``fastmlp.kernels.cpu.network``) and the workspace layout for a batch
size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..kernels import contract as net
from ..kernels.config import COL_ALIGN, MIN_SPLIT_MACS, ROW_ALIGN
from ..kernels.contract import ACTIVATION_CODES

BN_EPS = 1e-5
BN_MOMENTUM = 0.1


@dataclass(frozen=True)
class Slot:
    """One named array inside a flat buffer."""
    key: str
    offset: int
    shape: tuple

    @property
    def size(self):
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class NetworkLayout:
    layer_int: np.ndarray      # (L, N_LAYER_INT) int64
    layer_float: np.ndarray    # (L, N_LAYER_FLOAT) float64
    param_slots: tuple         # Slot per parameter, in the order "0.W", "0.b", "0.gamma", …
    buffer_slots: tuple        # Slot per running statistic
    n_params: int
    n_buffers: int
    macs_per_row: int          # multiply-adds of one row's forward products, Σ_l in_l · width_l


def build_layout(input_dim, layers):
    """Tables and slots for ``layers`` (a list of :class:`fastmlp.Dense`) fed ``input_dim`` features."""
    n_layers = len(layers)
    layer_int = np.zeros((n_layers, net.N_LAYER_INT), dtype=np.int64)
    layer_float = np.zeros((n_layers, net.N_LAYER_FLOAT), dtype=np.float64)
    params, buffers = [], []
    p_off = r_off = 0
    fan_in = input_dim
    for l, layer in enumerate(layers):
        width = layer.width
        row = layer_int[l]
        row[net.L_IN] = fan_in
        row[net.L_UNITS] = layer.units
        row[net.L_ACT] = ACTIVATION_CODES[layer.activation]
        row[net.L_PIECES] = layer.pieces
        row[net.L_BN] = int(layer.batchnorm)
        row[net.L_DROPOUT] = int(layer.dropout > 0.0)
        layer_float[l, net.F_ALPHA] = layer.alpha
        layer_float[l, net.F_DROP_P] = layer.dropout
        layer_float[l, net.F_BN_EPS] = BN_EPS
        layer_float[l, net.F_BN_MOMENTUM] = BN_MOMENTUM
        arrays = [(net.L_W, "W", (fan_in, width)), (net.L_B, "b", (width,))]
        statistics = []
        if layer.batchnorm:
            arrays += [(net.L_GAMMA, "gamma", (width,)), (net.L_BETA, "beta", (width,))]
            statistics = [(net.L_RMEAN, "running_mean"), (net.L_RVAR, "running_var")]
        for column, name, shape in arrays:
            row[column] = p_off
            params.append(Slot(f"{l}.{name}", p_off, shape))
            p_off += math.prod(shape)
        for column, name in statistics:
            row[column] = r_off
            buffers.append(Slot(f"{l}.{name}", r_off, (width,)))
            r_off += width
        fan_in = layer.units
    macs = int(sum(int(row[net.L_IN]) * int(row[net.L_UNITS]) * int(row[net.L_PIECES])
                   for row in layer_int))
    return NetworkLayout(layer_int, layer_float, tuple(params), tuple(buffers), p_off, r_off, macs)


def workspace_layout(layer_int, batch_size, threads=1):
    """(ws_off (L, N_WS) int64, total size) of the workspace for ``batch_size`` rows, with the
    plan of how ``threads`` threads share each layer's products (:func:`thread_plan`)."""
    ws_off = np.zeros((layer_int.shape[0], net.N_WS), dtype=np.int64)
    off = 0
    for l in range(layer_int.shape[0]):
        units = int(layer_int[l, net.L_UNITS])
        width = units * int(layer_int[l, net.L_PIECES])
        sizes = {
            net.W_PRE: batch_size * width,
            net.W_XHAT: batch_size * width if layer_int[l, net.L_BN] else 0,
            net.W_ACT: batch_size * units,
            net.W_OUT: batch_size * units if layer_int[l, net.L_DROPOUT] else 0,
            net.W_MASK: batch_size * units if layer_int[l, net.L_DROPOUT] else 0,
            net.W_DOUT: batch_size * units,
            net.W_DPRE: batch_size * width,
            net.W_MEAN: width if layer_int[l, net.L_BN] else 0,
            net.W_INVSTD: width if layer_int[l, net.L_BN] else 0,
        }
        for column in range(net.N_WS_OFFSETS):
            ws_off[l, column] = off
            off += sizes[column]
    ws_off[:, net.N_WS_OFFSETS:] = thread_plan(layer_int, batch_size, threads)
    return ws_off, off


def thread_plan(layer_int, batch_size, threads):
    """(L, 3) split codes (forward product, dW, dh) of every layer for ``threads`` threads on
    batches of ``batch_size`` rows.

    A product of fewer than MIN_SPLIT_MACS multiply-adds stays on one thread: the first part's
    for the forward product and dW, the last part's for dh (so a small layer's two backward
    products run side by side). Otherwise the
    forward product is cut into blocks of units (batchnorm needs whole columns; so does a layer
    whose units are too few to share, which is cut into rows instead), dW = hᵀ·dpre along its
    longer side, and dh = dpre·Wᵀ into blocks of the previous layer's units (whole columns for its
    batchnorm), or of rows when the product's inner size is small. (In training the last layer's
    forward, unless it has batchnorm, runs in the loss phase on each part's rows instead.)
    """
    n_layers = layer_int.shape[0]
    plan = np.full((n_layers, 3), net.SPLIT_ONE, dtype=np.int64)
    if threads <= 1:
        return plan
    m = batch_size
    wide_cols = threads * COL_ALIGN
    tall_rows = threads * ROW_ALIGN
    for l in range(n_layers):
        fan_in, units = int(layer_int[l, net.L_IN]), int(layer_int[l, net.L_UNITS])
        width = units * int(layer_int[l, net.L_PIECES])
        macs = m * fan_in * width
        if macs < MIN_SPLIT_MACS:
            if l > 0:
                plan[l, 2] = net.SPLIT_LAST
            continue
        if units >= wide_cols:
            plan[l, 0] = net.SPLIT_COLS
        elif not layer_int[l, net.L_BN] and m >= tall_rows:
            plan[l, 0] = net.SPLIT_ROWS
        if fan_in >= width and fan_in >= tall_rows:
            plan[l, 1] = net.SPLIT_ROWS
        elif width >= wide_cols:
            plan[l, 1] = net.SPLIT_COLS
        elif fan_in >= tall_rows:
            plan[l, 1] = net.SPLIT_ROWS
        if l == 0:
            continue
        previous_bn = bool(layer_int[l - 1, net.L_BN])
        if not previous_bn and width < 2 * COL_ALIGN and m >= tall_rows:
            plan[l, 2] = net.SPLIT_ROWS
        elif fan_in >= wide_cols:
            plan[l, 2] = net.SPLIT_COLS
        elif not previous_bn and m >= tall_rows:
            plan[l, 2] = net.SPLIT_ROWS
    return plan


class ArrayViews(dict):
    """An ordered dict of views into a flat array. Assigning to an existing key copies the value
    into the view (shape must match), so ``model.params["0.W"] = W`` changes the model; keys cannot
    be added or removed. ``flat`` is the flat array itself (all values end to end, in key order).
    """

    flat = None

    def __setitem__(self, key, value):
        dict.__getitem__(self, key)[...] = self._checked(key, value)

    def update(self, other=(), **kwargs):
        """Assign several keys; every value is checked before any is copied in."""
        checked = {key: self._checked(key, value) for key, value in dict(other, **kwargs).items()}
        for key, value in checked.items():
            dict.__getitem__(self, key)[...] = value

    def _checked(self, key, value):
        """``value`` as the dtype of view ``key`` when it may be stored there: KeyError for an
        unknown key, ValueError for another shape, NaN/inf (also after the cast: 1e300 does not
        fit in float32) or a negative running variance, TypeError for a non-numeric dtype."""
        if key not in self:
            raise KeyError(f"unknown key {key!r}; known keys: {', '.join(self)}")
        target = dict.__getitem__(self, key)
        value = np.asarray(value)
        if value.shape != target.shape:
            raise ValueError(f"{key} must have shape {target.shape}; got {value.shape}")
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{key} must be a real numeric array; got dtype {value.dtype}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{key} contains NaN or inf")
        with np.errstate(over="ignore"):
            cast = value.astype(target.dtype)
        if not np.all(np.isfinite(cast)):
            raise ValueError(f"{key} has values that overflow {target.dtype} (largest magnitude "
                             f"{float(np.max(np.abs(value))):.3g})")
        if key.endswith(".running_var") and cast.size and float(np.min(cast)) < 0.0:
            raise ValueError(f"{key} must be non-negative; got {float(np.min(cast)):.6g}")
        return cast

    def _frozen(self, *args, **kwargs):
        raise TypeError("keys of a model's params/buffers cannot be added or removed")

    __delitem__ = pop = popitem = clear = setdefault = _frozen

    def copy(self):
        """A plain dict of copies (a snapshot, detached from the model)."""
        return {key: value.copy() for key, value in self.items()}

    def __deepcopy__(self, memo):
        return self.copy()

    def __reduce__(self):
        return (dict, (self.copy(),))


def views(flat, slots, cls=dict):
    """Mapping key → view of ``flat`` for each slot (``cls`` dict or :class:`ArrayViews`)."""
    out = cls()
    if cls is ArrayViews:
        out.flat = flat
    for slot in slots:
        dict.__setitem__(out, slot.key, flat[slot.offset:slot.offset + slot.size].reshape(slot.shape))
    return out
