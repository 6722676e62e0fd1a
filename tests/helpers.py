"""Shared test helpers: random data per loss, central differences, error measures."""

import numpy as np

import fastmlp as fm

ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu", "maxout")
# (loss name, target kind)
LOSS_CASES = (("cross_entropy", "labels"), ("cross_entropy", "probs"), ("binary_cross_entropy", None),
              ("mse", None), ("hinge", "labels"))


def make_targets(loss, kind, n, c, rng):
    if loss in ("cross_entropy", "hinge") and kind == "labels":
        return rng.integers(0, c, size=n)
    if kind == "probs":
        return rng.dirichlet(np.ones(c), size=n)
    if loss == "binary_cross_entropy":
        return rng.uniform(0, 1, size=(n, c))
    return rng.normal(size=(n, c))


def dense(units, activation="linear", **kw):
    if activation == "leaky_relu":
        kw.setdefault("alpha", 0.1)
    if activation == "maxout":
        kw.setdefault("pieces", 3)
    return fm.Dense(units, activation, **kw)


def relative_error(a, b):
    """‖a − b‖ / (‖a‖ + ‖b‖), over all entries (0 when both vanish)."""
    a = np.concatenate([np.ravel(v) for v in a]) if isinstance(a, (list, tuple)) else np.ravel(a)
    b = np.concatenate([np.ravel(v) for v in b]) if isinstance(b, (list, tuple)) else np.ravel(b)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def numeric_gradient(model, X, y, l1=0.0, l2=0.0, step=0, eps=1e-6, training=True):
    """Central differences of model.loss_value with respect to every parameter (float64 model)."""
    grads = {}
    for key, value in model.params.items():
        g = np.zeros_like(value)
        flat, gflat = value.reshape(-1), g.reshape(-1)
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + eps
            up = model.loss_value(X, y, training=training, l1=l1, l2=l2, dropout_step=step)
            flat[k] = old - eps
            down = model.loss_value(X, y, training=training, l1=l1, l2=l2, dropout_step=step)
            flat[k] = old
            gflat[k] = (up - down) / (2 * eps)
        grads[key] = g
    return grads
