"""Layer descriptions. A layer here is configuration only; the numbers live in the model."""

from __future__ import annotations

import numbers

from ._validation import check_size
from .kernels.contract import ACTIVATION_CODES

ACTIVATIONS = tuple(ACTIVATION_CODES)
_DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}
# he (Kaiming) initialisation suits these; the rest get xavier (Glorot) under init="auto"
RELU_FAMILY = frozenset({"relu", "leaky_relu", "elu", "gelu", "maxout"})


class Dense:
    """A fully connected layer: z = x·W + b → [batchnorm] → activation → [dropout].

    Parameters
    ----------
    units : int
        Number of outputs, 1 to 2**31 - 1 (``fastmlp._validation.MAX_SIZE``; with maxout,
        units × pieces is held to the same limit).
    activation : str
        One of ``linear`` (default), ``sigmoid``, ``tanh``, ``relu``, ``leaky_relu``, ``elu``,
        ``softplus``, ``gelu``, ``maxout``.
    batchnorm : bool
        Batch-normalize the pre-activations (learnable ``gamma``/``beta``, running statistics).
    dropout : float
        Drop probability p in [0, 1) of inverted dropout on the layer output (training only).
    alpha : float, optional
        Slope of ``leaky_relu`` (default 0.01) or scale of ``elu`` (default 1.0).
    pieces : int, optional
        Number of linear pieces k ≥ 2 of ``maxout`` (default 2). A maxout layer holds k·units
        pre-activations: W is (in, units·k) and unit j takes the max of columns j·k … j·k + k - 1.
        With batchnorm, ``gamma``/``beta`` cover all k·units pre-activations.
    """

    def __init__(self, units, activation="linear", batchnorm=False, dropout=0.0, alpha=None,
                 pieces=None):
        if isinstance(units, bool) or not isinstance(units, numbers.Integral):
            raise TypeError(f"units must be a positive integer; got {units!r}")
        if units <= 0:
            raise ValueError(f"units must be a positive integer; got {units}")
        check_size(units, "units")
        if not isinstance(activation, str) or activation not in ACTIVATION_CODES:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
        if not isinstance(batchnorm, (bool, int)) or isinstance(batchnorm, float):
            raise TypeError(f"batchnorm must be a bool; got {batchnorm!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
            raise TypeError(f"dropout must be a number in [0, 1); got {dropout!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        if alpha is not None:
            if activation not in _DEFAULT_ALPHA:
                raise ValueError(f"alpha applies to leaky_relu and elu only, not {activation!r}")
            if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
                raise TypeError(f"alpha must be a number; got {alpha!r}")
            if not float(alpha) == float(alpha) or abs(float(alpha)) == float("inf"):
                raise ValueError(f"alpha must be finite; got {alpha}")
        if pieces is not None and activation != "maxout":
            raise ValueError(f"pieces applies to maxout only, not {activation!r}")
        if activation == "maxout":
            pieces = 2 if pieces is None else pieces
            if isinstance(pieces, bool) or not isinstance(pieces, numbers.Integral):
                raise TypeError(f"pieces must be an integer >= 2; got {pieces!r}")
            if pieces < 2:
                raise ValueError(f"pieces must be >= 2 for maxout; got {pieces}")
            check_size(units * pieces, "units * pieces (the layer's width)")
        self.units = int(units)
        self.activation = activation
        self.batchnorm = bool(batchnorm)
        self.dropout = float(dropout)
        self.alpha = float(alpha) if alpha is not None else _DEFAULT_ALPHA.get(activation, 0.0)
        self.pieces = int(pieces) if activation == "maxout" else 1

    @property
    def width(self):
        """Number of pre-activations: units·pieces for maxout, units otherwise."""
        return self.units * self.pieces

    def get_config(self):
        """JSON-able constructor arguments."""
        config = {"units": self.units, "activation": self.activation, "batchnorm": self.batchnorm,
                  "dropout": self.dropout}
        if self.activation in _DEFAULT_ALPHA:
            config["alpha"] = self.alpha
        if self.activation == "maxout":
            config["pieces"] = self.pieces
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"Dense({args})"

    def __eq__(self, other):
        return isinstance(other, Dense) and self.get_config() == other.get_config()
