"""Gradient checking (seed 004): analytic gradients against central differences.

For every parameter entry θ_k the numerical derivative is (L(θ + ε e_k) - L(θ - ε e_k)) / 2ε, with
L the model's mean loss + penalty on (X, y). The check runs on a float64 copy of the model (the
model itself is untouched), in training mode with the dropout mask of the model's current step
held fixed. An entry passes when |analytic - numeric| ≤ atol + rtol · max(|analytic|, |numeric|)
(a NaN on either side fails); the check passes when every entry does. Relative errors are reported
only for gradients of magnitude at least atol / rtol, where the relative part of the tolerance is
the one that matters: below that, and in particular for gradients that are zero (a bias before
batch normalization, the weights of a constant input feature), the relative error of two values
near zero is rounding noise, and those entries are judged by their absolute error alone
(:class:`GradcheckReport`).
"""

from __future__ import annotations

import math
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
    """The outcome of :func:`gradcheck`.

    ``errors[key]`` holds, for parameter ``key``: ``checked`` (entries compared), ``small``
    (entries whose gradient is below ``atol / rtol`` in magnitude, see below), ``failed``
    (entries beyond the tolerance), ``max_abs_error``, ``max_rel_error`` (over the entries that
    are not small; 0.0 when all are) and ``worst_ratio`` (the largest error divided by its
    entry's tolerance ``atol + rtol · max(|analytic|, |numeric|)``: the check passes when it is at
    most 1). ``passed`` is True when no entry of any parameter failed; the report-level
    ``max_abs_error`` / ``max_rel_error`` are the largest over the parameters.

    Small gradients: where ``max(|analytic|, |numeric|) < atol / rtol`` the absolute part of the
    tolerance dominates, and a relative error mostly measures the rounding noise of the central
    differences (about 1e-10 in float64 for eps 1e-6) against a value near zero: a gradient that
    is exactly zero gives a relative error of 1 for any noise at all. Such entries are judged by
    their absolute error (as every entry is, through the tolerance) and left out of
    ``max_rel_error``.
    """
    errors: dict = field(default_factory=dict)
    passed: bool = True
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    atol: float = 1e-8
    rtol: float = 1e-5

    @property
    def small_threshold(self):
        """``atol / rtol``: gradients below this magnitude are judged by their absolute error."""
        return self.atol / self.rtol if self.rtol > 0 else math.inf

    def __str__(self):
        lines = [f"{'param':<12} {'checked':>8} {'small':>8} {'failed':>8} {'max abs err':>12} "
                 f"{'max rel err':>12} {'err/tol':>9}"]
        for key, e in self.errors.items():
            relative = "-" if e["small"] == e["checked"] else f"{e['max_rel_error']:.3e}"
            lines.append(f"{key:<12} {e['checked']:>8} {e['small']:>8} {e['failed']:>8} "
                         f"{e['max_abs_error']:>12.3e} {relative:>12} {e['worst_ratio']:>9.3g}")
        rule = f"|analytic - numeric| <= atol + rtol * |gradient| (atol {self.atol:g}, " \
               f"rtol {self.rtol:g})"
        threshold = self.small_threshold
        if any(e["small"] for e in self.errors.values()):
            lines.append(f"small: |gradient| < atol/rtol = {threshold:.3g}, judged by the "
                         f"absolute error and left out of max rel err")
        if self.passed:
            lines.append(f"passed: every entry has {rule}")
        else:
            failed = ", ".join(f"{key} ({e['failed']} of {e['checked']})"
                               for key, e in self.errors.items() if e["failed"])
            lines.append(f"FAILED: entries beyond {rule} in {failed}")
        return "\n".join(lines)


def _largest(values):
    """The largest value as a float (NaN when any value is NaN; 0.0 for none)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.max()) if values.size else 0.0


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
    report = GradcheckReport(atol=atol, rtol=rtol)
    threshold = report.small_threshold
    for key, value in probe.params.items():
        flat = value.reshape(-1)
        entries = np.arange(flat.size)
        if max_entries is not None and flat.size > max_entries:
            entries = np.sort(rng.choice(flat.size, size=max_entries, replace=False))
        analytic = grads[key].reshape(-1)[entries].astype(np.float64)
        numeric = np.empty(entries.size)
        for i, k in enumerate(entries):
            old = flat[k]
            flat[k] = old + eps
            up = loss()
            flat[k] = old - eps
            down = loss()
            flat[k] = old
            numeric[i] = (up - down) / (2 * eps)
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = np.abs(analytic - numeric)              # NaN when either side is NaN
            scale = np.maximum(np.abs(analytic), np.abs(numeric))
            tolerance = atol + rtol * scale
            failed = ~(diff <= tolerance)                  # NaN fails
            small = (scale < threshold) | (scale == 0)
            ratio = np.where(diff == 0, 0.0, diff / tolerance)
            relative = diff[~small] / scale[~small]
        entry = {
            "checked": int(entries.size),
            "small": int(small.sum()),
            "failed": int(failed.sum()),
            "max_abs_error": _largest(diff),
            "max_rel_error": _largest(relative),
            "worst_ratio": _largest(ratio),
        }
        report.errors[key] = entry
        report.max_abs_error = _largest([report.max_abs_error, entry["max_abs_error"]])
        report.max_rel_error = _largest([report.max_rel_error, entry["max_rel_error"]])
        report.passed = report.passed and entry["failed"] == 0
    if not report.passed:
        message = f"analytic and numerical gradients disagree:\n{report}"
        if on_failure == "raise":
            raise GradcheckError(message)
        if on_failure == "warn":
            warnings.warn(message, GradcheckWarning, stacklevel=2)
    return report
