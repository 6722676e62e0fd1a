"""ONNX export: onnxruntime's outputs equal fastmlp's for every layer option, loss and dtype; the
file is valid, written atomically, and bad arguments fail before anything is written."""

import json
import math
import os
import sys

import numpy as np
import pytest

import fastmlp as fm
from fastmlp.interop import DEFAULT_OPSET, MIN_OPSET, build_onnx_model
from fastmlp.interop._onnx_graph import GraphBuilder
from fastmlp.interop.onnx_activations import erfc_of_nonnegative

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = {"float32": 1e-5, "float64": 1e-9}
DTYPES = tuple(TOL)
ACTIVATION_OPTIONS = [
    ("linear", {}), ("sigmoid", {}), ("tanh", {}), ("relu", {}),
    ("leaky_relu", {"alpha": 0.2}), ("elu", {}), ("elu", {"alpha": 0.4}), ("softplus", {}),
    ("gelu", {}), ("maxout", {"pieces": 3}),
]


def run_onnx(proto_or_path, X):
    """{output name: array} of onnxruntime on X."""
    if isinstance(proto_or_path, onnx.ModelProto):
        source = proto_or_path.SerializeToString()
    else:
        source = os.fspath(proto_or_path)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X})))


def randomize_state(model, seed=0):
    """Non-trivial running statistics and batchnorm parameters (the kernels' defaults are 0/1)."""
    rng = np.random.default_rng(seed)
    for key, value in model.buffers.items():
        value[...] = rng.uniform(0.3, 3.0, value.shape) if key.endswith("var") else \
            rng.normal(scale=0.5, size=value.shape)
    for key, value in model.params.items():
        if key.endswith((".gamma", ".beta", ".b")):
            value[...] = rng.normal(scale=0.5, size=value.shape) + (key.endswith("gamma"))
    return model


def features(n, d, dtype, scale=2.0, seed=1):
    return (np.random.default_rng(seed).normal(size=(n, d)) * scale).astype(dtype)


def assert_close(actual, expected, dtype):
    assert actual.dtype == np.dtype(dtype)
    np.testing.assert_allclose(actual, expected, rtol=TOL[dtype], atol=TOL[dtype])


# ----------------------------------------------------------------------------- layer options

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation, options", ACTIVATION_OPTIONS,
                         ids=[f"{a}-{o}" if o else a for a, o in ACTIVATION_OPTIONS])
def test_every_activation_with_batchnorm_and_dropout_matches_forward(activation, options, dtype):
    model = fm.MLP(6, [fm.Dense(9, activation, batchnorm=True, dropout=0.3, **options),
                       fm.Dense(7, activation, **options),
                       fm.Dense(4, activation, batchnorm=True, **options),
                       fm.Dense(3)], loss="mse", dtype=dtype, seed=3)
    randomize_state(model)
    X = features(64, 6, dtype)
    outputs = run_onnx(build_onnx_model(model), X)
    assert list(outputs) == ["output"]
    expected = model.forward(X)
    assert np.ptp(expected) > 0.1  # the comparison sees real numbers
    assert_close(outputs["output"], expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation, options", [("softplus", {}), ("gelu", {}), ("sigmoid", {}),
                                                 ("elu", {"alpha": 1.7}), ("tanh", {}),
                                                 ("leaky_relu", {"alpha": 0.05})])
def test_activations_at_extreme_inputs(activation, options, dtype):
    """Identity weights feed the activations x from -80 to 80 (softplus and sigmoid would
    overflow if computed naively) and tiny |x| (where e^x - 1 and log(1 + u) lose digits)."""
    x = np.concatenate([np.linspace(-80, 80, 4001), [-1e-9, 1e-9, 0.0, -30.0, 30.0, 88.0, -88.0]])
    model = fm.MLP(1, [fm.Dense(1, activation, **options)], loss="mse", dtype=dtype)
    model.params["0.W"] = np.ones((1, 1))
    model.params["0.b"] = np.zeros(1)
    X = x.astype(dtype)[:, None]
    out = run_onnx(build_onnx_model(model), X)["output"]
    assert np.isfinite(out).all()
    assert_close(out, model.forward(X), dtype)


@pytest.mark.parametrize("activation, x", [
    ("softplus", np.linspace(-700, -20, 500)),          # softplus(x) ≈ e^x: log(1 + u) loses u
    ("sigmoid", np.linspace(-700, -20, 500)),           # σ(x) ≈ e^x: flushed by naive forms
    ("elu", np.geomspace(-1e-3, -1e-15, 500)),          # e^x - 1 ≈ x: cancels unless expm1
])
def test_float64_tiny_activation_values_keep_their_relative_accuracy(activation, x):
    model = fm.MLP(1, [fm.Dense(1, activation)], loss="mse", dtype="float64")
    model.params["0.W"] = np.ones((1, 1))
    out = run_onnx(build_onnx_model(model), x[:, None])["output"]
    expected = model.forward(x[:, None])
    assert (expected != 0).all()
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_running_statistics_from_training(dtype):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(96, 5)) * 3 + 4).astype(dtype)
    y = rng.integers(0, 3, size=96)
    model = fm.MLP(5, [fm.Dense(8, "relu", batchnorm=True, dropout=0.2),
                       fm.Dense(3, batchnorm=True)], dtype=dtype, seed=0)
    fm.Trainer(model, fm.Adam(1e-2), batch_size=16, epochs=3, seed=0, progress=False).fit(X, y)
    assert np.abs(model.buffers["0.running_mean"]).max() > 0.5
    assert np.abs(model.buffers["0.running_var"] - 1).max() > 0.5
    outputs = run_onnx(build_onnx_model(model), X)
    np.testing.assert_array_equal(outputs["label"], model.predict(X))
    assert_close(outputs["probabilities"], model.predict_proba(X), dtype)


@pytest.mark.parametrize("opset", [MIN_OPSET, 17, DEFAULT_OPSET, 21])
def test_opsets_before_and_after_reducemax_axes_input(opset):
    model = fm.MLP(4, [fm.Dense(5, "maxout", pieces=4, batchnorm=True), fm.Dense(2)], loss="mse",
                   dtype="float64")
    randomize_state(model)
    proto = build_onnx_model(model, opset=opset)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", opset)]
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(proto.opset_import)
    X = features(20, 4, "float64")
    assert_close(run_onnx(proto, X)["output"], model.forward(X), "float64")


def test_erfc_series_of_float64_gelu_matches_math_erfc():
    g = GraphBuilder("float64", DEFAULT_OPSET)
    z = g.reserve("z")
    erfc = erfc_of_nonnegative(g, z)
    g.op("Identity", erfc, output=g.reserve("erfc"))
    graph = onnx.helper.make_graph(g.nodes, "erfc", [g.value_info("z", g.elem_type, ["n"])],
                                   [g.value_info("erfc", g.elem_type, ["n"])], g.initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    proto.ir_version = onnx.helper.find_min_ir_version_for(proto.opset_import)
    z_values = np.concatenate([np.linspace(0, 26, 5201), [1e-12, 0.5, 1.0, 4.0]])
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"z": z_values})[0]
    expected = np.array([math.erfc(v) for v in z_values])
    # the rounding of -z² in the exponent costs relative accuracy as erfc(z) underflows
    small = z_values <= 3
    np.testing.assert_allclose(got[small], expected[small], rtol=2e-15, atol=0)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------- losses

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss, outputs", [("cross_entropy", 4), ("binary_cross_entropy", 1),
                                           ("binary_cross_entropy", 3), ("hinge", 4), ("mse", 2)])
def test_outputs_of_each_loss(loss, outputs, dtype):
    model = fm.MLP(5, [fm.Dense(12, "tanh", batchnorm=True), fm.Dense(outputs)], loss=loss,
                   dtype=dtype, seed=2)
    randomize_state(model)
    X = features(80, 5, dtype)
    got = run_onnx(build_onnx_model(model), X)
    if loss == "mse":
        assert list(got) == ["output"]
        assert_close(got["output"], model.forward(X), dtype)
        return
    assert list(got) == ["label", "probabilities" if loss != "hinge" else "scores"]
    labels = model.predict(X)
    assert got["label"].dtype == np.int64 and got["label"].shape == labels.shape
    assert len(np.unique(labels)) > 1  # labels of more than one class are compared
    np.testing.assert_array_equal(got["label"], labels)
    if loss == "hinge":
        assert_close(got["scores"], model.forward(X), dtype)
    else:
        assert_close(got["probabilities"], model.predict_proba(X), dtype)


def test_batch_sizes_one_zero_and_more_than_one_chunk():
    model = fm.MLP(3, [fm.Dense(6, "relu"), fm.Dense(3)], seed=1)
    proto = build_onnx_model(model)
    for n in (0, 1, 2500):
        X = features(n, 3, "float32")
        got = run_onnx(proto, X)
        assert got["label"].shape == (n,) and got["probabilities"].shape == (n, 3)
        if n == 0:
            continue  # fastmlp itself refuses empty input
        np.testing.assert_array_equal(got["label"], model.predict(X))
        np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), rtol=1e-5,
                                   atol=1e-5)


# ----------------------------------------------------------------------------- standardizer

@pytest.mark.parametrize("dtype", DTYPES)
def test_stored_standardizer_is_folded_in(dtype, tmp_path):
    rng = np.random.default_rng(4)
    raw = rng.normal(size=(120, 4)) * [1.0, 50.0, 0.01, 1.0] + [3.0, -200.0, 0.5, 7.0]
    raw[:, 3] = 7.0  # a constant feature: scale 1
    raw = raw.astype(dtype)
    scaler = fm.Standardizer().fit(raw)
    model = fm.MLP(4, [fm.Dense(8, "gelu"), fm.Dense(3)], dtype=dtype, seed=0)
    model.save(tmp_path / "model.npz", standardizer=scaler)
    model = fm.MLP.load(tmp_path / "model.npz")
    assert model.standardizer is not None
    X = raw.copy()
    X[:5, 3] = 9.0  # unseen values of the constant feature are shifted, not blown up
    got = run_onnx(model.to_onnx(tmp_path / "model.onnx"), X)
    standardized = scaler.transform(X)
    np.testing.assert_array_equal(got["label"], model.predict(standardized))
    assert_close(got["probabilities"], model.predict_proba(standardized), dtype)
    # without folding, raw features would give other outputs
    assert not np.allclose(model.predict_proba(X), got["probabilities"], atol=1e-3)
    props = {p.key: p.value for p in onnx.load(tmp_path / "model.onnx").metadata_props}
    assert props["fastmlp.standardizer_folded"] == "true"


def test_standardizer_of_other_width_or_unfitted_is_refused():
    model = fm.MLP(3, [fm.Dense(2)])
    model.standardizer = fm.Standardizer().fit(np.ones((4, 5)))
    with pytest.raises(ValueError, match="fitted on 5 features"):
        build_onnx_model(model)
    model.standardizer = fm.Standardizer()
    with pytest.raises(ValueError, match="not fitted"):
        build_onnx_model(model)


# ----------------------------------------------------------------------------- files

def test_to_onnx_writes_a_checked_file_with_metadata(tmp_path):
    model = fm.MLP(5, [fm.Dense(4, "relu", dropout=0.5), fm.Dense(3)], seed=0)
    path = tmp_path / "m.onnx"
    assert model.to_onnx(path) == str(path)
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.producer_name == "fastmlp" and loaded.producer_version == fm.__version__
    assert [(o.domain, o.version) for o in loaded.opset_import] == [("", DEFAULT_OPSET)]
    graph = loaded.graph
    assert [i.name for i in graph.input] == ["X"]
    x_type = graph.input[0].type.tensor_type
    assert x_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in x_type.shape.dim] == ["n", 5]
    assert not any(node.op_type == "Dropout" for node in graph.node)
    props = {p.key: p.value for p in loaded.metadata_props}
    assert json.loads(props["fastmlp.config"]) == model.get_config()
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]
    X = features(10, 5, "float32")
    np.testing.assert_array_equal(run_onnx(path, X)["label"], model.predict(X))


def test_float64_input_type(tmp_path):
    model = fm.MLP(2, [fm.Dense(2)], dtype="float64")
    model.to_onnx(str(tmp_path / "m.onnx"))
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert graph.output[1].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


def test_interrupted_export_leaves_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous")
    model = fm.MLP(3, [fm.Dense(2)])

    def fail(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        model.to_onnx(path)
    monkeypatch.undo()
    assert path.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]  # the temporary file is gone
    model.to_onnx(path)
    assert path.read_bytes() != b"previous"


@pytest.mark.parametrize("opset, error", [
    (MIN_OPSET - 1, ValueError), (10_000, ValueError), ("18", TypeError), (18.0, TypeError),
    (True, TypeError)])
def test_bad_opset_fails_before_writing(opset, error, tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(error, match="opset"):
        fm.MLP(3, [fm.Dense(2)]).to_onnx(path, opset=opset)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("path", [None, 3, b"m.onnx", ["m.onnx"]])
def test_bad_path_is_a_type_error(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match="path"):
        fm.MLP(3, [fm.Dense(2)]).to_onnx(path)
    assert os.listdir(tmp_path) == []


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fm.MLP(3, [fm.Dense(2)]).to_onnx(tmp_path / "absent" / "m.onnx")


def test_not_a_model_is_a_type_error():
    with pytest.raises(TypeError, match="fastmlp.MLP"):
        build_onnx_model(object())


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "fastmlp\[onnx\]"'):
        fm.MLP(3, [fm.Dense(2)]).to_onnx(tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []
