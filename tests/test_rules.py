"""The scalar rules are written once (kernels/rules.py): the CPU kernels and the CUDA kernels call
the same functions."""

import numpy as np

from fastmlp.kernels import rules
from fastmlp.kernels.cpu import activations as cpu_activations
from fastmlp.kernels.cpu import bf16 as cpu_bf16
from fastmlp.kernels.cpu import losses as cpu_losses
from fastmlp.kernels.cpu import optimizers as cpu_optimizers
from fastmlp.kernels.cuda._simulator import device_rule


def test_cpu_kernels_call_the_shared_rules():
    assert cpu_activations.activation_value is rules.activation_value
    assert cpu_activations.activation_derivative is rules.activation_derivative
    assert cpu_losses.loss_row is rules.loss_row
    assert cpu_optimizers.adam_element is rules.adam_element
    assert cpu_bf16.bf16_bits is rules.bf16_bits


def test_device_rule_is_the_rule_itself_on_a_gpu(monkeypatch):
    import numba
    monkeypatch.setattr(numba.config, "ENABLE_CUDASIM", 0)
    assert device_rule(rules.loss_row) is rules.loss_row


def test_simulated_device_rule_runs_the_compiled_rule_in_place(monkeypatch):
    """Under the simulator the rule gets the NumPy arrays behind its arguments (same memory)."""
    import numba
    monkeypatch.setattr(numba.config, "ENABLE_CUDASIM", 1)
    rule = device_rule(rules.adam_element)
    assert rule is not rules.adam_element
    p, g = np.array([1.0, 2.0]), np.array([0.5, -0.5])
    m, v, vmax = np.zeros(2), np.zeros(2), np.zeros(0)
    rule(p, g, m, v, vmax, 1, (0.9, 0.1, 0.999, 0.001, 0.01, 0.0316, 1e-8, 0.0, 1.0), False)
    assert p[0] == 1.0 and p[1] != 2.0 and m[1] == -0.05


def test_flush_subnormal_keeps_the_type_and_passes_normal_and_non_finite_values():
    tiny32 = float(np.finfo(np.float32).tiny)
    for dtype in (np.float32, np.float64):
        for x, expected in ((tiny32 / 3, 0.0), (-tiny32 / 3, 0.0), (tiny32, tiny32),
                            (-2.5, -2.5), (0.0, 0.0), (np.inf, np.inf), (-np.inf, -np.inf)):
            result = rules.flush_subnormal(dtype(x))
            assert result == dtype(expected)
            assert not (expected == 0.0 and np.signbit(result))
        assert np.isnan(rules.flush_subnormal(dtype(np.nan)))
    assert rules.flush_subnormal(np.float64(1e-300)) == 0.0  # float32's threshold for both
    # Python sees a float either way; the compiled rule's own return type is the argument's
    for signature in rules.flush_subnormal.nopython_signatures:
        assert signature.return_type == signature.args[0]
    assert device_rule(rules.flush_subnormal)(np.float32(1e-40)) == 0.0
