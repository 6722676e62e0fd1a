"""Gradient checking (seed 004): analytic gradients against central differences.

For every parameter entry θ_k the numerical derivative is (L(θ + ε e_k) - L(θ - ε e_k)) / 2ε, with
L the model's mean loss + penalty on (X, y). The check runs on a float64 copy of the model (the
model itself is untouched), in training mode with the dropout mask of the model's current step
held fixed. An entry passes when |analytic - numeric| ≤ atol + rtol · max(|analytic|, |numeric|).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ._validation import check_int, check_real


class GradcheckWarning(UserWarning):
    """Analytic and numerical gradients disagree beyond the tolerance."""


class GradcheckError(ValueError):
    """Raised by ``gradcheck(..., on_failure="raise")`` when the gradients disagree."""


@dataclass
class GradcheckReport:
    """Per-parameter errors: ``errors[key] = {"max_abs_error", "max_rel_error", "checked"}``."""
    errors: dict = field(default_factory=dict)
    passed: bool = True
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0

    def __str__(self):
        lines = [f"{'param':<12} {'checked':>8} {'max abs err':>12} {'max rel err':>12}"]
        for key, e in self.errors.items():
            lines.append(f"{key:<12} {e['checked']:>8} {e['max_abs_error']:>12.3e} "
                         f"{e['max_rel_error']:>12.3e}")
        lines.append("passed" if self.passed else "FAILED")
        return "\n".join(lines)


def gradcheck(model, X, y, eps=1e-6, rtol=1e-5, atol=1e-8, l1=0.0, l2=0.0, training=True,
              max_entries=None, seed=0, on_failure="warn"):
    """Compare ``model.loss_and_grad`` with central differences for every parameter.

    Parameters
    ----------
    model : MLP
    X, y : the batch to differentiate on (as for ``loss_and_grad``)
    eps : float
        Finite-difference step.
    rtol, atol : float
        Tolerance per entry (module docstring).
    l1, l2 : float
        Penalties included in the loss.
    training : bool
        Training mode (batch statistics, the current dropout mask) or evaluation mode.
    max_entries : int, optional
        Check at most this many randomly chosen entries per parameter (all by default).
    seed : int
        Chooses the entries when ``max_entries`` is set.
    on_failure : "warn" | "raise" | "ignore"

    Returns
    -------
    GradcheckReport
    """
    eps = check_real(eps, "eps", minimum=0.0)
    if eps == 0.0:
        raise ValueError("eps must be > 0")
    rtol = check_real(rtol, "rtol", minimum=0.0)
    atol = check_real(atol, "atol", minimum=0.0)
    if max_entries is not None:
        max_entries = check_int(max_entries, "max_entries", minimum=1)
    if on_failure not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_failure must be 'warn', 'raise' or 'ignore'; got {on_failure!r}")
    probe = model.copy(dtype="float64")
    step = model.dropout_step
    saved_buffers = {k: v.copy() for k, v in probe.buffers.items()}

    def loss():
        value = probe.loss_value(X, y, training=training, l1=l1, l2=l2, dropout_step=step)
        probe.buffers.update(saved_buffers)  # training-mode passes move the running statistics
        return value

    _, grads = probe.loss_and_grad(X, y, training=training, l1=l1, l2=l2, dropout_step=step)
    probe.buffers.update(saved_buffers)
    rng = np.random.default_rng(seed)
    report = GradcheckReport()
    for key, value in probe.params.items():
        flat = value.reshape(-1)
        analytic = grads[key].reshape(-1)
        entries = np.arange(flat.size)
        if max_entries is not None and flat.size > max_entries:
            entries = np.sort(rng.choice(flat.size, size=max_entries, replace=False))
        abs_err = rel_err = 0.0
        ok = True
        for k in entries:
            old = flat[k]
            flat[k] = old + eps
            up = loss()
            flat[k] = old - eps
            down = loss()
            flat[k] = old
            numeric = (up - down) / (2 * eps)
            diff = abs(analytic[k] - numeric)
            scale = max(abs(analytic[k]), abs(numeric))
            abs_err = max(abs_err, diff)
            rel_err = max(rel_err, diff / scale if scale > 0 else 0.0)
            ok = ok and diff <= atol + rtol * scale
        report.errors[key] = {"max_abs_error": float(abs_err), "max_rel_error": float(rel_err),
                              "checked": int(entries.size)}
        report.max_abs_error = max(report.max_abs_error, float(abs_err))
        report.max_rel_error = max(report.max_rel_error, float(rel_err))
        report.passed = report.passed and ok
    if not report.passed:
        message = f"analytic and numerical gradients disagree:\n{report}"
        if on_failure == "raise":
            raise GradcheckError(message)
        if on_failure == "warn":
            warnings.warn(message, GradcheckWarning, stacklevel=2)
    return report
