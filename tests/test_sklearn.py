"""fastmlp.sklearn: scikit-learn's common estimator checks plus behaviour in real workflows."""

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# small and fast, yet accurate enough for check_classifiers_train / check_regressors_train
CHECKED = [
    MLPClassifier(hidden_layer_sizes=(16,), learning_rate=1e-2, batch_size=32, epochs=10,
                  random_state=0),
    MLPRegressor(hidden_layer_sizes=(16,), learning_rate=1e-2, batch_size=32, epochs=10,
                 random_state=0),
]


@parametrize_with_checks(CHECKED)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ----------------------------------------------------------------- shared data
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(n_samples=300, n_features=8, n_informative=5, n_classes=3,
                               random_state=0)
    return StandardScaler().fit_transform(X), y


def small_classifier(**kw):
    params = dict(hidden_layer_sizes=(16,), learning_rate=1e-2, batch_size=32, epochs=5,
                  random_state=0)
    params.update(kw)
    return MLPClassifier(**params)


def small_regressor(**kw):
    params = dict(hidden_layer_sizes=(16,), learning_rate=1e-2, batch_size=32, epochs=5,
                  random_state=0)
    params.update(kw)
    return MLPRegressor(**params)


# ----------------------------------------------------------------- workflows
def test_pipeline_on_digits(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = Pipeline([("scale", StandardScaler()),
                     ("mlp", MLPClassifier(hidden_layer_sizes=(64,), epochs=30, random_state=0))])
    pipe.fit(X_train, y_train)
    assert pipe.score(X_test, y_test) >= 0.95
    proba = pipe.predict_proba(X_test)
    assert proba.shape == (X_test.shape[0], 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


def test_grid_search_on_digits(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = Pipeline([("scale", StandardScaler()),
                     ("mlp", MLPClassifier(hidden_layer_sizes=(64,), epochs=20, random_state=0))])
    grid = GridSearchCV(pipe, {"mlp__learning_rate": [1e-3, 3e-3]}, cv=3, n_jobs=1)
    grid.fit(X_train, y_train)
    assert set(grid.best_params_) == {"mlp__learning_rate"}
    assert len(grid.cv_results_["mean_test_score"]) == 2
    assert grid.score(X_test, y_test) >= 0.95


def test_fitted_attributes(blobs):
    X, y = blobs
    labels = np.array(["ant", "bee", "cat"])[y]
    clf = small_classifier().fit(X, labels)
    assert list(clf.classes_) == ["ant", "bee", "cat"]
    assert clf.n_features_in_ == X.shape[1]
    assert isinstance(clf.model_, fastmlp.MLP)
    assert clf.model_.n_outputs == 3 and clf.model_.loss == "cross_entropy"
    assert clf.n_iter_ == 5 and len(clf.loss_curve_) == 5
    assert clf.history_["loss"] == clf.loss_curve_
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert set(clf.predict(X)) <= set(clf.classes_)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(clf.predict_proba(X)),
                               rtol=1e-10)
    assert not hasattr(clf, "feature_names_in_")


def test_predictions_follow_model_(blobs):
    X, y = blobs
    clf = small_classifier().fit(X, y)
    z = clf.model_.forward(X).astype(np.float64)  # float32 evaluation
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-4, atol=1e-6)
    # predictions read model_'s current parameters, so edits to the network show at once
    clf.model_.params[f"{len(clf.model_.layers) - 1}.W"][...] = 0.0
    clf.model_.params[f"{len(clf.model_.layers) - 1}.b"][...] = [0.0, 0.0, 1.0]
    assert (clf.predict(X) == 2).all()


def test_binary_problem_uses_two_softmax_outputs(blobs):
    X, y = blobs
    mask = y < 2
    clf = small_classifier(epochs=20).fit(X[mask], y[mask] * 5 + 1)
    assert clf.model_.n_outputs == 2
    assert list(clf.classes_) == [1, 6]
    assert clf.predict_proba(X).shape == (X.shape[0], 2)
    assert clf.score(X[mask], y[mask] * 5 + 1) > 0.8


def test_one_class_is_an_error_and_leaves_the_estimator_unfitted():
    X = np.random.default_rng(0).normal(size=(10, 3))
    clf = small_classifier()
    with pytest.raises(ValueError, match="one class"):
        clf.fit(X, np.zeros(10))
    assert not hasattr(clf, "classes_") and not hasattr(clf, "model_")
    with pytest.raises(NotFittedError):
        clf.predict(X)


def test_early_stopping_attributes(blobs):
    X, y = blobs
    clf = small_classifier(early_stopping=True, patience=3, epochs=200).fit(X, y)
    assert clf.n_iter_ < 200
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.history_["val_loss"])
    best = int(np.argmin(clf.history_["val_loss"]))
    assert clf.best_loss_ == pytest.approx(clf.history_["val_loss"][best])
    assert clf.best_validation_score_ == clf.validation_scores_[best]
    assert clf.history_["val_accuracy"][best] == pytest.approx(clf.best_validation_score_)

    Xr, yr = make_regression(n_samples=200, n_features=5, noise=1.0, random_state=0)
    reg = small_regressor(early_stopping=True, patience=3, epochs=50).fit(Xr, yr / yr.std())
    assert len(reg.validation_scores_) == reg.n_iter_
    assert reg.best_validation_score_ > 0.5


def test_warm_start_continues_training(blobs):
    X, y = blobs
    clf = small_classifier(warm_start=True).fit(X, y)
    model = clf.model_
    before = model.params["0.W"].copy()
    first_curve = list(clf.loss_curve_)
    clf.fit(X, y)
    assert clf.model_ is model
    assert clf.n_iter_ == 10 and len(clf.loss_curve_) == 10
    assert clf.loss_curve_[:5] == first_curve
    assert not np.array_equal(before, model.params["0.W"])
    assert clf.loss_curve_[-1] < first_curve[-1]

    # the same run in one go: warm starting is continued training, not a restart
    cold = small_classifier().fit(X, y)
    assert cold.model_ is not model and cold.n_iter_ == 5
    refit = clf.set_params(warm_start=False).fit(X, y)
    assert refit.model_ is not model and refit.n_iter_ == 5
    np.testing.assert_array_equal(refit.predict_proba(X), cold.predict_proba(X))


def test_warm_start_rejects_new_architecture(blobs):
    X, y = blobs
    clf = small_classifier(warm_start=True).fit(X, y)
    clf.set_params(hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="architecture"):
        clf.fit(X, y)


def test_partial_fit(blobs):
    X, y = blobs
    clf = small_classifier()
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    classes = np.unique(y)
    clf.partial_fit(X[:100], y[:100], classes=classes)
    assert clf.n_iter_ == 1
    losses = []
    for _ in range(15):
        clf.partial_fit(X, y)
        losses.append(clf.loss_curve_[-1])
    assert clf.n_iter_ == 16 and len(clf.loss_curve_) == 16
    assert losses[-1] < losses[0]
    assert clf.score(X, y) > 0.8
    # a batch may hold a subset of the classes; unknown labels and changed classes are errors
    clf.partial_fit(X[y == 0], y[y == 0])
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="first call"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])

    reg = small_regressor()
    Xr, yr = make_regression(n_samples=120, n_features=4, random_state=0)
    yr = yr / yr.std()
    for _ in range(3):
        reg.partial_fit(Xr, yr)
    assert reg.n_iter_ == 3 and reg.predict(Xr).shape == (120,)


def test_random_state_reproducibility(blobs):
    X, y = blobs
    kw = dict(dropout=0.2, batchnorm=True, early_stopping=True, epochs=20)
    a = small_classifier(random_state=7, **kw).fit(X, y)
    b = small_classifier(random_state=7, **kw).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.loss_curve_ == b.loss_curve_
    c = small_classifier(random_state=8, **kw).fit(X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    # a RandomState instance is consumed, as in scikit-learn
    rs = np.random.RandomState(3)
    d = small_classifier(random_state=rs).fit(X, y)
    e = small_classifier(random_state=rs).fit(X, y)
    assert not np.array_equal(d.predict_proba(X), e.predict_proba(X))


def test_regressor_multi_output_and_shapes():
    X, Y = make_regression(n_samples=300, n_features=6, n_targets=3, noise=0.1, random_state=0)
    Y = Y / Y.std(axis=0)
    reg = small_regressor(epochs=60).fit(X, Y)
    pred = reg.predict(X)
    assert pred.shape == (300, 3) and pred.dtype == np.float64
    assert reg.model_.n_outputs == 3 and reg.model_.loss == "mse"
    assert reg.score(X, Y) > 0.9

    one = small_regressor().fit(X, Y[:, 0])
    assert one.predict(X).shape == (300,)
    column = small_regressor().fit(X, Y[:, :1])
    assert column.predict(X).shape == (300, 1)
    np.testing.assert_array_equal(column.predict(X)[:, 0], one.predict(X))


def test_float64_dtype(blobs):
    X, y = blobs
    clf = small_classifier(dtype="float64").fit(X, y)
    assert clf.model_.dtype == np.float64
    assert clf.score(X, y) > 0.8


@pytest.mark.parametrize("optimizer, params", [
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("adam", {"betas": (0.9, 0.99)}),
    ("AdamW", {"weight_decay": 0.01}),
    ("rmsprop", None),
    ("adagrad", None),
])
def test_optimizers(blobs, optimizer, params):
    X, y = blobs
    clf = small_classifier(optimizer=optimizer, optimizer_params=params, learning_rate=3e-2,
                           epochs=10).fit(X, y)
    assert clf._optimizer.__class__.__name__.lower() == optimizer.lower()
    assert clf.score(X, y) > 0.8


@pytest.mark.parametrize("params, error", [
    ({"hidden_layer_sizes": (8, 0)}, ValueError),
    ({"hidden_layer_sizes": "wide"}, TypeError),
    ({"activation": "swish"}, ValueError),
    ({"optimizer": "lbfgs"}, ValueError),
    ({"optimizer_params": {"momentum": 0.9}}, ValueError),  # adam has no momentum
    ({"optimizer_params": {"lr": 0.1}}, ValueError),
    ({"learning_rate": 0.0}, ValueError),
    ({"batch_size": 0}, ValueError),
    ({"batch_size": "big"}, ValueError),
    ({"epochs": 0}, ValueError),
    ({"dropout": 1.0}, ValueError),
    ({"l2": -1.0}, ValueError),
    ({"validation_fraction": 1.0}, ValueError),
    ({"patience": 0}, ValueError),
    ({"dtype": "float16"}, ValueError),
])
def test_invalid_parameters_are_reported_in_fit(blobs, params, error):
    X, y = blobs
    clf = small_classifier(**params)  # constructing never validates
    with pytest.raises(error):
        clf.fit(X, y)


def test_clone_and_get_params_round_trip(blobs):
    X, y = blobs
    clf = small_classifier(optimizer="sgd", optimizer_params={"momentum": 0.9}, l1=1e-5,
                           dropout=0.1, batchnorm=True, warm_start=True)
    params = clf.get_params()
    assert params["optimizer_params"] == {"momentum": 0.9}
    assert MLPClassifier(**params).get_params() == params
    clf.fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == params
    assert not hasattr(twin, "model_")
    with pytest.raises(NotFittedError):
        twin.predict(X)
    defaults = MLPRegressor().get_params()
    assert defaults["hidden_layer_sizes"] == (100,) and defaults["batch_size"] == 200
    assert defaults["l2"] == 1e-4 and defaults["random_state"] is None


def test_pickle_fitted_estimator(blobs):
    X, y = blobs
    clf = small_classifier(batchnorm=True, warm_start=True).fit(X, y)
    twin = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(twin.predict_proba(X), clf.predict_proba(X))
    # the restored network is whole: its params are live views of the trained storage
    model = twin.model_
    for key, value in model.params.items():
        assert np.shares_memory(value, model._params), key
        np.testing.assert_array_equal(value, clf.model_.params[key])
    for key, value in model.buffers.items():
        np.testing.assert_array_equal(value, clf.model_.buffers[key])
    # training goes on identically in the original and the copy
    clf.fit(X, y)
    twin.fit(X, y)
    np.testing.assert_array_equal(twin.predict_proba(X), clf.predict_proba(X))
    assert twin.n_iter_ == clf.n_iter_ == 10


def test_feature_names_from_dataframe(blobs):
    pd = pytest.importorskip("pandas")
    X, y = blobs
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    clf = small_classifier().fit(frame, y)
    np.testing.assert_array_equal(clf.feature_names_in_, frame.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict(frame)
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X)


def test_tags():
    clf_tags = MLPClassifier(random_state=0).__sklearn_tags__()
    assert clf_tags.estimator_type == "classifier"
    assert not clf_tags.non_deterministic and not clf_tags.input_tags.sparse
    assert not clf_tags.classifier_tags.multi_label
    reg_tags = MLPRegressor().__sklearn_tags__()
    assert reg_tags.estimator_type == "regressor" and reg_tags.target_tags.multi_output
