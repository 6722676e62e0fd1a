"""The tasks of the CPU kernels and their one compiled entry point, :func:`team_member`.

Every kernel call — a forward pass, a loss, a gradient, a whole training epoch, one rank's step
of data-parallel training — is a task: a sequence of phases (:mod:`.phases`) that the leader
posts and a team of threads runs. The caller starts ``run.members`` threads (the calling thread
is member 0, the leader; see ``fastmlp.engines.team``) and each calls ``team_member(t, task, ...)``; with
one member the leader runs every part alone. One entry point for every task means the kernels
are compiled once per dtype.

Tasks (records as in :mod:`.records`; results in ``work.result``). For a mixed model every task
but ``UPDATE`` starts with the ``ROUND`` phase (the bfloat16 operands of the parameters, and of the
rows unless the task gathers them):

- ``FORWARD``: the forward pass over ``data.X`` (training or evaluation mode, ``run.training``);
  the output stays in the workspace (``network.network_output``).
- ``LOSS``: evaluation-mode forward and the mean loss + penalty → result[0].
- ``GRADIENT``: forward, loss and backward of ``data.X`` → result[0] the mean loss + penalty,
  ``work.grads`` the gradient.
- ``EPOCH``: every step of an epoch over the rows ``data.order`` in batches ``data.bounds``:
  gather, forward, loss, backward, penalties, clipping, optimizer update → result (steps done,
  Σ batch loss · rows, correct, counted, why it stopped, the value that overflowed). A step stops
  before its update at the first NaN/inf loss or gradient (``STOP_NONFINITE``), or when its
  update would make a parameter or optimizer state value NaN/inf (``STOP_OVERFLOW``; see
  :func:`_check_update`); the batchnorm statistics its forward changed are put back, so
  parameters, statistics and optimizer state are exactly those after the last finite step. The
  rows of batch k + 1 are gathered in the same phase as the update of step k.
- ``LOCAL_GRADIENT``: gather the rows order[bounds[0]:bounds[1]] and their gradient → result
  (loss, -, correct, counted).
- ``UPDATE``: check ``work.grads`` (and ``work.shared[SHARED_LOSS]``) finite, clip and update with
  ``opt.coefficients[0]`` → result[0] 1, or 0 (nothing changed) at a NaN/inf or an update that
  would overflow (result[R_STOP], result[R_BAD] as for ``EPOCH``).

(``LOSS`` and ``GRADIENT``/``LOCAL_GRADIENT`` put (loss, -, correct, counted) in the result.)
"""

import math

from ..config import JIT
from ..contract import (
    BACKWARD,
    CHECK_UPDATE,
    FORWARD,
    FORWARD_ROWS,
    GATHER,
    GRAD_NORM,
    L_BN,
    L_UNITS,
    LAST_BATCHNORM,
    LOSS,
    R_BAD,
    R_CORRECT,
    R_COUNTED,
    R_DONE,
    R_STOP,
    R_TOTAL,
    ROUND,
    STOP_NONE,
    STOP_NONFINITE,
    STOP_OVERFLOW,
    TASK_EPOCH,
    TASK_FORWARD,
    TASK_LOCAL_GRADIENT,
    TASK_LOSS,
    TASK_UPDATE,
    UPDATE,
)
from ..jit import njit
from ..rules import update_bound
from .losses import loss_denominator
from .network import is_mixed, network_penalty
from .phases import (
    batch_inputs,
    clip_scale,
    help_team,
    part_checks,
    part_losses,
    part_sums,
    run_phase,
)
from .team import SHARED_LOSS, SHARED_SCALE, finish


@njit(inline="always", **JIT)
def _copy_into(destination, source):
    """destination[i] = source[i] for the (n,) arrays, of one length by construction. (A slice
    assignment would compile NumPy's broadcast check and its error message, 2 s of a cold start.)"""
    for i in range(source.shape[0]):
        destination[i] = source[i]


@njit(inline="always", **JIT)
def _gradient_of(k, task, net, data, work, opt, run):
    """Leader: the forward phases of batch k, then for the tasks that need them the loss and the
    backward phases. Returns the mean loss + penalty (0 for TASK_FORWARD)."""
    work.partials[:] = 0.0
    n_layers = net.layer_int.shape[0]
    last = n_layers - 1
    # in training the last layer's forward runs inside the loss phase, on each part's own rows
    # (batchnorm needs every row, so a last layer with batchnorm keeps its own phase)
    fused = run.training and task != TASK_FORWARD and not net.layer_int[last, L_BN]
    forward_kind = FORWARD if run.training else FORWARD_ROWS
    for l in range((last if fused else n_layers) if run.training else 1):
        run_phase(forward_kind, l, k, net, data, work, opt, run)
    if task == TASK_FORWARD:
        return 0.0
    run_phase(LOSS, last if fused else -1, k, net, data, work, opt, run)
    if task != TASK_LOSS:
        if net.layer_int[last, L_BN]:
            run_phase(LAST_BATCHNORM, 0, k, net, data, work, opt, run)
        for l in range(last, -1, -1):
            run_phase(BACKWARD, l, k, net, data, work, opt, run)
    loss, penalty = part_losses(work, run.parts)
    rows = batch_inputs(data, work, run, k)[0].shape[0]
    units = net.layer_int[last, L_UNITS]
    if task == TASK_LOSS:
        penalty = network_penalty(net.params, net.layer_int, run.l1, run.l2)
    return loss / loss_denominator(data.loss_code, rows, units) + penalty


@njit(inline="always", **JIT)
def _check_update(k, grad_bound, net, data, work, opt, run):
    """Leader, before the update of step k: 0 when it surely leaves every parameter and state
    value finite (``rules.update_bound`` from the magnitudes alone, else the ``CHECK_UPDATE``
    phase on copies), else the code of the first value it would make NaN/inf (``P_BAD``); then
    opt.bounds are left as they were."""
    before = opt.bounds.copy()
    if update_bound(opt.code, opt.coefficients[k], opt.flag, opt.init and k == 0, grad_bound,
                    opt.bounds):
        return 0
    run_phase(CHECK_UPDATE, 0, k, net, data, work, opt, run)
    bad = part_checks(work, run.parts, opt.bounds)
    if bad:
        _copy_into(opt.bounds, before)
    return bad


@njit(inline="always", **JIT)
def _release_helpers(work, run):
    """Leader, when its task is done: tell the helpers to leave the region."""
    if run.members > 1:
        finish(work.sync)


@njit(**JIT)
def team_member(t, task, net, data, work, opt, run):
    """Member t of the team of a kernel call: a helper (t > 0) runs parts until the leader is
    done; the leader (t = 0) runs the phases of ``task`` and the decisions between them (module
    docstring), then releases the helpers. (The leader's code is written here rather than in an
    inlined function: Numba copies an inlined function's IR block by block with its whole scope,
    which for this much code cost 3 s of a cold start.)"""
    if t != 0:
        help_team(t, net, data, work, opt, run)
        return
    epoch = task == TASK_EPOCH
    steps = data.bounds.shape[0] - 1 if epoch else 1
    total = 0.0
    correct = 0
    counted = 0
    done = steps
    work.result[R_STOP] = STOP_NONE
    work.result[R_BAD] = 0.0
    if is_mixed(work.half) and task != TASK_UPDATE:
        run_phase(ROUND, 0, 0, net, data, work, opt, run)
    if (epoch and steps > 0) or task == TASK_LOCAL_GRADIENT:
        run_phase(GATHER, 0, 0, net, data, work, opt, run)
    for k in range(steps):
        if task == TASK_UPDATE:
            work.partials[:] = 0.0
            run_phase(GRAD_NORM, 0, 0, net, data, work, opt, run)
            loss = work.shared[SHARED_LOSS]
        else:
            if epoch:
                _copy_into(work.saved, net.buffers)
            loss = _gradient_of(k, task, net, data, work, opt, run)
        grad_sq, c, m = part_sums(work, run.parts)
        if not (epoch or task == TASK_UPDATE):
            work.result[R_DONE] = loss
            work.result[R_CORRECT] = c
            work.result[R_COUNTED] = m
            _release_helpers(work, run)
            return
        stop = STOP_NONE
        if not (math.isfinite(loss) and math.isfinite(grad_sq)):
            stop = STOP_NONFINITE
        else:
            scale = clip_scale(math.sqrt(grad_sq), run.clip_norm)
            work.shared[SHARED_SCALE] = scale
            bad = _check_update(k, math.sqrt(grad_sq) * scale, net, data, work, opt, run)
            if bad:
                stop = STOP_OVERFLOW
                work.result[R_BAD] = bad
        if stop != STOP_NONE:
            if epoch:
                _copy_into(net.buffers, work.saved)
            work.result[R_STOP] = stop
            done = k
            break
        correct += c
        counted += m
        run_phase(UPDATE, 0, k, net, data, work, opt, run)
        total += loss * (data.bounds[k + 1] - data.bounds[k] if epoch else 1)
    work.result[R_DONE] = done
    work.result[R_TOTAL] = total
    work.result[R_CORRECT] = correct
    work.result[R_COUNTED] = counted
    _release_helpers(work, run)
