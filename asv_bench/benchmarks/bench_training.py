"""Training and inference of whole networks: 3 configurations × float32/float64.

Configurations (sizes, batch): 40-256-256-10/32, 784-512-512-10/128 and 1024-4096-4096-10/512;
ReLU hidden layers, cross-entropy, Adam(lr=1e-3), synthetic standard-normal data.
"""

import fastmlp as fm

from . import CONFIG_NAMES, DTYPES, TrainerStep, batch_size, build_model, config_data, epoch_rows
from . import public_step


class _Configs:
    params = [list(CONFIG_NAMES), list(DTYPES)]
    param_names = ["config", "dtype"]
    # the large configuration takes about a second per call: bound the repeats, not the quality
    # of the small ones (min repeats, max repeats, max seconds)
    repeat = (1, 10, 10.0)
    timeout = 600


class TrainStep(_Configs):
    """One step (forward, cross-entropy, backward, Adam update) on a fixed batch, as the Trainer
    runs it: one compiled network call plus one Adam update of the flat parameter array."""

    def setup(self, config, dtype):
        X, y = config_data(config, dtype)
        self.step = TrainerStep(build_model(config, dtype), fm.Adam(lr=1e-3), X, y)
        self.step()  # compile / load the kernels, create the optimizer state

    def time_train_step(self, config, dtype):
        self.step()


class PublicStep(_Configs):
    """The same step through the public API: ``MLP.loss_and_grad`` (fresh gradient arrays) and
    ``Adam.step(model.params, grads)`` (one update per parameter array)."""

    def setup(self, config, dtype):
        self.X, self.y = config_data(config, dtype)
        self.model = build_model(config, dtype)
        self.optimizer = fm.Adam(lr=1e-3)
        public_step(self.model, self.optimizer, self.X, self.y)

    def time_public_step(self, config, dtype):
        public_step(self.model, self.optimizer, self.X, self.y)


class TrainEpoch(_Configs):
    """``Trainer.fit`` for one epoch (shuffled minibatches, progress off) over synthetic data of
    2048 rows (1024 for the large configuration)."""

    def setup(self, config, dtype):
        self.X, self.y = config_data(config, dtype, rows=epoch_rows(config))
        self.batch = batch_size(config)
        self.trainer = fm.Trainer(build_model(config, dtype), fm.Adam(lr=1e-3),
                                  batch_size=self.batch, epochs=1, seed=0, progress=False)
        self.trainer.fit(self.X, self.y)

    def time_epoch(self, config, dtype):
        self.trainer.epochs += 1
        self.trainer.fit(self.X, self.y)

    def peakmem_epoch(self, config, dtype):
        """Peak memory of a fresh model and optimizer trained for one epoch."""
        trainer = fm.Trainer(build_model(config, dtype), fm.Adam(lr=1e-3),
                             batch_size=self.batch, epochs=1, seed=0, progress=False)
        trainer.fit(self.X, self.y)


class Inference(_Configs):
    """``MLP.predict`` (evaluation-mode forward pass + argmax) over the epoch's rows."""

    def setup(self, config, dtype):
        self.model = build_model(config, dtype)
        self.X, _ = config_data(config, dtype, rows=epoch_rows(config))
        self.model.predict(self.X)

    def time_predict(self, config, dtype):
        self.model.predict(self.X)

    def time_predict_one_batch(self, config, dtype):
        self.model.predict(self.X[:batch_size(config)])
