"""Bagging (seed 003): models trained on bootstrap samples from different initializations, whose
predictions are averaged."""

from __future__ import annotations

import numpy as np

from ._repr import ConstructorRepr
from ._validation import MAX_SEED, check_features, check_int, check_seed
from .losses import prepare_targets
from .model import MLP
from .optimizers import Adam, Optimizer
from .trainer import Trainer


def _train_member(config, optimizer_class, optimizer_config, schedule, trainer_options, X, y, rows):
    model = MLP.from_config(config)
    optimizer = optimizer_class.from_config(optimizer_config)
    lr_schedule = None if schedule is None else schedule[0](**schedule[1])
    trainer = Trainer(model, optimizer=optimizer, lr_schedule=lr_schedule, progress=False,
                      **trainer_options)
    history = trainer.fit(X[rows], y[rows])
    return model, history


class Bagging(ConstructorRepr):
    """An ensemble of ``n_estimators`` copies of an architecture.

    Member i is built from ``model``'s configuration with seed ``seed + i`` (its own
    initialization and dropout masks) and trained with a fresh copy of ``optimizer`` on a bootstrap
    sample of the rows (n rows drawn with replacement, generator seeded by (seed, i)); with
    ``bootstrap=False`` every member sees all rows and only the initialization differs. Members are
    trained in parallel through joblib when ``n_jobs != 1``: joblib's default (loky) workers limit
    their BLAS threads so the cores are not oversubscribed; under joblib's Dask back end, pin the
    workers with :func:`fastmlp.parallel.dask.dask_client` or :class:`fastmlp.parallel.dask.PinThreads`.
    The same seeds give bitwise the same members as ``n_jobs=1`` run with the workers' thread
    count (a multithreaded BLAS rounds large products differently).

    Prediction averages the members' probabilities (cross_entropy, binary_cross_entropy) or raw
    outputs (mse, hinge).

    Parameters
    ----------
    model : MLP
        The architecture template (its weights are not used).
    n_estimators : int
    optimizer : Optimizer, default Adam(1e-3)
    batch_size, epochs, shuffle, l1, l2, clip_norm : as :class:`Trainer`
    lr_schedule : Schedule, optional
        Each member gets a fresh copy (same class and configuration).
    bootstrap : bool
    n_jobs : int
        Worker processes (joblib; -1 = all cores); 1 trains in this process.
    seed : int
    """

    def __init__(self, model, n_estimators=10, optimizer=None, batch_size=128, epochs=20,
                 shuffle=True, l1=0.0, l2=0.0, clip_norm=None, lr_schedule=None, bootstrap=True,
                 n_jobs=1, seed=0):
        if not isinstance(model, MLP):
            raise TypeError(f"model must be a fastmlp.MLP template; got {type(model).__name__}")
        optimizer = Adam(1e-3) if optimizer is None else optimizer
        if not isinstance(optimizer, Optimizer):
            raise TypeError("optimizer must be a fastmlp optimizer such as fm.Adam(1e-3)")
        self.template = model
        self.n_estimators = check_int(n_estimators, "n_estimators", minimum=1)
        self.optimizer = optimizer
        self.trainer_options = dict(batch_size=batch_size, epochs=epochs, shuffle=shuffle, l1=l1,
                                    l2=l2, clip_norm=clip_norm)
        Trainer(model, optimizer=optimizer, lr_schedule=lr_schedule, progress=False,
                **self.trainer_options)  # validates the options
        self.lr_schedule = lr_schedule
        self.bootstrap = bool(bootstrap)
        self.n_jobs = check_int(n_jobs, "n_jobs")
        if self.n_jobs == 0 or self.n_jobs < -1:
            raise ValueError(f"n_jobs must be -1 or a positive integer; got {n_jobs}")
        self.seed = self._check_member_seeds(seed, self.n_estimators)
        self.members = []
        self.histories = []

    @staticmethod
    def _check_member_seeds(seed, n_estimators):
        """``seed`` when the member seeds seed, seed + 1, ..., seed + n_estimators - 1 all lie in
        [0, MAX_SEED] (they reach the kernels as int64); ValueError naming ``seed`` otherwise."""
        seed = check_seed(seed)
        check_int(seed, "seed", 0, MAX_SEED - (n_estimators - 1),
                  f"member i is seeded with seed + i, up to seed + {n_estimators - 1}")
        return seed

    def _repr_arguments(self):
        return dict(model=self.template, **self.trainer_options)

    def _member_rows(self, n, i):
        if not self.bootstrap:
            return np.arange(n)
        return np.random.default_rng([self.seed, i]).integers(0, n, size=n)

    def fit(self, X, y):
        """Train every member; returns self."""
        template = self.template
        X = check_features(X, template.input_dim, template.dtype)
        prepare_targets(template.loss, y, X.shape[0], template.n_outputs, template.dtype)
        y = np.asarray(y)
        base = self.template.get_config()
        jobs = []
        for i in range(self.n_estimators):
            config = dict(base, seed=self.seed + i)
            schedule = None if self.lr_schedule is None else (type(self.lr_schedule),
                                                              self.lr_schedule.get_config())
            jobs.append((config, type(self.optimizer), self.optimizer.get_config(), schedule,
                         self.trainer_options, X, y, self._member_rows(len(X), i)))
        if self.n_jobs == 1:
            results = [_train_member(*job) for job in jobs]
        else:
            try:
                from joblib import Parallel, delayed
            except ImportError:
                raise ImportError('n_jobs != 1 needs joblib: pip install "fastmlp[sklearn]"') from None
            results = Parallel(n_jobs=self.n_jobs)(delayed(_train_member)(*job) for job in jobs)
        self.members = [model for model, _ in results]
        self.histories = [history for _, history in results]
        return self

    def _check_fitted(self):
        if not self.members:
            raise ValueError("this Bagging ensemble is not fitted yet; call fit(X, y) first")

    def _member_outputs(self, model, X):
        if model.loss in ("cross_entropy", "binary_cross_entropy"):
            return model.predict_proba(X)
        return model.forward(X)

    def predict_proba(self, X):
        """Mean of the members' probabilities, (n, n_outputs)."""
        self._check_fitted()
        if self.template.loss not in ("cross_entropy", "binary_cross_entropy"):
            raise ValueError("predict_proba needs loss 'cross_entropy' or 'binary_cross_entropy'")
        return self._average(X)

    def _average(self, X):
        total = None
        for model in self.members:
            out = self._member_outputs(model, X).astype(np.float64)
            total = out if total is None else total + out
        return total / len(self.members)

    def predict(self, X):
        """Labels from the averaged probabilities/scores; averaged outputs for mse."""
        self._check_fitted()
        mean = self._average(X)
        loss = self.template.loss
        if loss in ("cross_entropy", "hinge"):
            return mean.argmax(axis=1)
        if loss == "binary_cross_entropy":
            labels = (mean > 0.5).astype(np.int64)
            return labels[:, 0] if labels.shape[1] == 1 else labels
        return mean
