"""The phases of a whole-network kernel call, run by a team of threads (:mod:`.team`).

A call is a sequence of phases, each cut into ``Run.parts`` parts (see :mod:`.network`):

- ``ROUND``: blocks of the parameters (and, unless the call gathers its batches, of the rows of
  ``Data.X``) rounded to bfloat16 for the products of a mixed model (``network.is_mixed``);
- ``GATHER``: rows of batch k copied into the batch buffers (and rounded, for a mixed model);
- ``FORWARD`` (layer l): blocks of layer l's forward, in training mode;
- ``FORWARD_ROWS``: blocks of rows through every layer, in evaluation mode;
- ``LOSS``: blocks of rows of the loss, the output gradient and the last layer's local backward;
  for ``layer`` ≥ 0 (the last layer, without batchnorm, in training mode) each part first runs
  that layer's forward on its own rows, so the output layer needs no phase of its own;
- ``LAST_BATCHNORM``: blocks of units of a last layer with batchnorm, backward;
- ``BACKWARD`` (layer l): blocks of dW, db and dh of layer l;
- ``UPDATE``: blocks of parameters through the optimizer (rounded to bfloat16 as they are
  written, for a mixed model), and the rows of batch k + 1;
- ``GRAD_NORM``: blocks of the squared gradient norm;
- ``CHECK_UPDATE``: blocks of parameters through the optimizer on copies, checking every new value
  finite (only for an update that ``rules.update_bound`` cannot clear).

The leader posts each phase and makes the decisions between them (finite checks, clipping);
helpers run parts of whatever phase is posted. With one member the leader runs every part
itself, with no synchronization at all; the results depend on the number of parts only.

The tasks that sequence these phases, and the one compiled entry point every thread of a call
runs, are in :mod:`.train`.
"""

from ..config import COL_ALIGN, JIT, JIT_INTERNAL, ROW_ALIGN
from ..contract import (
    BACKWARD,
    CHECK_UPDATE,
    FORWARD,
    FORWARD_ROWS,
    GATHER,
    GRAD_NORM,
    LAST_BATCHNORM,
    LOSS,
    P_BAD,
    P_CORRECT,
    P_COUNTED,
    P_GRAD_SQ,
    P_LOSS,
    P_MAX,
    P_PENALTY,
    ROUND,
    UPDATE,
)
from ..jit import njit
from .batch import gather_part
from .bf16 import round_to_bf16_block, round_to_bf16_range
from .blocks import part
from .network import (
    backward_layer_part,
    forward_layer_part,
    forward_layer_rows_part,
    forward_rows_part,
    is_mixed,
    last_batchnorm_part,
    layer_output,
    loss_part,
)
from .norms import sum_squares
from .optimizers import optimizer_check_part, optimizer_update_part
from .team import (
    DONE,
    POSTED,
    SHARED_SCALE,
    SLOT,
    atomic_add,
    claim,
    post,
    read_posted,
    wait_done,
)


@njit(inline="always", **JIT)
def batch_inputs(data, work, run, k):
    """(X, labels, targets) of batch k: the gathered buffers in an epoch, else Data's arrays."""
    if run.gathered:
        m = data.bounds[k + 1] - data.bounds[k]
        return (work.Xb[:m], work.lb[:m] if work.lb.shape[0] else work.lb,
                work.tb[:m] if work.tb.shape[0] else work.tb)
    return data.X, data.labels, data.targets


@njit(inline="always", **JIT)
def layout_for(data, work, run, k):
    """The workspace layout of batch k (the last batch of an epoch may be smaller)."""
    if run.gathered and k == data.bounds.shape[0] - 2:
        return work.ws_off_last
    return work.ws_off


@njit(**JIT_INTERNAL)
def gather_rows_part(index, parts, data, work, start, stop):
    """Part ``index`` of ``parts`` of the rows order[start:stop] copied into the batch buffers,
    and for a mixed model rounded to bfloat16 into ``half.x`` (the same rows of the same cut)."""
    gather_part(index, parts, work.Xb, work.lb, work.tb, data.X, data.labels, data.targets,
                data.order, start, stop)
    if is_mixed(work.half):
        r0, r1 = part(stop - start, parts, index, ROW_ALIGN)
        round_to_bf16_block(work.half.x, work.Xb, r0, r1, 0, work.Xb.shape[1])


@njit(**JIT_INTERNAL)
def round_part(index, parts, net, data, work, run):
    """Part ``index`` of ``parts`` of the bfloat16 rounding a mixed model's call starts with: a
    block of the parameters into ``half.params`` and, unless the call gathers its batches, a block
    of rows of ``data.X`` into ``half.x``."""
    lo, hi = part(net.params.shape[0], parts, index, COL_ALIGN)
    round_to_bf16_range(work.half.params, net.params, lo, hi)
    if not run.gathered:
        r0, r1 = part(data.X.shape[0], parts, index, ROW_ALIGN)
        round_to_bf16_block(work.half.x, data.X, r0, r1, 0, data.X.shape[1])


@njit(**JIT_INTERNAL)
def do_part(kind, index, parts, layer, k, net, data, work, opt, run):
    """Part ``index`` of ``parts`` of phase ``kind`` for layer ``layer`` and batch ``k``."""
    X, labels, targets = batch_inputs(data, work, run, k)
    ws_off = layout_for(data, work, run, k)
    n = X.shape[0]
    if kind == FORWARD:
        h = layer_output(X, work.ws, ws_off, net.layer_int, layer - 1, n, True)
        forward_layer_part(index, parts, layer, h, net, ws_off, work.ws, work.half, True,
                           run.update_stats, run.seed, run.first_step + k)
    elif kind == FORWARD_ROWS:
        forward_rows_part(index, parts, X, net, ws_off, work.ws, work.half)
    elif kind == LOSS:
        if layer >= 0:
            h = layer_output(X, work.ws, ws_off, net.layer_int, layer - 1, n, True)
            forward_layer_rows_part(index, parts, layer, h, net, ws_off, work.ws, work.half, True,
                                    run.seed, run.first_step + k)
        loss_part(index, parts, labels, targets, data.loss_code, net, work.grads, ws_off, work.ws,
                  work.half, n, run.training, run.count, work.partials)
    elif kind == LAST_BATCHNORM:
        last_batchnorm_part(index, parts, net, work.grads, ws_off, work.ws, work.half, n,
                            run.training)
    elif kind == BACKWARD:
        backward_layer_part(index, parts, layer, X, net, work.grads, ws_off, work.ws, work.half,
                            run.training, run.l1, run.l2, work.partials)
    elif kind == GATHER:
        gather_rows_part(index, parts, data, work, data.bounds[k], data.bounds[k + 1])
    elif kind == ROUND:
        round_part(index, parts, net, data, work, run)
    elif kind == UPDATE:
        optimizer_update_part(index, parts, net.params, work.grads, work.shared[SHARED_SCALE],
                              opt.code, opt.s0, opt.s1, opt.s2, opt.coefficients[k], opt.flag,
                              opt.init and k == 0, work.half.params)
        if run.gathered and k + 2 < data.bounds.shape[0]:
            gather_rows_part(index, parts, data, work, data.bounds[k + 1], data.bounds[k + 2])
    elif kind == GRAD_NORM:
        lo, hi = part(work.grads.shape[0], parts, index, COL_ALIGN)
        work.partials[index, P_GRAD_SQ] = sum_squares(work.grads[lo:hi])
    elif kind == CHECK_UPDATE:
        optimizer_check_part(index, parts, net.params, work.grads, work.shared[SHARED_SCALE],
                             opt.code, opt.s0, opt.s1, opt.s2, opt.coefficients[k], opt.flag,
                             opt.init and k == 0, work.partials)


@njit(inline="always", **JIT)
def run_phase(kind, layer, k, net, data, work, opt, run):
    """Leader: run one phase, with the team when there is one, and wait for all its parts."""
    parts = run.parts
    if run.members == 1:
        for index in range(parts):
            do_part(kind, index, parts, layer, k, net, data, work, opt, run)
        return
    sync = work.sync
    generation = sync[POSTED * SLOT] + 1
    post(sync, generation, kind, layer, k, parts)
    for index in range(parts):
        if claim(sync, index, generation):
            do_part(kind, index, parts, layer, k, net, data, work, opt, run)
            atomic_add(sync, DONE, 1)
    wait_done(sync, parts)


@njit(inline="always", **JIT)
def help_team(t, net, data, work, opt, run):
    """Helper t: run parts of the posted phases (its own part first) until the leader finishes."""
    sync = work.sync
    last = 0
    while True:
        generation, kind, layer, k, parts = read_posted(sync, last)
        if generation < 0:
            return
        for j in range(parts):
            index = (t + j) % parts
            if claim(sync, index, generation):
                do_part(kind, index, parts, layer, k, net, data, work, opt, run)
                atomic_add(sync, DONE, 1)
        last = generation


@njit(inline="always", **JIT)
def part_losses(work, parts):
    """(Σ loss terms, Σ penalty) over the parts."""
    loss = 0.0
    penalty = 0.0
    for t in range(parts):
        loss += work.partials[t, P_LOSS]
        penalty += work.partials[t, P_PENALTY]
    return loss, penalty


@njit(inline="always", **JIT)
def part_sums(work, parts):
    """(Σ squared gradient norm, Σ correct, Σ counted) over the parts."""
    grad_sq = 0.0
    correct = 0
    counted = 0
    for t in range(parts):
        grad_sq += work.partials[t, P_GRAD_SQ]
        correct += int(work.partials[t, P_CORRECT])
        counted += int(work.partials[t, P_COUNTED])
    return grad_sq, correct, counted


@njit(inline="always", **JIT)
def part_checks(work, parts, bounds):
    """After ``CHECK_UPDATE``: the first non-finite new value over the parts (``P_BAD``'s code, 0
    when none); when there is none, bounds[0:4] become the largest |new value| of each array."""
    for t in range(parts):
        if work.partials[t, P_BAD] != 0.0:
            return int(work.partials[t, P_BAD])
    for a in range(4):
        largest = 0.0
        for t in range(parts):
            largest = max(largest, work.partials[t, P_MAX + a])
        bounds[a] = largest
    return 0


@njit(inline="always", **JIT)
def clip_scale(norm, clip_norm):
    """The factor that brings a gradient of L2 norm ``norm`` to ``clip_norm`` (0: off), else 1."""
    if clip_norm > 0.0 and norm > clip_norm:
        return clip_norm / (norm + 1e-6)
    return 1.0
