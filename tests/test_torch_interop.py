"""MLP.from_torch / MLP.to_torch: evaluation-mode outputs agree both ways, weights and running
statistics round-trip exactly, unsupported modules and settings are named in the errors."""

import sys

import numpy as np
import pytest

import fastmlp as fm

torch = pytest.importorskip("torch")
nn = torch.nn

TOL = {"float32": 1e-5, "float64": 1e-9}
DTYPES = tuple(TOL)
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def features(n, d, dtype, scale=2.0, seed=1):
    return (np.random.default_rng(seed).normal(size=(n, d)) * scale).astype(dtype)


def torch_outputs(module, X):
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(X)).numpy()


def trained_batchnorm_stats(module, d, dtype, steps=5):
    """Run training-mode forward passes so every BatchNorm1d has non-trivial running statistics,
    and give the affine parameters values away from 1 and 0."""
    generator = torch.Generator().manual_seed(0)
    module.train()
    with torch.no_grad():
        for _ in range(steps):
            module(torch.randn(32, d, generator=generator, dtype=TORCH_DTYPES[dtype]) * 3 + 1)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm1d) and m.affine:
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(0, 0.5, generator=generator)
    return module.eval()


def every_module(dtype):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(6, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(10, 9), nn.LeakyReLU(0.2),
        nn.Sequential(nn.Linear(9, 8, bias=False), nn.BatchNorm1d(8, affine=False), nn.ELU(0.7)),
        nn.Linear(8, 8), nn.Sigmoid(), nn.Identity(),
        nn.Linear(8, 7), nn.Tanh(),
        nn.Linear(7, 6), nn.Softplus(),
        nn.Linear(6, 5), nn.BatchNorm1d(5), nn.GELU(), nn.Dropout(0.1),
        nn.Linear(5, 3),
    ).to(TORCH_DTYPES[dtype])


# ----------------------------------------------------------------------------- from_torch

@pytest.mark.parametrize("dtype", DTYPES)
def test_from_torch_every_supported_module(dtype):
    module = trained_batchnorm_stats(every_module(dtype), 6, dtype)
    assert module[2].running_var.sub(1).abs().max() > 0.5  # the statistics moved
    model = fm.MLP.from_torch(module)
    assert model.dtype == np.dtype(dtype) and model.loss == "cross_entropy"
    assert [layer.get_config() for layer in model.layers] == [
        fm.Dense(10, "relu", batchnorm=True, dropout=0.25).get_config(),
        fm.Dense(9, "leaky_relu", alpha=0.2).get_config(),
        fm.Dense(8, "elu", batchnorm=True, alpha=0.7).get_config(),
        fm.Dense(8, "sigmoid").get_config(),
        fm.Dense(7, "tanh").get_config(),
        fm.Dense(6, "softplus").get_config(),
        fm.Dense(5, "gelu", batchnorm=True, dropout=0.1).get_config(),
        fm.Dense(3).get_config(),
    ]
    np.testing.assert_array_equal(model.params["2.b"], 0.0)  # Linear(bias=False)
    np.testing.assert_array_equal(model.params["2.gamma"], 1.0)  # BatchNorm1d(affine=False)
    X = features(64, 6, dtype)
    expected = torch_outputs(module, X)
    np.testing.assert_allclose(model.forward(X), expected, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_array_equal(model.predict(X), expected.argmax(axis=1))


def test_from_torch_transposes_weights_exactly():
    linear = nn.Linear(3, 2)
    model = fm.MLP.from_torch(nn.Sequential(linear))
    np.testing.assert_array_equal(model.params["0.W"], linear.weight.detach().numpy().T)
    np.testing.assert_array_equal(model.params["0.b"], linear.bias.detach().numpy())


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "mse", "hinge"])
def test_from_torch_takes_the_callers_loss(loss):
    module = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    model = fm.MLP.from_torch(module, loss=loss, seed=5)
    assert model.loss == loss and model.seed == 5
    X = features(20, 4, "float64")
    z = torch_outputs(module, X)
    if loss == "binary_cross_entropy":
        np.testing.assert_allclose(model.predict_proba(X), 1 / (1 + np.exp(-z)), rtol=1e-9)
    else:
        np.testing.assert_allclose(model.forward(X), z, rtol=1e-9, atol=1e-9)


def test_from_torch_dtype_argument_casts_and_mixed_dtypes_need_it():
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2).double())
    with pytest.raises(ValueError, match="dtype"):
        fm.MLP.from_torch(module)
    model = fm.MLP.from_torch(module, dtype="float64")
    assert model.dtype == np.float64
    np.testing.assert_array_equal(model.params["0.W"],
                                  module[0].weight.detach().double().numpy().T)


def test_softplus_beyond_torch_threshold_agrees():
    """torch's Softplus returns x above 20; fastmlp's x + log1p(e^-x) differs by < 2.1e-9."""
    module = nn.Sequential(nn.Linear(1, 1), nn.Softplus(), nn.Linear(1, 1)).double()
    with torch.no_grad():
        module[0].weight.fill_(1.0)
        module[0].bias.zero_()
    X = np.linspace(-60, 60, 241)[:, None]
    np.testing.assert_allclose(fm.MLP.from_torch(module, loss="mse").forward(X),
                               torch_outputs(module, X), rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------- to_torch

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation, options", [
    ("linear", {}), ("sigmoid", {}), ("tanh", {}), ("relu", {}), ("leaky_relu", {"alpha": 0.3}),
    ("elu", {"alpha": 0.5}), ("softplus", {}), ("gelu", {})])
def test_to_torch_matches_forward(activation, options, dtype):
    model = fm.MLP(5, [fm.Dense(8, activation, batchnorm=True, dropout=0.4, **options),
                       fm.Dense(6, activation, **options), fm.Dense(3)], dtype=dtype, seed=1)
    rng = np.random.default_rng(0)
    model.buffers["0.running_mean"] = rng.normal(size=8)
    model.buffers["0.running_var"] = rng.uniform(0.2, 3.0, size=8)
    model.params["0.gamma"] = rng.uniform(0.5, 1.5, size=8)
    model.params["0.beta"] = rng.normal(size=8)
    module = model.to_torch()
    assert not module.training
    bn, dropout = module[1], module[3 if activation != "linear" else 2]
    assert isinstance(bn, nn.BatchNorm1d) and (bn.eps, bn.momentum) == (1e-5, 0.1)
    assert isinstance(dropout, nn.Dropout) and dropout.p == 0.4
    assert all(p.dtype == TORCH_DTYPES[dtype] for p in module.parameters())
    X = features(50, 5, dtype)
    np.testing.assert_allclose(torch_outputs(module, X), model.forward(X), rtol=TOL[dtype],
                               atol=TOL[dtype])


def test_to_torch_refuses_maxout():
    model = fm.MLP(3, [fm.Dense(4, "relu"), fm.Dense(4, "maxout", pieces=2), fm.Dense(2)])
    with pytest.raises(ValueError, match="layer 1 uses maxout"):
        model.to_torch()


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_to_fastmlp_to_torch_round_trip_is_exact(dtype):
    torch.manual_seed(1)
    module = nn.Sequential(nn.Linear(4, 7), nn.BatchNorm1d(7), nn.ELU(0.3), nn.Dropout(0.2),
                           nn.Linear(7, 5), nn.GELU(), nn.Linear(5, 3)).to(TORCH_DTYPES[dtype])
    module = trained_batchnorm_stats(module, 4, dtype)
    back = fm.MLP.from_torch(module).to_torch()
    assert [type(m) for m in back] == [type(m) for m in module]
    assert back[2].alpha == 0.3 and back[3].p == 0.2
    original, returned = module.state_dict(), back.state_dict()
    assert set(original) == set(returned)
    for key, value in original.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(returned[key], value), key
    X = features(30, 4, dtype)
    np.testing.assert_array_equal(torch_outputs(back, X), torch_outputs(module, X))


def test_fastmlp_to_torch_to_fastmlp_round_trip_is_exact():
    model = fm.MLP(4, [fm.Dense(6, "leaky_relu", alpha=0.1, batchnorm=True, dropout=0.3),
                       fm.Dense(2, "softplus")], loss="mse", dtype="float64", seed=3)
    model.buffers["0.running_var"] = np.linspace(0.5, 2.0, 6)
    again = fm.MLP.from_torch(model.to_torch(), loss="mse", seed=3)
    assert again.get_config() == model.get_config()
    for mine, theirs in ((model.params, again.params), (model.buffers, again.buffers)):
        for key, value in mine.items():
            np.testing.assert_array_equal(theirs[key], value, err_msg=key)


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("modules, error, words", [
    ([nn.Linear(3, 4), nn.ReLU(), nn.Conv1d(1, 1, 1)], TypeError, ["module 2", "Conv1d"]),
    ([nn.Linear(3, 4), nn.Softmax(dim=1)], TypeError, ["module 1", "Softmax", "logits"]),
    ([nn.Linear(3, 4), nn.Sequential(nn.ReLU(), nn.SiLU())], TypeError, ["module 1.1", "SiLU"]),
    ([nn.Linear(3, 4), nn.GELU(approximate="tanh")], ValueError, ["module 1", "tanh"]),
    ([nn.Linear(3, 4), nn.Softplus(beta=2)], ValueError, ["beta"]),
    ([nn.Linear(3, 4), nn.Softplus(threshold=5)], ValueError, ["threshold"]),
    ([nn.Linear(3, 4), nn.BatchNorm1d(4, eps=1e-3)], ValueError, ["eps"]),
    ([nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False)], ValueError,
     ["running statistics"]),
    ([nn.Linear(3, 4), nn.BatchNorm1d(5)], ValueError, ["BatchNorm1d(5)"]),
    ([nn.ReLU(), nn.Linear(3, 4)], ValueError, ["module 0", "before the first Linear"]),
    ([nn.Linear(3, 4), nn.ReLU(), nn.Tanh()], ValueError, ["module 2", "follows an activation"]),
    ([nn.Linear(3, 4), nn.Dropout(0.1), nn.BatchNorm1d(4)], ValueError, ["module 2", "Dropout"]),
    ([nn.Linear(3, 4), nn.Linear(5, 2)], ValueError, ["module 1", "5 inputs"]),
    ([nn.Flatten(0)], ValueError, ["Flatten(start_dim=0"]),
    ([nn.Identity()], ValueError, ["no Linear"]),
])
def test_unsupported_modules_are_named(modules, error, words):
    with pytest.raises(error) as info:
        fm.MLP.from_torch(nn.Sequential(*modules))
    for word in words:
        assert word in str(info.value)


def test_from_torch_needs_a_sequential():
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        fm.MLP.from_torch(nn.Linear(3, 2))


def test_label_losses_still_need_two_outputs():
    with pytest.raises(ValueError, match="at least 2 units"):
        fm.MLP.from_torch(nn.Sequential(nn.Linear(3, 1)), loss="hinge")


def test_missing_torch_names_the_extra(monkeypatch):
    model = fm.MLP(3, [fm.Dense(2)])
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r'pip install "fastmlp\[torch\]"'):
        model.to_torch()
    with pytest.raises(ImportError, match=r'pip install "fastmlp\[torch\]"'):
        fm.MLP.from_torch(object())
