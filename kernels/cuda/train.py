"""Whole-epoch training on the GPU (twin of ``kernels/cpu/train.py``).

Every step of the epoch runs on the device: batch gather, forward, loss, backward, penalties, the
finite check and gradient norm, clipping, the optimizer update and the accuracy counts. The host
only walks the batch bounds and launches; nothing crosses to the host until the end of the epoch,
when three scalars come back.

Shapes (device arrays unless stated): X (n, d); labels (n,) int64 or empty; targets (n, C) or
(0, C); order (n,) int64, the row order of the epoch; bounds (steps + 1,) int64 on the **host**
(batch k covers order[bounds[k]:bounds[k+1]]); Xb (B, d), lb (B or 0,), tb (B or 0, C) the batch
buffers; params, grads (P,); buffers (R,); s0, s1, s2 the optimizer state (empty when unused);
coefficients (steps, N_COEFFICIENTS) the optimizer scalars of each step in the params' dtype
(see ``optimizers.optimizer_update``). ``layer_int``, ``layer_float``, ``ws_off_full`` and
``ws_off_last`` are host tables as in ``network``; ``ws`` is sized for the largest batch.

Fills ``work.result`` (a host array, N_RESULT,) like the CPU kernel: steps done, Σ batch loss ·
rows, correct, counted, why the steps stopped and which value overflowed.

Non-finite steps: a device status word holds the first step whose loss or gradient is NaN/inf,
or whose update would make a parameter or state value NaN/inf (``rules.update_bound`` on the
magnitude bounds in the device copy of ``opt.bounds``, and when that cannot clear it,
:func:`check_update_kernel` computing the update on private copies). From that step on, the
optimizer update, the clipping and the loss/accuracy accumulation are skipped on the device, so
parameters and optimizer state stay as the CPU kernel leaves them (every gated kernel reads the
status word, so no per-step flag crosses to the host); the running statistics of batchnorm
layers are restored at the end of the epoch to their value before that step's forward pass (as
the CPU kernel does).
"""

import functools
import math

import numba
import numpy as np
from numba import cuda

from ..contract import (
    N_BOUNDS,
    R_BAD,
    R_CORRECT,
    R_COUNTED,
    R_DONE,
    R_STOP,
    R_TOTAL,
    STOP_NONE,
    STOP_NONFINITE,
    STOP_OVERFLOW,
)
from . import config
from ._reduce import block_sum_f64
from ._views import prefix
from .metrics import count_correct
from .network import network_backward, network_loss, network_output, partials_size
from .optimizers import update_bound, update_element

NO_BAD = np.iinfo(np.int64).max  # check[1] when no non-finite new value was found

__all__ = ["gather_batch", "train_epoch"]


@cuda.jit(**config.CUDA_JIT)
def gather_batch_kernel(Xb, lb, tb, X, labels, targets, order, start, m):
    """Xb[r] = X[order[start + r]] (and lb, tb likewise) for r < m; one thread per element."""
    first, stride = cuda.grid(1), cuda.gridsize(1)
    d = X.shape[1]
    for e in range(first, m * d, stride):
        r = e // d
        Xb[r, e - r * d] = X[order[start + r], e - r * d]
    if labels.shape[0]:
        for r in range(first, m, stride):
            lb[r] = labels[order[start + r]]
    if targets.shape[0]:
        c = targets.shape[1]
        for e in range(first, m * c, stride):
            r = e // c
            tb[r, e - r * c] = targets[order[start + r], e - r * c]


@cuda.jit(**config.CUDA_JIT)
def square_sum_kernel(partials, grads):
    """partials[block] = Σ grads² over the block's grid-stride slice (float64)."""
    acc = 0.0
    for k in range(cuda.grid(1), grads.shape[0], cuda.gridsize(1)):
        v = float(grads[k])
        acc += v * v
    total = block_sum_f64(acc)
    if cuda.threadIdx.x == 0:
        partials[cuda.blockIdx.x] = total


@cuda.jit(**config.CUDA_JIT)
def step_check_kernel(status, scale, partials, loss, k, clip_norm, code, coefficients, flag,
                      init_buffer, bounds, check, check_max):
    """One block: ‖grads‖ from the partials, the finite check of step k, the clip scale, and
    whether the update of step k must be checked value by value before it is made (check[0] = 1;
    ``rules.update_bound`` on ``bounds``, whose values before the step are kept in
    bounds[N_BOUNDS:]). status = (first failed step, or the step count when none failed; why it
    failed, STOP_*; the first non-finite new value, as ``P_BAD``); check = (checking, the first
    non-finite new value found, NO_BAD for none), check_max (4,) the largest |new value| of the
    param and of s0, s1, s2 found by :func:`check_update_kernel`."""
    tid = cuda.threadIdx.x
    acc = 0.0
    for b in range(tid, partials.shape[0], cuda.blockDim.x):
        acc += partials[b]
    sq = block_sum_f64(acc)
    if tid == 0:
        scale[0] = 1.0
        check[0] = 0
        if status[0] < k:
            return
        if not (math.isfinite(sq) and math.isfinite(loss[0])):
            status[0] = k
            status[1] = STOP_NONFINITE
            return
        norm = math.sqrt(sq)
        if clip_norm > 0.0 and norm > clip_norm:
            scale[0] = clip_norm / (norm + 1e-6)
        for a in range(N_BOUNDS):
            bounds[N_BOUNDS + a] = bounds[a]
        if not update_bound(code, coefficients[k], flag, init_buffer, norm * scale[0], bounds):
            check[0] = 1
            check[1] = NO_BAD
            for a in range(4):
                check_max[a] = 0.0


@cuda.jit(**config.CUDA_JIT)
def step_finish_kernel(status, total, correct, loss, step_correct, k, rows, bounds, check,
                       check_max):
    """One thread, after the check of step k's update: when the check found a non-finite new
    value, step k fails (STOP_OVERFLOW, the value in status[2]) and ``bounds`` go back to their
    values before the step; otherwise, when it checked, the bounds become the largest |new
    values|, and the step's loss and correct count join the epoch sums."""
    if cuda.grid(1) != 0 or status[0] < k:
        return
    if status[0] == k:  # the finite check failed
        return
    if check[0]:
        if check[1] != NO_BAD:
            status[0] = k
            status[1] = STOP_OVERFLOW
            status[2] = check[1]
            for a in range(N_BOUNDS):
                bounds[a] = bounds[N_BOUNDS + a]
            return
        for a in range(4):
            bounds[a] = check_max[a]
    total[0] += loss[0] * rows
    correct[0] += step_correct[0]


@cuda.jit(device=True)
def _note(value, i, a, check, check_max):
    """Record the new value of element i of array a: its code when it is not finite, else its
    magnitude."""
    if not math.isfinite(value):
        cuda.atomic.min(check, 1, 1 + 4 * i + a)
    else:
        cuda.atomic.max(check_max, a, math.fabs(value))


@functools.lru_cache(maxsize=None)
def check_update_kernel(dtype):
    """The kernel, for parameters of ``dtype``, that computes step k's update of every element on
    private copies (nothing written to the arrays) when check[0] is set and step k has not
    failed: check[1] = the smallest ``P_BAD`` code of a non-finite new value, check_max[a] the
    largest |new value| of array a (twin of ``cpu.optimizers.optimizer_check_part``)."""
    element_type = numba.from_dtype(np.dtype(dtype))

    @cuda.jit(**config.CUDA_JIT)
    def kernel(code, param, grad, s0, s1, s2, coefficients, flag, init_buffer, status, k, check,
               check_max):
        if check[0] == 0 or status[0] <= k:
            return
        c = coefficients[k]
        p = cuda.local.array(1, element_type)
        g = cuda.local.array(1, element_type)
        a0 = cuda.local.array(1, element_type)
        a1 = cuda.local.array(1, element_type)
        a2 = cuda.local.array(1, element_type)
        for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
            p[0] = param[i]
            g[0] = grad[i]
            if s0.shape[0]:
                a0[0] = s0[i]
            if s1.shape[0]:
                a1[0] = s1[i]
            if s2.shape[0]:
                a2[0] = s2[i]
            update_element(code, p, g, a0, a1, a2, 0, c, flag, init_buffer)
            _note(float(p[0]), i, 0, check, check_max)
            if s0.shape[0]:
                _note(float(a0[0]), i, 1, check, check_max)
            if s1.shape[0]:
                _note(float(a1[0]), i, 2, check, check_max)
            if s2.shape[0]:
                _note(float(a2[0]), i, 3, check, check_max)

    return kernel


@cuda.jit(**config.CUDA_JIT)
def clip_kernel(grads, scale, status, k):
    """grads *= scale[0] while step k has not failed and the scale is not 1."""
    if status[0] <= k or scale[0] == 1.0:
        return
    s = scale[0]
    for i in range(cuda.grid(1), grads.shape[0], cuda.gridsize(1)):
        grads[i] = grads[i] * s


@cuda.jit(**config.CUDA_JIT)
def gated_optimizer_update_kernel(code, param, grad, s0, s1, s2, coefficients, flag, init_buffer,
                                  status, k):
    """``optimizers.optimizer_update_kernel`` for step k with the coefficients of row k, skipped
    once a step ≤ k has failed."""
    if status[0] <= k:
        return
    c = coefficients[k]
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        update_element(code, param, grad, s0, s1, s2, i, c, flag, init_buffer)


@cuda.jit(**config.CUDA_JIT)
def save_buffers_kernel(saved, buffers, status, k):
    """saved = buffers at the start of step k while no step before k has failed (so it keeps the
    values from before the forward pass of the first failed step)."""
    if status[0] < k:
        return
    for i in range(cuda.grid(1), buffers.shape[0], cuda.gridsize(1)):
        saved[i] = buffers[i]


@cuda.jit(**config.CUDA_JIT)
def copy_kernel(dst, src):
    """dst = src, elementwise (1-D)."""
    for i in range(cuda.grid(1), src.shape[0], cuda.gridsize(1)):
        dst[i] = src[i]


def _grid(n):
    tpb = config.THREADS_PER_BLOCK
    return config.blocks_for(n, tpb), tpb


def gather_batch(Xb, lb, tb, X, labels, targets, order, start, stop, stream=0):
    """Xb[:m] = X[order[start:stop]] (labels, targets likewise; empty ones are skipped), m = stop
    - start. Xb (B, d), lb (B,) or empty, tb (B, C) or (0, C); X (n, d); order (n,) int64."""
    m = int(stop) - int(start)
    c = targets.shape[1] if targets.shape[0] else 0
    blocks, tpb = _grid(m * max(X.shape[1], c, 1))
    gather_batch_kernel[blocks, tpb, stream](Xb, lb, tb, X, labels, targets, order, int(start), m)


def train_epoch(net, data, work, opt, run, stream=0):
    """One epoch of minibatch training on the device, from the records of the CPU kernels'
    contract (``kernels.contract``) holding device arrays (the layout tables ``net.layer_int``,
    ``net.layer_float``, ``work.ws_off``, ``work.ws_off_last`` and ``data.bounds`` stay on the
    host, and so does ``opt.bounds``, updated in place); see the module docstring. Fills the
    host array ``work.result`` (N_RESULT,) as the CPU kernel does and returns it."""
    X, labels, targets, loss_code, order, bounds = data
    params, buffers, layer_int, layer_float = net
    Xb, lb, tb, grads, ws = work.Xb, work.lb, work.tb, work.grads, work.ws
    ws_off_full, ws_off_last = work.ws_off, work.ws_off_last
    seed, first_step, l1, l2, clip_norm = run.seed, run.first_step, run.l1, run.l2, run.clip_norm
    bounds = np.asarray(bounds)
    steps = int(bounds.shape[0]) - 1
    rows = int(np.max(np.diff(bounds))) if steps > 0 else 0
    tpb = config.THREADS_PER_BLOCK
    status = cuda.to_device(np.array([steps, STOP_NONE, 0], dtype=np.int64), stream=stream)
    total = cuda.to_device(np.zeros(1, dtype=np.float64), stream=stream)
    correct = cuda.to_device(np.zeros(1, dtype=np.int64), stream=stream)
    step_correct = cuda.to_device(np.zeros(1, dtype=np.int64), stream=stream)
    loss = cuda.device_array(1, dtype=np.float64, stream=stream)
    scale = cuda.device_array(1, dtype=np.float64, stream=stream)
    update_bounds = cuda.to_device(np.concatenate([opt.bounds, opt.bounds]), stream=stream)
    check = cuda.to_device(np.zeros(2, dtype=np.int64), stream=stream)
    check_max = cuda.to_device(np.zeros(4), stream=stream)
    check_kernel = check_update_kernel(np.dtype(params.dtype))
    partials = cuda.device_array(max(1, partials_size(layer_int, rows)), dtype=np.float64,
                                 stream=stream)
    count_partials = cuda.device_array(config.blocks_for(rows, tpb), dtype=np.int64, stream=stream)
    n_params = params.shape[0]
    norm_blocks = min(1024, config.blocks_for(n_params, tpb))
    norm_partials = cuda.device_array(norm_blocks, dtype=np.float64, stream=stream)
    saved = cuda.device_array_like(buffers) if buffers.shape[0] else None
    update_blocks, _ = _grid(n_params)
    counted = []
    code, flag = int(opt.code), bool(opt.flag)
    for k in range(steps):
        start, stop = int(bounds[k]), int(bounds[k + 1])
        m = stop - start
        ws_off = ws_off_last if k == steps - 1 else ws_off_full
        init = bool(opt.init and k == 0)
        if saved is not None:
            save_buffers_kernel[_grid(buffers.shape[0])[0], tpb, stream](saved, buffers, status, k)
        gather_batch(Xb, lb, tb, X, labels, targets, order, start, stop, stream=stream)
        xb = prefix(Xb, m)
        lbm = prefix(lb, m) if lb.shape[0] else lb
        tbm = prefix(tb, m) if tb.shape[0] else tb
        network_loss(xb, lbm, tbm, loss_code, params, buffers, layer_int, layer_float, ws_off, ws,
                     True, True, seed, first_step + k, l1, l2, out=loss, partials=partials,
                     stream=stream)
        network_backward(xb, params, grads, layer_int, layer_float, ws_off, ws, True, l1, l2,
                         stream=stream)
        z = network_output(ws, ws_off, layer_int, m, True)
        counted_k = count_correct(z, lbm, tbm, loss_code, out=step_correct,
                                  partials=count_partials, stream=stream)
        square_sum_kernel[norm_blocks, tpb, stream](norm_partials, grads)
        step_check_kernel[1, tpb, stream](status, scale, norm_partials, loss, k, float(clip_norm),
                                          code, opt.coefficients, flag, init, update_bounds,
                                          check, check_max)
        if clip_norm > 0.0:
            clip_kernel[update_blocks, tpb, stream](grads, scale, status, k)
        check_kernel[update_blocks, tpb, stream](code, params, grads, opt.s0, opt.s1, opt.s2,
                                                 opt.coefficients, flag, init, status, k, check,
                                                 check_max)
        step_finish_kernel[1, 1, stream](status, total, correct, loss, step_correct, k, float(m),
                                         update_bounds, check, check_max)
        gated_optimizer_update_kernel[update_blocks, tpb, stream](
            code, params, grads, opt.s0, opt.s1, opt.s2, opt.coefficients, flag, init, status, k)
        counted.append(counted_k)
    done, stopped, bad = (int(v) for v in status.copy_to_host(stream=stream))
    if done < steps and saved is not None:
        copy_kernel[_grid(buffers.shape[0])[0], tpb, stream](buffers, saved)
    opt.bounds[:] = update_bounds.copy_to_host(stream=stream)[:N_BOUNDS]
    result = work.result
    result[R_DONE], result[R_TOTAL] = done, float(total.copy_to_host(stream=stream)[0])
    result[R_CORRECT] = int(correct.copy_to_host(stream=stream)[0])
    result[R_COUNTED] = int(sum(counted[:done]))
    result[R_STOP], result[R_BAD] = stopped, bad
    return result
