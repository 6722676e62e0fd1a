"""The ``fastmlp export`` command: a saved model to an ONNX file, and its usage errors."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp as fm
from fastmlp import cli

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parent.parent


def run(argv, capsys):
    """(exit code, stdout, stderr) of ``fastmlp`` called in-process."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def onnx_outputs(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"X": X})))


@pytest.fixture
def saved_model(tmp_path):
    """A small classifier saved with a Standardizer: (path, model, raw features float32)."""
    rng = np.random.default_rng(0)
    raw = (rng.normal(size=(60, 4)) * [1.0, 10.0, 0.1, 3.0] + [5.0, -2.0, 0.0, 1.0])
    raw = raw.astype(np.float32)
    scaler = fm.Standardizer().fit(raw)
    model = fm.MLP(4, [fm.Dense(8, "relu", batchnorm=True, dropout=0.1), fm.Dense(3)], seed=0)
    model.buffers["0.running_var"] = np.linspace(0.5, 2.0, 8)
    path = tmp_path / "model.npz"
    model.save(path, standardizer=scaler)
    return path, fm.MLP.load(path), raw


def test_export_writes_an_onnx_file_equal_to_predict(saved_model, tmp_path, capsys):
    path, model, raw = saved_model
    target = tmp_path / "model.onnx"
    code, out, err = run(["export", path, target], capsys)
    assert code == 0, err
    assert err == ""
    assert out.startswith(f"wrote {target} (ONNX opset 18): input X float32 (n, 4), a "
                          f"Standardizer folded in; outputs label int64 (n,), probabilities "
                          f"float32 (n, 3)")
    got = onnx_outputs(target, raw)
    standardized = model.standardizer.transform(raw)
    np.testing.assert_array_equal(got["label"], model.predict(standardized))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(standardized),
                               rtol=1e-5, atol=1e-5)


def test_export_opset_and_quiet(saved_model, tmp_path, capsys):
    path, _, _ = saved_model
    target = tmp_path / "model.onnx"
    code, out, err = run(["export", path, target, "--opset", "13", "--quiet"], capsys)
    assert (code, out, err) == (0, "", "")
    assert [o.version for o in onnx.load(str(target)).opset_import] == [13]


def test_export_of_a_trained_run(tmp_path, capsys):
    """The model.npz of ``fastmlp train`` (batchnorm, dropout, stored Standardizer) exports."""
    folder = tmp_path / "run"
    code, _, err = run(["train", "--hidden", "16", "--epochs", "2", "--quiet", "--output", folder],
                       capsys)
    assert code == 0, err
    code, out, err = run(["export", folder / "model.npz", folder / "model.onnx"], capsys)
    assert code == 0, err
    model = fm.MLP.load(folder / "model.npz")
    X = fm.datasets.load_digits().X_test[:50].astype(np.float32)
    got = onnx_outputs(folder / "model.onnx", X)
    np.testing.assert_array_equal(got["label"], model.predict(model.standardizer.transform(X)))


@pytest.mark.parametrize("make_args, message", [
    (lambda d, m: [d / "absent.npz", d / "m.onnx"], "error: no such file"),
    (lambda d, m: [m, d / "m.onnx", "--opset", "99999"], "error: opset must be in 13.."),
    (lambda d, m: [m, d / "absent" / "m.onnx"], "does not exist"),
    (lambda d, m: [d / "not-a-model.npz", d / "m.onnx"], "error: "),
])
def test_export_errors_are_one_line_with_status_2(make_args, message, saved_model, tmp_path,
                                                  capsys):
    path, _, _ = saved_model
    np.savez(tmp_path / "not-a-model.npz", a=np.zeros(3))
    before = sorted(os.listdir(tmp_path))
    code, out, err = run(["export", *make_args(tmp_path, path)], capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before  # nothing written


@pytest.mark.parametrize("argv", [["export"], ["export", "m.npz"],
                                  ["export", "m.npz", "m.onnx", "--opset", "x"],
                                  ["export", "m.npz", "m.onnx", "--opset", "0"]])
def test_export_usage_errors(argv, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("fastmlp export: error: ")
    assert len(err.splitlines()) == 1 and err.rstrip().endswith("(see 'fastmlp export --help')")


def test_export_without_onnx_names_the_extra(saved_model, tmp_path, capsys, monkeypatch):
    path, _, _ = saved_model
    monkeypatch.setitem(sys.modules, "onnx", None)
    code, _, err = run(["export", path, tmp_path / "m.onnx"], capsys)
    assert code == 2
    assert 'pip install "fastmlp[onnx]"' in err and err.count("\n") == 1


def test_help_lists_export(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "export" in out
    code, out, _ = run(["export", "--help"], capsys)
    assert code == 0
    for word in ("MODEL.npz", "MODEL.onnx", "--opset", "--quiet", "Standardizer"):
        assert word in out


def test_python_dash_m_export(saved_model, tmp_path):
    path, _, _ = saved_model
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "export", str(path),
                           str(tmp_path / "m.onnx")], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("wrote ")
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")))
