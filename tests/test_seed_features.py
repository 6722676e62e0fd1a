"""Every feature of the lecture notes (shared/seeds) is reachable from the public API.

Each entry names the seed, the feature and a small check that exercises it through ``fastmlp``;
the detailed numerical tests live in the per-module test files.
"""

import numpy as np
import pytest

import fastmlp as fm

rng = np.random.default_rng(0)
X = rng.normal(size=(12, 4))
y = np.arange(12) % 3


def net(activation="relu", **kw):
    return fm.MLP(4, [fm.Dense(6, activation, **kw), fm.Dense(3)], dtype="float64", seed=0)


def trains(optimizer, **trainer_kw):
    model = net()
    before = model.loss_value(X, y)
    fm.Trainer(model, optimizer, batch_size=4, epochs=5, progress=False, **trainer_kw).fit(X, y)
    return model.loss_value(X, y) < before


def softmax_gradient_is_p_minus_y():
    model = fm.MLP(4, [fm.Dense(3)], dtype="float64", seed=0)
    _, g = model.loss_and_grad(X, y)
    p = model.predict_proba(X)
    return np.allclose(g["0.b"], (p - np.eye(3)[y]).mean(axis=0))


FEATURES = {
    "000 error rate": lambda: fm.Trainer(net(), progress=False).evaluate(X, y)["accuracy"] >= 0,
    "000 MLP layers z = σ(Wz + b)": lambda: net().forward(X).shape == (12, 3),
    "000 softmax and logits": lambda: np.allclose(net().predict_proba(X).sum(axis=1), 1),
    "000 NLL = cross-entropy": lambda: net().loss_value(X, y) == pytest.approx(
        -np.log(net().predict_proba(X)[np.arange(12), y]).mean(), rel=1e-12),
    "000 log-sum-exp trick": lambda: np.isfinite(fm.MLP(4, [fm.Dense(3)], seed=0).loss_value(X * 1e4, y)),
    "000 dropout": lambda: not np.array_equal(net(dropout=0.5).forward(X, training=True),
                                              net(dropout=0.5).forward(X)),
    "000 batch normalization with running statistics": lambda: "0.running_var" in net(batchnorm=True).buffers,
    "001 sigmoid": lambda: net("sigmoid").forward(X).shape == (12, 3),
    "001 BCE + sigmoid": lambda: fm.MLP(4, [fm.Dense(1)], loss="binary_cross_entropy").loss_value(X, y % 2) > 0,
    "001 MSE": lambda: fm.MLP(4, [fm.Dense(1)], loss="mse").loss_value(X, y * 1.0) > 0,
    "001 cross-entropy gradient (softmax Jacobian)": softmax_gradient_is_p_minus_y,
    "001 gradient descent": lambda: trains(fm.SGD(0.1)),
    "001 finite-difference gradients": lambda: fm.gradcheck(net(), X, y).passed,
    "001 momentum": lambda: trains(fm.SGD(0.05, momentum=0.9)),
    "001 Nesterov momentum": lambda: trains(fm.SGD(0.05, momentum=0.9, nesterov=True)),
    "001 minibatches": lambda: trains(fm.SGD(0.1)),
    "001 Adam": lambda: trains(fm.Adam(1e-2)),
    "001 Rprop": lambda: trains(fm.Rprop(1e-3)),
    "001 Xavier initialization": lambda: fm.MLP(4, [fm.Dense(3)], init="xavier").params["0.W"].std() > 0,
    "001 ReLU / ELU": lambda: net("elu").forward(X).shape == (12, 3),
    "001 weight decay": lambda: trains(fm.SGD(0.1, weight_decay=1e-2)),
    "001 input normalization": lambda: np.allclose(fm.Standardizer().fit_transform(X).mean(axis=0), 0),
    "002 tanh": lambda: net("tanh").forward(X).shape == (12, 3),
    "002 softplus": lambda: net("softplus").forward(X).shape == (12, 3),
    "002 Adagrad": lambda: trains(fm.Adagrad(0.1)),
    "002 RMSProp": lambda: trains(fm.RMSProp(1e-2)),
    "002 L2 regularization": lambda: net().loss_value(X, y, l2=1.0) > net().loss_value(X, y),
    "002 L1 regularization": lambda: net().loss_value(X, y, l1=1.0) > net().loss_value(X, y),
    "002 elastic net": lambda: trains(fm.SGD(0.1), l1=1e-3, l2=1e-3),
    "003 early stopping": lambda: fm.Trainer(net(), epochs=3, progress=False,
                                            early_stopping=fm.EarlyStopping(patience=1)).fit(
                                                X, y, validation_split=0.25)["val_loss"] is not None,
    "003 standardization (mean, variance, eps)": lambda: fm.Standardizer(eps=1e-8).fit(X).scale_.shape == (4,),
    "003 bagging / ensembles": lambda: len(fm.Bagging(net(), n_estimators=2, epochs=1).fit(X, y).members) == 2,
    "003 per-epoch shuffling": lambda: fm.Trainer(net(), shuffle=True, seed=1).shuffle,
    "004 multiclass SVM (hinge) loss": lambda: fm.MLP(4, [fm.Dense(3)], loss="hinge").loss_value(X, y) >= 0,
    "004 gradient checking": lambda: fm.gradcheck(net("tanh"), X, y).passed,
    "004 Leaky ReLU": lambda: net("leaky_relu", alpha=0.1).forward(X).shape == (12, 3),
    "004 Maxout": lambda: net("maxout", pieces=2).params["0.W"].shape == (4, 12),
    "004 softmax classifier gradient p - y": softmax_gradient_is_p_minus_y,
}


@pytest.mark.parametrize("feature", list(FEATURES))
def test_seed_feature_is_reachable(feature):
    assert FEATURES[feature]()
