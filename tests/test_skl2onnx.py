"""skl2onnx converters: fastmlp.sklearn estimators inside a scikit-learn Pipeline export with
skl2onnx.to_onnx, and onnxruntime's outputs equal the pipeline's predictions."""

import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")

from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastmlp.interop.skl2onnx_converters import register_skl2onnx_converters  # noqa: E402
from fastmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

TOL = {np.float32: 1e-5, np.float64: 1e-9}


@pytest.fixture(scope="module", autouse=True)
def registered():
    register_skl2onnx_converters()


def data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(150, 5)) * [4.0, 1.0, 20.0, 0.5, 1.0] + [2.0, 0.0, -10.0, 1.0, 0.0]
    return X, rng


def run(onx, X):
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("classes", [np.array(["cat", "dog", "eel"]), np.array([3, 7, 11])])
def test_classifier_pipeline(dtype, classes):
    X, _ = data()
    y = classes[(X[:, 0] > 2).astype(int) + (X[:, 2] > -10)]
    pipe = make_pipeline(StandardScaler(), MLPClassifier(
        hidden_layer_sizes=(12, 6), activation="gelu", batchnorm=True, dropout=0.1, epochs=8,
        random_state=0)).fit(X, y)
    onx = skl2onnx.to_onnx(pipe, X[:1].astype(dtype), options={MLPClassifier: {"zipmap": False}})
    label, probabilities = run(onx, X.astype(dtype))
    expected = pipe.predict(X)
    assert len(set(expected)) == 3
    np.testing.assert_array_equal(label, expected)
    np.testing.assert_allclose(probabilities, pipe.predict_proba(X), rtol=TOL[dtype],
                               atol=TOL[dtype])


def test_classifier_zipmap_and_nocl_options():
    X, _ = data(1)
    y = (X[:, 0] > 2).astype(int) + 5
    clf = MLPClassifier(hidden_layer_sizes=(8,), epochs=3, random_state=0).fit(X, y)
    X32 = X.astype(np.float32)
    _, rows = run(skl2onnx.to_onnx(clf, X32[:1]), X32[:4])
    np.testing.assert_allclose([[row[c] for c in (5, 6)] for row in rows],
                               clf.predict_proba(X[:4]), rtol=1e-5, atol=1e-5)
    onx = skl2onnx.to_onnx(clf, X32[:1], options={MLPClassifier: {"zipmap": False, "nocl": True}})
    label, _ = run(onx, X32)
    np.testing.assert_array_equal(label, clf.predict(X) - 5)  # class indices, not labels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("targets", [1, 3])
def test_regressor_pipeline(dtype, targets):
    X, rng = data(2)
    y = np.tanh(X / 5) @ rng.normal(size=(5, targets))
    y = y[:, 0] if targets == 1 else y
    pipe = make_pipeline(StandardScaler(), MLPRegressor(
        hidden_layer_sizes=(10,), activation="softplus", epochs=5, random_state=0)).fit(X, y)
    (output,) = run(skl2onnx.to_onnx(pipe, X[:1].astype(dtype)), X.astype(dtype))
    assert output.shape == (150, targets)
    expected = pipe.predict(X).reshape(150, targets)
    np.testing.assert_allclose(output, expected, rtol=TOL[dtype], atol=TOL[dtype])


def test_old_target_opset_is_refused():
    X, _ = data()
    clf = MLPClassifier(hidden_layer_sizes=(4,), epochs=1, random_state=0).fit(X, X[:, 0] > 2)
    with pytest.raises(ValueError, match="target_opset >= 13"):
        skl2onnx.to_onnx(clf, X[:1].astype(np.float32), target_opset=12)


def test_missing_skl2onnx_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    with pytest.raises(ImportError, match="pip install skl2onnx"):
        register_skl2onnx_converters()
