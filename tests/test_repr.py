"""Public objects print as scikit-learn's estimators do: ``ClassName(argument=value, ...)`` with
their constructor arguments, never ``<fastmlp... object at 0x...>``."""

import numpy as np
import pytest

import fastmlp as fm


def _template():
    return fm.MLP(4, [fm.Dense(8, "relu"), fm.Dense(3)], seed=0)


@pytest.mark.parametrize("obj, expected", [
    (fm.EarlyStopping(patience=3, min_delta=0.01),
     "EarlyStopping(monitor='val_loss', patience=3, min_delta=0.01, restore_best=True, "
     "mode='min')"),
    (fm.StepLR(10, gamma=0.5), "StepLR(step_size=10, gamma=0.5)"),
    (fm.CosineAnnealingLR(T_max=30), "CosineAnnealingLR(T_max=30, eta_min=0.0)"),
    (fm.ReduceLROnPlateau(monitor="loss", patience=2),
     "ReduceLROnPlateau(monitor='loss', factor=0.1, patience=2, threshold=0.0001, min_lr=0.0, "
     "cooldown=0)"),
    (fm.Standardizer(eps=1e-6), "Standardizer(eps=1e-06)"),
    (fm.Callback(), "Callback()"),
])
def test_repr_shows_the_constructor_arguments(obj, expected):
    assert repr(obj) == expected
    assert " object at 0x" not in str(obj)


def test_repr_rebuilds_an_equal_object():
    namespace = {name: getattr(fm, name) for name in fm.__all__}
    for obj in (fm.EarlyStopping(patience=3, mode="max", monitor="val_accuracy"),
                fm.StepLR(4), fm.CosineAnnealingLR(T_max=5, eta_min=1e-4),
                fm.ReduceLROnPlateau(factor=0.5, cooldown=1)):
        again = eval(repr(obj), namespace)  # noqa: S307 (our own repr)
        assert type(again) is type(obj) and again.get_config() == obj.get_config()


def test_bagging_prints_its_template_and_options():
    bag = fm.Bagging(_template(), n_estimators=5, optimizer=fm.SGD(0.1), epochs=3, n_jobs=2,
                     lr_schedule=fm.StepLR(2), seed=4)
    text = repr(bag)
    assert text.startswith("Bagging(model=MLP(input_dim=4, layers=[Dense(units=8")
    for part in ("n_estimators=5", "optimizer=SGD(lr=0.1", "batch_size=128", "epochs=3",
                 "lr_schedule=StepLR(step_size=2, gamma=0.1)", "bootstrap=True", "n_jobs=2",
                 "seed=4", "clip_norm=None"):
        assert part in text, part
    # fitting changes nothing in how it prints
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 4)).astype(np.float32), rng.integers(0, 3, 30)
    bag = fm.Bagging(_template(), n_estimators=2, epochs=1, seed=0)
    before = repr(bag)
    bag.fit(X, y)
    assert repr(bag) == before


def test_user_callbacks_print_their_arguments():
    class StopAbove(fm.Callback):
        def __init__(self, limit, metric="loss"):
            self.limit = limit
            self.metric = metric

        def on_epoch_end(self, epoch, metrics):
            return metrics[self.metric] > self.limit

    assert repr(StopAbove(2.5)) == "StopAbove(limit=2.5, metric='loss')"
