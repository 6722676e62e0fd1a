"""Training and inference of whole networks: 3 configurations × float32/float64, and the
mixed_bfloat16 policy's step against float32.

Configurations (sizes, batch): 40-256-256-10/32, 784-512-512-10/128 and 1024-4096-4096-10/512;
ReLU hidden layers, cross-entropy, Adam(lr=1e-3), synthetic standard-normal data.
"""

import fastmlp as fm

from . import (
    CONFIG_NAMES,
    DTYPES,
    EpochSteps,
    batch_size,
    build_model,
    config_data,
    epoch_rows,
    floor_per_step_seconds,
    layer_sizes,
    public_step,
)


class _Configs:
    params = [list(CONFIG_NAMES), list(DTYPES)]
    param_names = ["config", "dtype"]
    # the large configuration takes about a second per call: bound the repeats, not the quality
    # of the small ones (min repeats, max repeats, max seconds)
    repeat = (1, 10, 10.0)
    timeout = 600


class TrainStep(_Configs):
    """One step (forward, cross-entropy, backward, Adam update) inside whole epochs of
    ``Trainer.fit``: the best epoch of a few, per step (µs), and that time over the GEMM floor
    (the step's matrix products alone through NumPy, measured in the same process)."""

    def setup(self, config, dtype):
        large = config.startswith("1024")
        self.epochs = 2 if large else 5
        self.steps = EpochSteps(config, dtype, steps=2 if large else 50)
        self.floor_repeats = 3 if large else 50

    def track_step_us(self, config, dtype):
        return self.steps.per_step_seconds(self.epochs) * 1e6

    track_step_us.unit = "µs"

    def track_step_over_floor(self, config, dtype):
        step = self.steps.per_step_seconds(self.epochs)
        return step / floor_per_step_seconds(config, dtype, self.floor_repeats)

    track_step_over_floor.unit = "ratio"


class MixedPrecisionStep:
    """``dtype="mixed_bfloat16"`` (bfloat16 matrix products, float32 state): one step inside
    whole epochs (µs), that time over the float32 GEMM floor, and the float32 model's step over
    it (> 1: the mixed model is faster). Skipped where the bfloat16 products cannot run (the
    ``fastmlp[bf16]`` extra and a CPU with AVX512_BF16 or AMX-BF16)."""

    params = [list(CONFIG_NAMES)]
    param_names = ["config"]
    repeat = _Configs.repeat
    timeout = _Configs.timeout

    def setup(self, config):
        from fastmlp.kernels.cpu.onednn import bf16_support
        if bf16_support() is not None:
            raise NotImplementedError(bf16_support())
        large = config.startswith("1024")
        self.epochs = 2 if large else 5
        steps = 2 if large else 50
        self.mixed = EpochSteps(config, "mixed_bfloat16", steps=steps)
        self.float32 = EpochSteps(config, "float32", steps=steps)
        self.floor_repeats = 3 if large else 50

    def track_step_us(self, config):
        return self.mixed.per_step_seconds(self.epochs) * 1e6

    track_step_us.unit = "µs"

    def track_step_over_float32_floor(self, config):
        step = self.mixed.per_step_seconds(self.epochs)
        return step / floor_per_step_seconds(config, "float32", self.floor_repeats)

    track_step_over_float32_floor.unit = "ratio"

    def track_float32_step_over_mixed(self, config):
        return (self.float32.per_step_seconds(self.epochs)
                / self.mixed.per_step_seconds(self.epochs))

    track_float32_step_over_mixed.unit = "ratio"


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
