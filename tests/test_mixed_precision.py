"""dtype="mixed_bfloat16": float32 parameters, gradients, state and loss; every matrix product on
bfloat16 operands summed in float32 (the kernels' bfloat16 path, against NumPy references that
round the same operands)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp as fm
from fastmlp.kernels.cpu.onednn import bf16_support

REASON = bf16_support()
# the tests that run the bfloat16 products; the errors of a machine without them run anywhere
needs_bf16 = pytest.mark.skipif(REASON is not None, reason=f"bfloat16 products: {REASON}")

MIXED = "mixed_bfloat16"
ACT = {"relu": (lambda z: np.maximum(z, 0.0), lambda z, h: (z > 0).astype(z.dtype)),
       "tanh": (np.tanh, lambda z, h: 1.0 - h * h),
       "linear": (lambda z: z, lambda z, h: np.ones_like(z))}


def bf16(a):
    """float32 ``a`` rounded to the nearest bfloat16 (ties to even), as float64."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32) << 16
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


def exact(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def reference(model, X, y, rounding):
    """(outputs, mean cross-entropy, gradients) of a dense network without batchnorm or dropout,
    in float64 with every product operand passed through ``rounding`` first (the layer outputs
    and dpre rounded from their float32 values)."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in model.params.items()}
    hs, zs = [np.asarray(X, dtype=np.float64)], []
    for l, layer in enumerate(model.layers):
        z = rounding(hs[-1]) @ rounding(p[f"{l}.W"]) + p[f"{l}.b"]
        zs.append(z)
        hs.append(ACT[layer.activation][0](z))
    z = hs[-1]
    n = z.shape[0]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(probs[np.arange(n), y]))
    dz = probs.copy()
    dz[np.arange(n), y] -= 1.0
    dh = dz / n
    grads = {}
    for l in range(len(model.layers) - 1, -1, -1):
        dpre = dh * ACT[model.layers[l].activation][1](zs[l], hs[l + 1])
        grads[f"{l}.W"] = rounding(hs[l]).T @ rounding(dpre)
        grads[f"{l}.b"] = dpre.sum(axis=0)
        dh = rounding(dpre) @ rounding(p[f"{l}.W"]).T
    return hs[-1], loss, grads


def relative(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def teacher_data(n, d, classes, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = np.argmax(X @ rng.normal(size=(d, classes)), axis=1)
    return X, y


def small_model(policy, sizes=(20, 64, 32, 3), activations=("relu", "tanh"), seed=1):
    layers = [fm.Dense(u, a) for u, a in zip(sizes[1:-1], activations)] + [fm.Dense(sizes[-1])]
    return fm.MLP(sizes[0], layers, dtype=policy, seed=seed)


@needs_bf16
def test_the_policy_is_float32_state_with_its_own_name():
    model = small_model(MIXED)
    assert model.dtype == np.float32 and model.dtype_policy == MIXED
    assert all(v.dtype == np.float32 for v in model.params.values())
    assert model.get_config()["dtype"] == MIXED and "dtype='mixed_bfloat16'" in repr(model)
    assert model.copy().dtype_policy == MIXED
    assert model.copy(dtype="float32").dtype_policy == "float32"
    assert fm.MLP(4, [fm.Dense(2)], dtype="float32").dtype_policy == "float32"


@needs_bf16
@pytest.mark.parametrize("sizes, rows", [((20, 64, 32, 3), 37), ((300, 256, 128, 10), 256)])
def test_forward_products_take_bfloat16_operands(sizes, rows):
    """Outputs equal the float64 reference whose product operands are rounded to bfloat16, far
    closer than the float32 model's (which is about bfloat16's precision away). The second size
    is cut into parts by the team of threads on a machine with 2 cores or more."""
    model = small_model(MIXED, sizes)
    X, y = teacher_data(rows, sizes[0], sizes[-1])
    expected = reference(model, X, y, bf16)[0]
    mixed_error = relative(model.forward(X), expected)
    float32_error = relative(model.copy(dtype="float32").forward(X), expected)
    # (a float32 value one ulp from the reference's may round to the other bfloat16 neighbour)
    assert mixed_error < 1e-4
    assert float32_error > 30 * mixed_error
    assert relative(model.predict_proba(X), _softmax(expected)) < 1e-4


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@needs_bf16
@pytest.mark.parametrize("sizes, rows", [((20, 64, 32, 3), 48), ((300, 256, 128, 10), 256)])
def test_gradients_are_those_of_the_bfloat16_products(sizes, rows):
    model = small_model(MIXED, sizes)
    X, y = teacher_data(rows, sizes[0], sizes[-1])
    _, loss_ref, grads_ref = reference(model, X, y, bf16)
    loss, grads = model.loss_and_grad(X, y)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    _, _, grads_f32 = reference(model, X, y, exact)
    for key, expected in grads_ref.items():
        error = relative(grads[key], expected)
        assert grads[key].dtype == np.float32
        assert error < 5e-4, key
        if key.endswith(".W"):
            assert relative(grads_f32[key], expected) > 10 * error, key


@needs_bf16
def test_gradients_agree_with_float64_to_bfloat16_precision():
    """The gradient check of a mixed model: against the float64 model's exact gradient, at the
    precision bfloat16 operands allow: 8 significant bits, a relative error of about 2e-3 per
    rounded operand, which grows through the layers and is amplified where the terms summed over
    the batch cancel (here 0.1-4% per array, in norm)."""
    model = small_model(MIXED, (30, 64, 64, 5), ("relu", "relu"))
    X, y = teacher_data(256, 30, 5)
    _, grads = model.loss_and_grad(X, y)
    _, grads64 = model.copy(dtype="float64").loss_and_grad(X.astype(np.float64), y)
    for key, expected in grads64.items():
        assert relative(grads[key], expected) < 6e-2, key
    # and the check fails for a wrong gradient: the float64 model's of other labels
    _, wrong = model.copy(dtype="float64").loss_and_grad(X.astype(np.float64), (y + 1) % 5)
    assert min(relative(grads[key], wrong[key]) for key in wrong) > 6e-2


@needs_bf16
def test_every_layer_option_trains_and_stays_float32(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 12)).astype(np.float32)
    y = rng.integers(0, 4, 200)
    layers = [fm.Dense(32, "relu", batchnorm=True, dropout=0.2), fm.Dense(16, "maxout", pieces=3),
              fm.Dense(16, "gelu", dropout=0.1), fm.Dense(4, batchnorm=True)]
    model = fm.MLP(12, layers, dtype=MIXED, seed=3)
    trainer = fm.Trainer(model, fm.Adam(1e-2), batch_size=32, epochs=3, progress=False)
    history = trainer.fit(X, y, validation_split=0.2)
    assert np.all(np.isfinite(history["loss"])) and history["loss"][-1] < history["loss"][0]
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in model.params.values())
    assert all(v.dtype == np.float32 for v in model.buffers.values())
    state = trainer.optimizer.state_dict()
    assert all(a.dtype == np.float32 for a in _arrays(state))
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fm.MLP.load(path)
    assert loaded.dtype_policy == MIXED
    assert all(loaded.params[k].dtype == np.float32 for k in loaded.params)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def _arrays(value):
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _arrays(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _arrays(v)


@needs_bf16
def test_a_checkpoint_resumes_exactly(tmp_path):
    X, y = teacher_data(320, 16, 4)
    def trainer(model):
        return fm.Trainer(model, fm.Adam(1e-2), batch_size=32, epochs=4, progress=False, seed=5)
    straight = trainer(small_model(MIXED, (16, 48, 24, 4)))
    straight.fit(X, y)
    first = trainer(small_model(MIXED, (16, 48, 24, 4)))
    first.epochs = 2
    first.fit(X, y)
    path = tmp_path / "run.ckpt.npz"
    first.save_checkpoint(path)
    resumed = fm.Trainer.load_checkpoint(path)
    assert resumed.model.dtype_policy == MIXED
    resumed.epochs = 4
    resumed.fit(X, y)
    for key, value in straight.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[key], value)


@needs_bf16
def test_test_accuracy_is_within_one_point_of_float32(tmp_path):
    """Digits (64-256-128-10 ReLU, Adam 1e-3, batch 64, 30 epochs) and the MNIST-1D paper recipe
    (40-100-100-10, Adam 1e-2, batch 100, 150 epochs = 6000 steps): over 20 seeds, the mixed
    model's mean test accuracy is within 1 point of the float32 model's. (One MNIST-1D run moves
    by about 2 points from seed to seed, and the two policies' runs part ways early: fewer seeds
    could not tell 1 point from noise; 20 give a standard error of about 0.4 points.)"""
    pytest.importorskip("mnist1d")
    script = Path(__file__).resolve().parents[1] / "scripts" / "mixed_precision_quality.py"
    out = tmp_path / "quality.json"
    proc = subprocess.run([sys.executable, str(script), "--seeds", "20", "--json", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    for task, floor in (("digits", 0.9), ("mnist1d", 0.6)):
        float32 = np.mean(results[task]["float32"])
        mixed = np.mean(results[task][MIXED])
        assert len(results[task][MIXED]) == 20
        assert abs(mixed - float32) <= 0.01, (task, float32, mixed)
        assert mixed > floor, (task, mixed)


@needs_bf16
def test_exported_models_compute_in_float32(tmp_path):
    """ONNX and PyTorch get the float32 parameters; their products are float32 ones."""
    model = small_model(MIXED)
    X, y = teacher_data(16, 20, 3)
    float32 = model.copy(dtype="float32").predict_proba(X)
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "model.onnx"
    model.to_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["probabilities"], {session.get_inputs()[0].name: X})
    np.testing.assert_allclose(probabilities, float32, rtol=1e-5, atol=1e-6)
    assert np.abs(probabilities - model.predict_proba(X)).max() > 1e-6  # (bfloat16 products)
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        logits = model.to_torch()(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(logits, model.copy(dtype="float32").forward(X), rtol=1e-5,
                               atol=1e-5)


def test_mixed_bfloat16_is_refused_on_a_gpu():
    with pytest.raises(ValueError, match="mixed_bfloat16.*CPU only"):
        fm.MLP(4, [fm.Dense(2)], dtype=MIXED, device="cuda")


def test_a_machine_without_bfloat16_products_gets_an_error_naming_what_is_missing(
        monkeypatch, tmp_path, capsys):
    from fastmlp import cli
    from fastmlp.kernels.cpu import onednn
    message = "mixed_bfloat16 cannot run here: oneDNN is not installed (pip install ...)"
    monkeypatch.setattr(onednn, "bf16_support", lambda: message)
    with pytest.raises(fm.BFloat16UnavailableError, match="oneDNN is not installed"):
        fm.MLP(4, [fm.Dense(2)], dtype=MIXED)
    assert issubclass(fm.BFloat16UnavailableError, RuntimeError)
    # the command line: one line on stderr, exit status 2, no output folder left behind
    out = tmp_path / "run"
    assert cli.main(["train", "--dtype", MIXED, "--epochs", "1", "--output", str(out),
                     "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"fastmlp train: error: {message}"
    assert not out.exists()


@pytest.mark.parametrize("bad", ["bfloat16", "mixed_float16", "float16", 3])
def test_other_policies_are_refused(bad):
    with pytest.raises(ValueError, match="'float32', 'float64' or 'mixed_bfloat16'"):
        fm.MLP(4, [fm.Dense(2)], dtype=bad)


@needs_bf16
def test_the_scikit_learn_estimator_trains_a_mixed_model():
    from fastmlp.sklearn import MLPClassifier
    X, y = teacher_data(300, 10, 3)
    scores = {}
    for policy in ("float32", MIXED):
        clf = MLPClassifier(hidden_layer_sizes=(32,), learning_rate=1e-2, epochs=50,
                            batch_size=32, dtype=policy, random_state=0).fit(X, y)
        assert clf.model_.dtype_policy == policy
        scores[policy] = clf.score(X, y)
    assert scores[MIXED] > 0.9 and abs(scores[MIXED] - scores["float32"]) < 0.03, scores


@needs_bf16
def test_bagging_trains_mixed_members():
    X, y = teacher_data(240, 10, 3)
    scores = {}
    for policy in ("float32", MIXED):
        bag = fm.Bagging(small_model(policy, (10, 32, 16, 3)), n_estimators=2,
                         optimizer=fm.Adam(1e-2), batch_size=32, epochs=20, seed=0).fit(X, y)
        assert [member.dtype_policy for member in bag.members] == [policy, policy]
        scores[policy] = np.mean(bag.predict(X) == y)
    assert scores[MIXED] > 0.9 and abs(scores[MIXED] - scores["float32"]) < 0.03, scores


@needs_bf16
def test_the_command_line_trains_a_mixed_model(tmp_path):
    from fastmlp import cli
    X, y = teacher_data(200, 8, 3)
    data = tmp_path / "data.npz"
    np.savez(data, X=X, y=y)
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", str(data), "--dtype", MIXED, "--epochs", "3",
                     "--hidden", "16", "--output", str(out), "--quiet"]) == 0
    model = fm.MLP.load(out / "model.npz")
    assert model.dtype_policy == MIXED
