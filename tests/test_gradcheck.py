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
