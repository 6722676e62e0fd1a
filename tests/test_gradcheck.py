"""fm.gradcheck: passes on the real gradients, catches wrong ones."""

import numpy as np
import pytest

import fastmlp as fm
from fastmlp import model as model_module


def setup():
    model = fm.MLP(4, [fm.Dense(6, "elu", batchnorm=True, dropout=0.3), fm.Dense(3)], seed=1)
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(8, 4)), rng.integers(0, 3, 8)


def test_passes_and_reports_every_parameter():
    model, X, y = setup()
    before = {k: v.copy() for k, v in model.buffers.items()}
    report = fm.gradcheck(model, X, y, l1=0.01, l2=0.02, on_failure="raise")
    assert report.passed and report.max_abs_error < 1e-7
    assert list(report.errors) == list(model.params)
    assert report.errors["0.W"]["checked"] == 24
    assert all(np.array_equal(model.buffers[k], v) for k, v in before.items())  # untouched
    assert "passed" in str(report)


def test_detects_a_wrong_gradient(monkeypatch):
    model, X, y = setup()
    real = model_module.MLP.loss_and_grad

    def skewed(self, *args, **kwargs):
        loss, grads = real(self, *args, **kwargs)
        grads["1.W"] *= 1.01
        return loss, grads

    monkeypatch.setattr(model_module.MLP, "loss_and_grad", skewed)
    with pytest.raises(fm.GradcheckError, match="disagree"):
        fm.gradcheck(model, X, y, on_failure="raise")
    with pytest.warns(fm.GradcheckWarning):
        report = fm.gradcheck(model, X, y)
    assert not report.passed and report.errors["1.W"]["max_rel_error"] > 5e-3
    assert report.errors["0.W"]["max_rel_error"] < 1e-5


def test_sampled_entries_and_bad_arguments():
    model, X, y = setup()
    report = fm.gradcheck(model, X, y, max_entries=5)
    assert report.errors["0.W"]["checked"] == 5 and report.errors["1.b"]["checked"] == 3
    with pytest.raises(ValueError, match="eps"):
        fm.gradcheck(model, X, y, eps=0.0)
    with pytest.raises(ValueError, match="on_failure"):
        fm.gradcheck(model, X, y, on_failure="shout")


def test_zero_gradients_do_not_report_a_relative_error_of_one():
    """A bias before batch normalization and the weights of a constant input feature have
    gradient 0; the central differences give rounding noise there (about 1e-10), whose relative
    error against 0 is 1. Those entries are judged by their absolute error, counted as small, and
    the reported relative errors are those of the gradients that are not near zero."""
    model = fm.MLP(5, [fm.Dense(6, "relu", batchnorm=True), fm.Dense(3)], seed=2)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 5))
    X[:, 2] = 0.0  # a constant (standardized) feature: its weights get no gradient
    y = rng.integers(0, 3, 12)
    report = fm.gradcheck(model, X, y, on_failure="raise")
    assert report.passed
    bias = report.errors["0.b"]
    assert bias["small"] == bias["checked"] == 6 and bias["failed"] == 0
    assert report.errors["0.W"]["small"] >= 6
    assert report.max_rel_error < 1e-5
    for entry in report.errors.values():
        assert entry["max_rel_error"] < 1e-5 and entry["worst_ratio"] <= 1.0
    text = str(report)
    assert "1.000e+00" not in text
    assert text.splitlines()[-1].startswith("passed: every entry has |analytic - numeric| <=")


def test_a_wrong_gradient_near_zero_fails(monkeypatch):
    """Small gradients are still checked: an error beyond atol fails, whatever its size
    relative to the gradient."""
    model = fm.MLP(5, [fm.Dense(6, "relu", batchnorm=True), fm.Dense(3)], seed=2)
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(12, 5)), rng.integers(0, 3, 12)
    real = model_module.MLP.loss_and_grad

    def offset(self, *args, **kwargs):
        loss, grads = real(self, *args, **kwargs)
        grads["0.b"] += 1e-6  # the true gradient is 0 (batchnorm follows)
        return loss, grads

    monkeypatch.setattr(model_module.MLP, "loss_and_grad", offset)
    with pytest.raises(fm.GradcheckError, match=r"0\.b \(6 of 6\)"):
        fm.gradcheck(model, X, y, on_failure="raise")
    report = fm.gradcheck(model, X, y, on_failure="ignore")
    assert not report.passed
    assert report.errors["0.b"]["failed"] == 6 and report.errors["0.b"]["worst_ratio"] > 1
    assert report.errors["0.W"]["failed"] == 0
    assert "FAILED" in str(report).splitlines()[-1]


def test_nan_gradients_fail_and_show(monkeypatch):
    model, X, y = setup()
    real = model_module.MLP.loss_and_grad

    def broken(self, *args, **kwargs):
        loss, grads = real(self, *args, **kwargs)
        grads["1.b"][0] = np.nan
        return loss, grads

    monkeypatch.setattr(model_module.MLP, "loss_and_grad", broken)
    report = fm.gradcheck(model, X, y, on_failure="ignore")
    assert not report.passed and report.errors["1.b"]["failed"] == 1
    assert np.isnan(report.errors["1.b"]["max_abs_error"]) and np.isnan(report.max_abs_error)


def test_verdict_agrees_with_the_tolerance_ratio():
    model, X, y = setup()
    for rtol, atol in ((1e-5, 1e-8), (1e-12, 0.0), (0.0, 1e-12)):
        report = fm.gradcheck(model, X, y, rtol=rtol, atol=atol, on_failure="ignore")
        for entry in report.errors.values():
            assert (entry["failed"] == 0) == (entry["worst_ratio"] <= 1.0)
        assert report.passed == all(e["failed"] == 0 for e in report.errors.values())
