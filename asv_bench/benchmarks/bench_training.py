"""Training and inference of whole networks: 3 configurations × float32/float64.

Configurations (sizes, batch): 40-256-256-10/32, 784-512-512-10/128 and 1024-4096-4096-10/512;
ReLU hidden layers, cross-entropy, Adam(lr=1e-3), synthetic standard-normal data.
"""

import fastmlp as fm

from . import (CONFIG_NAMES, DTYPES, TrainerStep, batch_size, build_model, config_data,
               epoch_rows, layer_sizes, public_step)


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
        # the constructor runs the first step: kernels compiled or loaded, optimizer state made
        self.step = TrainerStep(build_model(config, dtype), fm.Adam(lr=1e-3), X, y)

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


class EpochMemory(_Configs):
    """Peak resident memory of the process while a fresh model and optimizer train for one epoch
    (asv's peakmem includes what the process held before: here the data and the kernels, which
    ``setup`` loads by training a tiny model of the same dtype)."""

    def setup(self, config, dtype):
        self.X, self.y = config_data(config, dtype, rows=epoch_rows(config))
        self.batch = batch_size(config)
        sizes = layer_sizes(config)
        tiny = fm.MLP(sizes[0], [fm.Dense(4, activation="relu"), fm.Dense(4, activation="relu"),
                                 fm.Dense(sizes[-1])], dtype=dtype, seed=0)
        fm.Trainer(tiny, fm.Adam(lr=1e-3), batch_size=self.batch, epochs=1,
                   progress=False).fit(self.X[:2 * self.batch], self.y[:2 * self.batch])

    def peakmem_epoch(self, config, dtype):
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
