"""fm.Bagging: bootstrap members, averaging, parallel training."""

import numpy as np
import pytest

import fastmlp as fm


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    data = fm.datasets.load_digits(seed=0)
    scaler = fm.Standardizer().fit(data.X_train)
    return scaler.transform(data.X_train), data.y_train, scaler.transform(data.X_test), data.y_test


def template():
    return fm.MLP(64, [fm.Dense(32, "relu", dropout=0.2), fm.Dense(10)], seed=0)


def test_ensemble_is_at_least_as_accurate_as_its_average_member(digits):
    X, y, Xt, yt = digits
    bag = fm.Bagging(template(), n_estimators=5, optimizer=fm.Adam(3e-3), batch_size=64, epochs=4,
                     seed=0).fit(X, y)
    members = [np.mean(m.predict(Xt) == yt) for m in bag.members]
    ensemble = np.mean(bag.predict(Xt) == yt)
    assert ensemble >= np.mean(members)
    assert ensemble > 0.9
    proba = bag.predict_proba(Xt)
    assert np.allclose(proba, np.mean([m.predict_proba(Xt) for m in bag.members], axis=0))
    assert len({m.seed for m in bag.members}) == 5  # different initializations
    assert not np.array_equal(bag.members[0].params["0.W"], bag.members[1].params["0.W"])


def test_bootstrap_rows_and_parallel_training_agree(digits):
    X, y, Xt, _ = digits
    kwargs = dict(n_estimators=2, batch_size=128, epochs=1, seed=3)
    serial = fm.Bagging(template(), n_jobs=1, **kwargs).fit(X, y)
    parallel = fm.Bagging(template(), n_jobs=2, **kwargs).fit(X, y)
    for a, b in zip(serial.members, parallel.members):
        assert np.array_equal(a.params["0.W"], b.params["0.W"])
    rows = serial._member_rows(len(X), 0)
    assert len(rows) == len(X) and len(np.unique(rows)) < len(X)  # drawn with replacement
    assert np.array_equal(fm.Bagging(template(), bootstrap=False)._member_rows(5, 0), np.arange(5))


def test_members_follow_the_learning_rate_schedule(digits):
    X, y, _, _ = digits
    bag = fm.Bagging(template(), n_estimators=2, optimizer=fm.SGD(0.1), batch_size=256, epochs=3,
                     lr_schedule=fm.StepLR(1, gamma=0.5)).fit(X, y)
    assert all(h["lr"] == [0.1, 0.05, 0.025] for h in bag.histories)


def test_regression_and_errors():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X.sum(axis=1)
    model = fm.MLP(3, [fm.Dense(8, "tanh"), fm.Dense(1)], loss="mse", seed=0)
    bag = fm.Bagging(model, n_estimators=3, epochs=2, batch_size=10)
    with pytest.raises(ValueError, match="not fitted"):
        bag.predict(X)
    bag.fit(X, y)
    assert np.allclose(bag.predict(X), np.mean([m.forward(X) for m in bag.members], axis=0))
    with pytest.raises(ValueError, match="predict_proba"):
        bag.predict_proba(X)
    with pytest.raises(ValueError, match="features"):
        bag.fit(X[:, :2], y)
    with pytest.raises(ValueError, match="n_jobs"):
        fm.Bagging(model, n_jobs=0)
    with pytest.raises(TypeError, match="template"):
        fm.Bagging("mlp")
