"""Optimizers: one table of optimizer variants run through the same checks.

Checks per case: (a) one closed-form step from hand-set state; (b) a 10-step float64 trajectory
against the NumPy reference below; (c) the same trajectory against torch.optim (when installed);
(d) the float32 kernels against the float64 reference; (e) a state_dict round trip (also through
np.savez / np.load with allow_pickle=False) that continues bit-identically. Then: invalid
hyper-parameters (f) and malformed params/grads dicts (g).

Every trajectory halves lr after step 5, so the mutable ``lr`` attribute is exercised too.
"""

import json
from typing import Callable, NamedTuple

import numpy as np
import pytest

from fastmlp.optimizers import (
    OPTIMIZERS,
    SGD,
    Adagrad,
    Adam,
    AdamW,
    Optimizer,
    RMSProp,
    RMSprop,
    Rprop,
    get_optimizer,
)

# ---------------------------------------------------------------- the table

P0 = np.array([1.0, -2.0, 0.5, 3.0])
G0 = np.array([0.5, -1.0, 2.0, 0.0])


class Case(NamedTuple):
    id: str
    cls: type
    hyper: dict
    state: dict          # hand-set state for (a): "step" and arrays (scalars are broadcast)
    expected: Callable   # (p, g) -> the parameter after one step from ``state``, by hand


def _adagrad_decay_wd(p, g):
    d = g + 0.1 * p
    return p - 0.05 * d / (np.sqrt(0.25 + d ** 2) + 1e-3)       # clr = 0.1 / (1 + 2 * 0.5)


def _rmsprop_centered(p, g):
    v, a = 0.036 + 0.1 * g ** 2, 0.09 + 0.1 * g
    return p - 0.01 * g / (np.sqrt(v - a ** 2) + 1e-8)


def _rmsprop_centered_momentum_wd(p, g):
    d = g + 0.1 * p
    v, a = 0.036 + 0.1 * d ** 2, 0.09 + 0.1 * d
    return p - 0.01 * (0.1 + d / (np.sqrt(v - a ** 2) + 1e-3))


def _adam_wd(p, g):
    d = g + 0.1 * p
    m, v = 0.1 + 0.5 * d, 0.03 + 0.25 * d ** 2                  # t = 2, betas (0.5, 0.75)
    return p - 0.01 * (m / 0.75) / (np.sqrt(v / 0.4375) + 1e-8)


def _adam_amsgrad(p, g):
    m, v = 0.1 + 0.5 * g, np.maximum(1.0, 0.03 + 0.25 * g ** 2)
    return p - 0.01 * (m / 0.75) / (np.sqrt(v / 0.4375) + 1e-8)


def _adamw(p, g):
    m, v = 0.1 + 0.5 * g, 0.03 + 0.25 * g ** 2
    return 0.999 * p - 0.01 * (m / 0.75) / (np.sqrt(v / 0.4375) + 1e-8)


def _adamw_amsgrad(p, g):
    m, v = 0.1 + 0.5 * g, np.maximum(1.0, 0.03 + 0.25 * g ** 2)
    return 0.999 * p - 0.01 * (m / 0.75) / (np.sqrt(v / 0.4375) + 1e-8)


BETAS = (0.5, 0.75)
CASES = [
    Case("sgd", SGD, dict(lr=0.1), {"step": 0}, lambda p, g: p - 0.1 * g),
    Case("sgd-weight_decay", SGD, dict(lr=0.1, weight_decay=0.01), {"step": 3},
         lambda p, g: p - 0.1 * (g + 0.01 * p)),
    Case("sgd-momentum-first", SGD, dict(lr=0.1, momentum=0.9), {"step": 0},
         lambda p, g: p - 0.1 * g),
    Case("sgd-momentum", SGD, dict(lr=0.1, momentum=0.9), {"step": 1, "momentum_buffer": 0.5},
         lambda p, g: p - 0.1 * (0.45 + g)),
    Case("sgd-dampening-wd", SGD, dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.01),
         {"step": 1, "momentum_buffer": 0.5},
         lambda p, g: p - 0.1 * (0.45 + 0.5 * (g + 0.01 * p))),
    Case("sgd-nesterov", SGD, dict(lr=0.1, momentum=0.9, nesterov=True),
         {"step": 1, "momentum_buffer": 0.5}, lambda p, g: p - 0.1 * (g + 0.9 * (0.45 + g))),
    Case("adagrad", Adagrad, dict(lr=0.1), {"step": 0, "sum": 0.25},
         lambda p, g: p - 0.1 * g / (np.sqrt(0.25 + g ** 2) + 1e-10)),
    Case("adagrad-decay-wd", Adagrad,
         dict(lr=0.1, lr_decay=0.5, weight_decay=0.1, initial_accumulator_value=0.1, eps=1e-3),
         {"step": 2, "sum": 0.25}, _adagrad_decay_wd),
    Case("rmsprop", RMSProp, dict(lr=0.01, alpha=0.9), {"step": 4, "square_avg": 0.04},
         lambda p, g: p - 0.01 * g / (np.sqrt(0.036 + 0.1 * g ** 2) + 1e-8)),
    Case("rmsprop-momentum", RMSProp, dict(lr=0.01, alpha=0.9, momentum=0.5),
         {"step": 4, "square_avg": 0.04, "momentum_buffer": 0.2},
         lambda p, g: p - 0.01 * (0.1 + g / (np.sqrt(0.036 + 0.1 * g ** 2) + 1e-8))),
    Case("rmsprop-centered", RMSProp, dict(lr=0.01, alpha=0.9, centered=True),
         {"step": 4, "square_avg": 0.04, "grad_avg": 0.1}, _rmsprop_centered),
    Case("rmsprop-centered-momentum-wd", RMSProp,
         dict(lr=0.01, alpha=0.9, eps=1e-3, weight_decay=0.1, momentum=0.5, centered=True),
         {"step": 4, "square_avg": 0.04, "grad_avg": 0.1, "momentum_buffer": 0.2},
         _rmsprop_centered_momentum_wd),
    Case("adam-first", Adam, dict(lr=0.1), {"step": 0},
         lambda p, g: p - 0.1 * g / (np.abs(g) + 1e-8)),
    Case("adam-wd", Adam, dict(lr=0.01, betas=BETAS, weight_decay=0.1),
         {"step": 1, "exp_avg": 0.2, "exp_avg_sq": 0.04}, _adam_wd),
    Case("adam-amsgrad", Adam, dict(lr=0.01, betas=BETAS, amsgrad=True),
         {"step": 1, "exp_avg": 0.2, "exp_avg_sq": 0.04, "max_exp_avg_sq": 1.0}, _adam_amsgrad),
    Case("adamw", AdamW, dict(lr=0.01, betas=BETAS, weight_decay=0.1),
         {"step": 1, "exp_avg": 0.2, "exp_avg_sq": 0.04}, _adamw),
    Case("adamw-amsgrad", AdamW, dict(lr=0.01, betas=BETAS, weight_decay=0.1, amsgrad=True),
         {"step": 1, "exp_avg": 0.2, "exp_avg_sq": 0.04, "max_exp_avg_sq": 1.0}, _adamw_amsgrad),
    Case("rprop-first", Rprop, dict(lr=0.1), {"step": 0}, lambda p, g: p - 0.1 * np.sign(g)),
    Case("rprop-clamped-first", Rprop, dict(lr=0.5, step_sizes=(1e-3, 0.2)), {"step": 0},
         lambda p, g: p - 0.2 * np.sign(g)),
    # products with prev = 0.3: > 0, < 0 (no move), > 0, = 0 (no move)
    Case("rprop", Rprop, dict(lr=0.1, etas=(0.25, 2.0), step_sizes=(0.01, 1.0)),
         {"step": 3, "prev": 0.3, "step_size": np.array([0.6, 0.02, 0.1, 0.5])},
         lambda p, g: np.array([1.0 - 1.0, -2.0, 0.5 - 0.2, 3.0])),
]
CASE_PARAMS = [pytest.param(case, id=case.id) for case in CASES]


# ---------------------------------------------------------------- NumPy reference

def ref_sgd(h, p, g, st):
    g = g + h["weight_decay"] * p
    if h["momentum"] != 0:
        b = g if "b" not in st else h["momentum"] * st["b"] + (1 - h["dampening"]) * g
        st["b"] = b
        g = g + h["momentum"] * b if h["nesterov"] else b
    return p - h["lr"] * g


def ref_adagrad(h, p, g, st):
    g = g + h["weight_decay"] * p
    st["sum"] = st.get("sum", h["initial_accumulator_value"]) + g * g
    clr = h["lr"] / (1 + (st["t"] - 1) * h["lr_decay"])
    return p - clr * g / (np.sqrt(st["sum"]) + h["eps"])


def ref_rmsprop(h, p, g, st):
    alpha = h["alpha"]
    g = g + h["weight_decay"] * p
    st["v"] = alpha * st.get("v", 0.0) + (1 - alpha) * g ** 2
    v = st["v"]
    if h["centered"]:
        st["a"] = alpha * st.get("a", 0.0) + (1 - alpha) * g
        v = v - st["a"] ** 2
    update = g / (np.sqrt(v) + h["eps"])
    if h["momentum"] > 0:
        st["b"] = h["momentum"] * st.get("b", 0.0) + update
        update = st["b"]
    return p - h["lr"] * update


def ref_adam(h, p, g, st, decoupled=False):
    (b1, b2), t = h["betas"], st["t"]
    if decoupled:
        p = p * (1 - h["lr"] * h["weight_decay"])
    else:
        g = g + h["weight_decay"] * p
    st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
    st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g ** 2
    v = st["v"]
    if h["amsgrad"]:
        st["vmax"] = v = np.maximum(st.get("vmax", 0.0), v)
    m_hat, v_hat = st["m"] / (1 - b1 ** t), v / (1 - b2 ** t)
    return p - h["lr"] * m_hat / (np.sqrt(v_hat) + h["eps"])


def ref_rprop(h, p, g, st):
    (eta_minus, eta_plus), (low, high) = h["etas"], h["step_sizes"]
    product = g * st.get("prev", 0.0)
    factor = np.where(product > 0, eta_plus, np.where(product < 0, eta_minus, 1.0))
    st["step"] = np.clip(st.get("step", h["lr"]) * factor, low, high)
    g = np.where(product < 0, 0.0, g)
    st["prev"] = g
    return p - np.sign(g) * st["step"]


REFERENCE = {"SGD": ref_sgd, "Adagrad": ref_adagrad, "RMSProp": ref_rmsprop, "Adam": ref_adam,
             "AdamW": lambda h, p, g, st: ref_adam(h, p, g, st, decoupled=True),
             "Rprop": ref_rprop}


# ---------------------------------------------------------------- trajectories

SHAPES = {"0.W": (3, 4), "0.b": (4,)}
N_STEPS = 10


def _problem():
    """Start params and N_STEPS gradient dicts, float64 values exactly representable in float32."""
    rng = np.random.default_rng(0)

    def draw(shape):
        return rng.normal(size=shape).astype(np.float32).astype(np.float64)

    params = {key: draw(shape) for key, shape in SHAPES.items()}
    grads = [{key: draw(shape) for key, shape in SHAPES.items()} for _ in range(N_STEPS)]
    return params, grads


def _lr_at(case, t):
    """The schedule every trajectory follows: lr halves after step 5."""
    return case.hyper["lr"] * (1.0 if t < 5 else 0.5)


def reference_trajectory(case):
    """Params after each step, float64, from the NumPy reference."""
    params, grads = _problem()
    hyper = case.cls(**case.hyper).get_config()
    states = {key: {"t": 0} for key in params}
    out = []
    for t, grad in enumerate(grads):
        hyper["lr"] = _lr_at(case, t)
        for key in params:
            states[key]["t"] += 1
            params[key] = REFERENCE[case.cls.__name__](hyper, params[key], grad[key], states[key])
        out.append({k: v.copy() for k, v in params.items()})
    return out


def fastmlp_trajectory(case, dtype):
    params, grads = _problem()
    params = {k: v.astype(dtype) for k, v in params.items()}
    opt = case.cls(**case.hyper)
    out = []
    for t, grad in enumerate(grads):
        opt.lr = _lr_at(case, t)
        opt.step(params, {k: v.astype(dtype) for k, v in grad.items()})
        out.append({k: v.copy() for k, v in params.items()})
    return out


def torch_trajectory(case):
    torch = pytest.importorskip("torch")
    classes = {"SGD": torch.optim.SGD, "Adagrad": torch.optim.Adagrad,
               "RMSProp": torch.optim.RMSprop, "Adam": torch.optim.Adam,
               "AdamW": torch.optim.AdamW, "Rprop": torch.optim.Rprop}
    params, grads = _problem()
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
               for k, v in params.items()}
    opt = classes[case.cls.__name__](list(tensors.values()), **case.hyper)
    out = []
    for t, grad in enumerate(grads):
        for group in opt.param_groups:
            group["lr"] = _lr_at(case, t)
        for key, tensor in tensors.items():
            tensor.grad = torch.tensor(grad[key], dtype=torch.float64)
        opt.step()
        out.append({k: v.detach().numpy().copy() for k, v in tensors.items()})
    return out


def assert_trajectories_close(actual, expected, rtol, atol):
    for t, (a, e) in enumerate(zip(actual, expected, strict=True)):
        for key in e:
            np.testing.assert_allclose(a[key], e[key], rtol=rtol, atol=atol,
                                       err_msg=f"step {t + 1}, key {key}")


# ---------------------------------------------------------------- (a)-(e): the table's checks

def _hand_set_state_dict(case, dtype=np.float64):
    """state_dict() of a fresh optimizer plus the case's hand-set state for key "w"."""
    sd = case.cls(**case.hyper).state_dict()
    for name, value in case.state.items():
        sd[f"state/w/{name}"] = value if name == "step" else np.broadcast_to(
            np.asarray(value, dtype), P0.shape).copy()
    return sd


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_closed_form_step(case):
    opt = case.cls(**case.hyper)
    opt.load_state_dict(_hand_set_state_dict(case))
    params, grads = {"w": P0.copy()}, {"w": G0.copy()}
    opt.step(params, grads)
    np.testing.assert_allclose(params["w"], case.expected(P0, G0), rtol=1e-13, atol=1e-15)
    assert opt.state["w"]["step"] == case.state["step"] + 1
    np.testing.assert_array_equal(grads["w"], G0)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_trajectory_matches_numpy_reference(case):
    assert_trajectories_close(fastmlp_trajectory(case, np.float64), reference_trajectory(case),
                              rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_trajectory_matches_torch(case):
    expected = torch_trajectory(case)
    assert_trajectories_close(fastmlp_trajectory(case, np.float64), expected,
                              rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_float32_matches_float64_reference(case):
    actual = fastmlp_trajectory(case, np.float32)
    assert all(v.dtype == np.float32 for step in actual for v in step.values())
    assert_trajectories_close(actual, reference_trajectory(case), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_state_dict_round_trip_continues_bit_identically(case, tmp_path):
    params, grads = _problem()
    params = {k: v.astype(np.float32) for k, v in params.items()}
    grads = [{k: v.astype(np.float32) for k, v in g.items()} for g in grads]
    opt = case.cls(**case.hyper)
    for grad in grads[:4]:
        opt.step(params, grad)
    opt.lr = 0.3 * case.hyper["lr"]
    saved = opt.state_dict()
    np.savez(tmp_path / "opt.npz", **saved)
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as npz:
        from_file = Optimizer.from_state_dict(npz)
    from_memory = case.cls()
    from_memory.load_state_dict(saved)

    copies = [{k: v.copy() for k, v in params.items()} for _ in range(2)]
    for grad in grads[4:]:
        for optimizer, p in zip((opt, from_file, from_memory), (params, *copies)):
            optimizer.step(p, grad)
    for restored, p in zip((from_file, from_memory), copies):
        assert type(restored) is case.cls and restored.get_config() == opt.get_config()
        for key in params:
            assert p[key].dtype == np.float32
            np.testing.assert_array_equal(p[key], params[key])
        final, again = opt.state_dict(), restored.state_dict()
        assert final.keys() == again.keys()
        for entry in final:
            np.testing.assert_array_equal(again[entry], final[entry], err_msg=entry)
    assert saved["state/0.W/step"] == 4  # a snapshot: later steps did not change it


# ---------------------------------------------------------------- config and state_dict format

@pytest.mark.parametrize("cls", list(OPTIMIZERS.values()), ids=list(OPTIMIZERS))
def test_config_round_trips_through_json(cls):
    opt = cls()
    config = json.loads(json.dumps(opt.get_config()))
    assert cls.from_config(config).get_config() == opt.get_config()
    assert get_optimizer(cls.__name__.lower(), **config).get_config() == opt.get_config()


def test_state_dict_layout_and_aliases():
    opt = Adam(lr=0.5, amsgrad=True)
    opt.step({"0.W": np.ones((2, 3))}, {"0.W": np.ones((2, 3))})
    sd = opt.state_dict()
    assert sorted(sd) == ["class", "hyper", "state/0.W/exp_avg", "state/0.W/exp_avg_sq",
                          "state/0.W/max_exp_avg_sq", "state/0.W/step"]
    assert sd["class"] == "Adam" and json.loads(sd["hyper"])["lr"] == 0.5
    assert sd["state/0.W/exp_avg"].shape == (2, 3)
    assert RMSprop is RMSProp
    with pytest.raises(ValueError, match="name"):
        get_optimizer("lbfgs")


def test_default_hyper_parameters_follow_torch():
    assert SGD().get_config() == dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                                      nesterov=False)
    assert Adagrad().get_config() == dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                                          initial_accumulator_value=0.0, eps=1e-10)
    assert RMSProp().get_config() == dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                                          momentum=0.0, centered=False)
    assert Adam().get_config() == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                       amsgrad=False)
    assert AdamW().get_config()["weight_decay"] == 1e-2
    assert Rprop().get_config() == dict(lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0))


def _adam_state_dict():
    opt = Adam()
    opt.step({"w": np.ones(3)}, {"w": np.ones(3)})
    return opt.state_dict()


@pytest.mark.parametrize("edit, error, match", [
    (lambda sd: sd.update({"class": "SGD"}), ValueError, "SGD"),
    (lambda sd: sd.pop("class"), ValueError, "class"),
    (lambda sd: sd.pop("hyper"), ValueError, "hyper"),
    (lambda sd: sd.update({"hyper": json.dumps({"lr": -1.0})}), ValueError, "lr"),
    (lambda sd: sd.update({"state/w/momentum_buffer": np.ones(3)}), ValueError, "momentum_buffer"),
    (lambda sd: sd.update({"extra": 1}), ValueError, "extra"),
    (lambda sd: sd.pop("state/w/step"), ValueError, "state/w/step"),
    (lambda sd: sd.update({"state/w/step": -1}), ValueError, "state/w/step"),
    (lambda sd: sd.update({"state/w/exp_avg": np.ones(3, int)}), TypeError, "state/w/exp_avg"),
], ids=["class", "no-class", "no-hyper", "bad-hyper", "unknown-state", "unknown-entry", "no-step",
        "negative-step", "int-state"])
def test_load_state_dict_rejects_malformed(edit, error, match):
    sd = _adam_state_dict()
    edit(sd)
    with pytest.raises(error, match=match):
        Adam().load_state_dict(sd)


def test_loaded_state_must_match_params():
    opt = Adam()
    opt.load_state_dict(_adam_state_dict())
    params = {"w": np.ones(4)}
    with pytest.raises(ValueError, match="'w'"):
        opt.step(params, {"w": np.ones(4)})
    np.testing.assert_array_equal(params["w"], np.ones(4))


# ---------------------------------------------------------------- (f) invalid hyper-parameters

INVALID = [
    (SGD, dict(lr=-0.1), ValueError, "lr"),
    (SGD, dict(lr="0.1"), TypeError, "lr"),
    (SGD, dict(lr=True), TypeError, "lr"),
    (SGD, dict(lr=float("nan")), ValueError, "lr"),
    (SGD, dict(momentum=-0.9), ValueError, "momentum"),
    (SGD, dict(momentum=None), TypeError, "momentum"),
    (SGD, dict(dampening=-0.1), ValueError, "dampening"),
    (SGD, dict(dampening=1.5), ValueError, "dampening"),
    (SGD, dict(weight_decay=-1e-4), ValueError, "weight_decay"),
    (SGD, dict(nesterov=True), ValueError, "nesterov"),
    (SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError, "nesterov"),
    (SGD, dict(nesterov="yes", momentum=0.9), TypeError, "nesterov"),
    (Adagrad, dict(lr=-1.0), ValueError, "lr"),
    (Adagrad, dict(lr_decay=-0.1), ValueError, "lr_decay"),
    (Adagrad, dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (Adagrad, dict(initial_accumulator_value=-0.1), ValueError, "initial_accumulator_value"),
    (Adagrad, dict(eps=-1e-10), ValueError, "eps"),
    (RMSProp, dict(lr=float("inf")), ValueError, "lr"),
    (RMSProp, dict(alpha=1.0), ValueError, "alpha"),
    (RMSProp, dict(alpha=-0.1), ValueError, "alpha"),
    (RMSProp, dict(eps=-1e-8), ValueError, "eps"),
    (RMSProp, dict(momentum=-0.1), ValueError, "momentum"),
    (RMSProp, dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (RMSProp, dict(centered=1), TypeError, "centered"),
    (Adam, dict(lr=-1e-3), ValueError, "lr"),
    (Adam, dict(betas=(1.0, 0.999)), ValueError, "betas[0]"),
    (Adam, dict(betas=(-0.1, 0.999)), ValueError, "betas[0]"),
    (Adam, dict(betas=(0.9, 1.0)), ValueError, "betas[1]"),
    (Adam, dict(betas=0.9), TypeError, "betas"),
    (Adam, dict(betas=(0.9,)), TypeError, "betas"),
    (Adam, dict(betas=(0.9, "0.999")), TypeError, "betas[1]"),
    (Adam, dict(eps=-1e-8), ValueError, "eps"),
    (Adam, dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (Adam, dict(amsgrad=None), TypeError, "amsgrad"),
    (AdamW, dict(weight_decay=-0.01), ValueError, "weight_decay"),
    (AdamW, dict(betas=(0.9, 1.5)), ValueError, "betas[1]"),
    (Rprop, dict(lr=-0.01), ValueError, "lr"),
    (Rprop, dict(etas=(1.0, 1.2)), ValueError, "etas"),
    (Rprop, dict(etas=(0.0, 1.2)), ValueError, "etas"),
    (Rprop, dict(etas=(0.5, 1.0)), ValueError, "etas"),
    (Rprop, dict(etas=1.2), TypeError, "etas"),
    (Rprop, dict(step_sizes=(0.0, 50.0)), ValueError, "step_sizes"),
    (Rprop, dict(step_sizes=(1.0, 0.5)), ValueError, "step_sizes"),
    (Rprop, dict(step_sizes=("1e-6", 50.0)), TypeError, "step_sizes[0]"),
]


@pytest.mark.parametrize("cls, hyper, error, name", INVALID,
                         ids=[f"{c.__name__}-{'-'.join(h)}-{i}" for i, (c, h, _, _) in
                              enumerate(INVALID)])
def test_invalid_hyper_parameter_raises_naming_it(cls, hyper, error, name):
    with pytest.raises(error, match=name.replace("[", r"\[").replace("]", r"\]")):
        cls(**hyper)


@pytest.mark.parametrize("value, error", [(-1.0, ValueError), ("0.1", TypeError)])
def test_assigning_invalid_lr_raises(value, error):
    opt = Adam()
    with pytest.raises(error, match="lr"):
        opt.lr = value
    assert opt.lr == 1e-3


# ---------------------------------------------------------------- (g) bad params / grads

def _good():
    return {"W": np.ones((3, 2)), "b": np.zeros(2)}


def _replace(mapping, **entries):
    return {**mapping, **entries}


def _read_only(array):
    array.flags.writeable = False
    return array


BAD_INPUTS = [
    ("grads-missing-key", lambda p: (p, {"W": np.ones((3, 2))}), ValueError, "missing \\['b'\\]"),
    ("grads-extra-key", lambda p: (p, _replace(_good(), c=np.ones(1))), ValueError,
     "unexpected \\['c'\\]"),
    ("grads-shape", lambda p: (p, _replace(_good(), W=np.ones((2, 3)))), ValueError,
     "grads\\['W'\\]"),
    ("grads-dtype", lambda p: (p, _replace(_good(), b=np.zeros(2, np.float32))), ValueError,
     "grads\\['b'\\]"),
    ("params-int", lambda p: (_replace(p, b=np.zeros(2, int)), _good()), TypeError,
     "params\\['b'\\]"),
    ("params-non-contiguous", lambda p: (_replace(p, W=np.ones((2, 3)).T), _good()), ValueError,
     "params\\['W'\\]"),
    ("grads-non-contiguous", lambda p: (p, _replace(_good(), W=np.ones((2, 3)).T)), ValueError,
     "grads\\['W'\\]"),
    ("grads-list", lambda p: (p, _replace(_good(), b=[0.0, 0.0])), TypeError, "grads\\['b'\\]"),
    ("params-read-only", lambda p: (_replace(p, b=_read_only(np.zeros(2))), _good()), ValueError,
     "params\\['b'\\]"),
    ("params-not-dict", lambda p: (list(p.values()), _good()), TypeError, "params"),
    ("grads-not-dict", lambda p: (p, None), TypeError, "grads"),
]


@pytest.mark.parametrize("name, make, error, match", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
@pytest.mark.parametrize("cls", list(OPTIMIZERS.values()), ids=list(OPTIMIZERS))
def test_bad_params_or_grads_raise_and_change_nothing(cls, name, make, error, match):
    params = _good()
    bad_params, bad_grads = make(params)
    opt = cls()
    with pytest.raises(error, match=match):
        opt.step(bad_params, bad_grads)
    for key, value in _good().items():
        np.testing.assert_array_equal(params[key], value)
    assert opt.state == {}


@pytest.mark.parametrize("cls", list(OPTIMIZERS.values()), ids=list(OPTIMIZERS))
def test_state_shape_change_raises_naming_key(cls):
    opt = cls(momentum=0.9) if cls is SGD else cls()   # plain SGD keeps no state arrays
    opt.step(_good(), _good())
    with pytest.raises(ValueError, match="'W'"):
        opt.step({"W": np.ones((2, 2))}, {"W": np.ones((2, 2))})


@pytest.mark.parametrize("case", CASE_PARAMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_coefficient_table_rounds_each_float64_scalar_once(case, dtype):
    """Each kernel scalar of step t is the optimizer's float64 formula rounded once to the
    model's dtype, for early and late steps, in the epoch table and in ``step`` alike."""
    opt = case.cls(**case.hyper)
    opt.load_state_dict(_hand_set_state_dict(case))
    t0 = case.state["step"]
    table = opt.coefficient_table(["w"], 40, dtype)
    assert table.dtype == dtype and table.shape[0] == 40
    for k in (0, 1, 39):
        values = opt._coefficients(t0 + k + 1)
        expected = np.zeros(table.shape[1], dtype=dtype)
        expected[:len(values)] = [dtype(c) for c in values]
        np.testing.assert_array_equal(table[k], expected)
    np.testing.assert_array_equal(opt._coefficient_row(t0 + 40, dtype), table[39])
    assert opt.coefficient_table(["w"], 0, dtype).shape == (0, table.shape[1])


def test_a_scalar_that_does_not_fit_names_its_step():
    opt = Adam(lr=3e38, betas=(0.5, 0.999))  # lr / (1 - beta1**t) exceeds float32 at t = 1
    with pytest.raises(ValueError, match=r"at step 1 its update scalars .* do not fit in float32"):
        opt.coefficient_table(["w"], 5, np.float32)
    assert opt.coefficient_table(["w"], 5, np.float64).shape == (5, 9)


# ---------------------------------------------------------------- no subnormal running averages

SMALLEST_NORMAL = 2.0 ** -126
# (optimizer, hyper-parameters, hand-set state, the running average of the gradient, its decay
# factor with a zero gradient; the average is set just above float32's smallest normal number)
DECAYING_AVERAGES = [
    pytest.param(SGD, dict(lr=0.1, momentum=0.9), {"step": 1}, "momentum_buffer", 0.9, id="sgd"),
    pytest.param(RMSProp, dict(lr=0.01, alpha=0.9, centered=True),
                 {"step": 4, "square_avg": 0.04}, "grad_avg", 0.9, id="rmsprop-centered"),
    pytest.param(RMSProp, dict(lr=0.01, alpha=0.9, momentum=0.5),
                 {"step": 4, "square_avg": 0.04}, "momentum_buffer", 0.5, id="rmsprop-momentum"),
    pytest.param(Adam, dict(lr=0.01), {"step": 3, "exp_avg_sq": 1e-4}, "exp_avg", 0.9, id="adam"),
    pytest.param(AdamW, dict(lr=0.01, weight_decay=0.0, amsgrad=True),
                 {"step": 3, "exp_avg_sq": 1e-4, "max_exp_avg_sq": 1e-4}, "exp_avg", 0.9,
                 id="adamw-amsgrad"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, hyper, state, average, factor", DECAYING_AVERAGES)
def test_a_running_average_that_falls_below_the_smallest_normal_is_stored_as_zero(
        cls, hyper, state, average, factor, dtype):
    """With a zero gradient the average decays by its factor each step; in IEEE arithmetic it
    would go subnormal and stick there (rules.flush_subnormal). It becomes exactly +0 instead,
    every other value as without the flush: the parameter (whose update it changes by far less
    than an ulp), and the same average further above the threshold."""
    just_above = np.array([1.05, -1.05, 2.5, 1e6], dtype) * dtype(SMALLEST_NORMAL)
    assert np.all(np.abs(dtype(factor) * just_above[:2]) < SMALLEST_NORMAL)  # the premise
    case = Case(average, cls, hyper, {**state, average: just_above}, expected=None)
    opt = cls(**hyper)
    opt.load_state_dict(_hand_set_state_dict(case, dtype))
    params = {"w": P0.astype(dtype)}
    opt.step(params, {"w": np.zeros_like(params["w"])})
    new = opt.state["w"][average]
    assert new.dtype == dtype
    np.testing.assert_array_equal(new[:2], [0.0, 0.0])
    assert not np.signbit(new[1])
    np.testing.assert_array_equal(new[2:], dtype(factor) * just_above[2:])
    np.testing.assert_array_equal(params["w"], P0.astype(dtype))
