"""The data of one fit: the plan that cuts them, and the record an engine keeps them in.

The data of a fit travel once. ``Trainer.fit`` hands X, y and the validation data, with a
:class:`FitPlan` (the trainer's choices: validation split, batch size), to the engine's
``begin_fit``. The engine checks them, cuts them by the plan (:meth:`FitPlan.cut`), places them
where it computes (:func:`checked_fit_data`, the same steps for every engine) and keeps them, as
a :class:`FitData`, until ``end_fit``. The trainer gets
back only a :class:`FitShape`, the row and step counts it needs to order the rows of each
epoch; ``run_epoch`` and ``evaluate_validation`` then read the kept data.

Shapes: X (n, input_dim); labels (n,) int64 or (0,); targets (n, C) or (0, C); batch bounds
(steps + 1,) int64 with bounds[0] = 0 and bounds[-1] = n.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._validation import check_real


class FitData(NamedTuple):
    """A fit's data as its engine keeps them: the training rows and the validation rows (or
    None), each an engine's ``Placed`` data, and the (steps + 1,) int64 batch bounds of an
    epoch."""

    train: object
    validation: object
    bounds: np.ndarray

    def shape(self):
        return FitShape(self.train.rows, self.bounds.shape[0] - 1, self.validation is not None)


def checked_fit_data(engine, X, y, validation_data, plan):
    """The FitData of ``X``, ``y`` and ``validation_data`` (a pair or None) for ``engine``:
    checked by its rules (``check_inputs``), placed where it computes (``place``) and cut by
    ``plan``, a :class:`FitPlan` (the validation split taken with ``take_rows``)."""
    X, labels, targets, code = engine.check_inputs(X, y)
    validation = None
    if validation_data is not None:
        validation = engine.place(*engine.check_inputs(*validation_data, "validation_data X",
                                                       "validation_data y"))
    train_rows, validation_rows, bounds = plan.cut(X.shape[0])
    train = engine.place(X, labels, targets, code)
    if train_rows is not None:
        train, validation = (engine.take_rows(train, train_rows),
                             engine.take_rows(train, validation_rows))
    return FitData(train, validation, bounds)


class FitShape(NamedTuple):
    """What the trainer learns of a fit's data: training rows, steps per epoch, and whether
    there are validation data."""

    rows: int
    steps: int
    validating: bool


class FitPlan:
    """How a fit cuts its data.

    ``batch_size`` rows per step (the last partial batch is used, not dropped); ``batchnorm``:
    whether the network normalizes by batch statistics, which need two rows; ``ranks``: the
    processes a global batch is shared among, each needing its own rows; ``validation_split``:
    None, or the fraction in (0, 1) of the rows held out, chosen by ``seed``.
    """

    __slots__ = ("batch_size", "batchnorm", "ranks", "validation_split", "seed")

    def __init__(self, batch_size, batchnorm, seed, validation_split=None, ranks=1):
        if validation_split is not None:
            fraction = check_real(validation_split, "validation_split")
            if not 0.0 < fraction < 1.0:
                raise ValueError(f"validation_split must be in (0, 1); got {validation_split}")
        self.batch_size, self.batchnorm, self.ranks = batch_size, bool(batchnorm), ranks
        self.validation_split, self.seed = validation_split, seed

    def cut(self, n):
        """(training rows, validation rows, batch bounds) of a fit over ``n`` rows: the rows are
        None without ``validation_split`` (all ``n`` rows train), else :meth:`split`; the bounds
        are :meth:`bounds` of the training rows."""
        if self.validation_split is None:
            return None, None, self.bounds(n)
        train_rows, validation_rows = self.split(n)
        return train_rows, validation_rows, self.bounds(train_rows.shape[0])

    def split(self, n):
        """(training rows, validation rows) of ``n`` rows, each sorted int64; the validation
        part is round(n · validation_split) rows drawn by ``seed``."""
        n_val = int(round(n * float(self.validation_split)))
        if n_val < 1 or n - n_val < 1:
            raise ValueError(f"validation_split={self.validation_split} leaves an empty training "
                             f"or validation set for {n} samples")
        order = np.random.default_rng([self.seed, 1]).permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def bounds(self, n):
        """(steps + 1,) int64 row boundaries of the batches of an epoch over ``n`` rows.

        Every batch needs ``ranks`` rows (two each with batchnorm); a last batch with fewer
        joins the previous one, and a first batch with fewer is a ValueError."""
        size = min(self.batch_size, n)
        bounds = list(range(0, n, size)) + [n]
        need = self.ranks * (2 if self.batchnorm else 1)
        if len(bounds) > 2 and bounds[-1] - bounds[-2] < need:
            del bounds[-2]
        if bounds[1] - bounds[0] < need:
            if self.ranks == 1:
                raise ValueError("batchnorm needs at least 2 training samples per batch")
            raise ValueError(f"batch_size={self.batch_size} leaves fewer than "
                             f"{need // self.ranks} row(s) per rank for {self.ranks} ranks on "
                             f"{n} samples")
        return np.asarray(bounds, dtype=np.int64)
