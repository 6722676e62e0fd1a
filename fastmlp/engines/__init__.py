"""Engines: the only code that knows devices.

A model (``fastmlp.MLP``) is its architecture and its host arrays; its engine puts data where it
computes, holds the training state of a fit (gradients, optimizer state, workspaces, batch
buffers) and runs the kernels: ``cpu.CpuEngine`` on the host (the ``kernels/cpu`` tasks, a team of
threads), ``cuda.CudaEngine`` on an NVIDIA GPU (the ``kernels/cuda`` launches). Both offer the
same methods (``check_inputs``, ``place``, ``forward``, ``loss_and_grad``, ``training_loss``,
``evaluate``, ``begin_fit``, ``run_epoch``, ``evaluate_validation``, ``sync_host``,
``host_changed``, ``end_fit``); the Trainer talks to them only through these. A fit's data go to
``begin_fit`` once, with the trainer's ``fit_data.FitPlan``, and stay with the engine until
``end_fit``. Data-parallel training over MPI wraps a CPU engine (``fastmlp.parallel.mpi``).

Support modules: ``fit_data`` (how a fit cuts its data, and the record it is kept in),
``layout`` (where every number of a network lives in its flat arrays), ``records`` (the kernel
records), ``team`` (the threads of a CPU call), ``blas_threads`` (the BLAS kept single-threaded
meanwhile), ``device_inputs`` (GPU arrays as inputs), ``cuda_support`` (whether CUDA can be used,
and the product path), ``bf16_support`` (whether the bfloat16 products of ``mixed_bfloat16`` can
run).
"""

import importlib
import sys

from .._collector import collector_paused

DEVICES = ("cpu", "cuda")


def _engine_module(name):
    """The engine module ``name`` ("cpu" or "cuda"). The first import runs with the collector
    paused (its kernel modules make many long-lived objects); later calls only look it up, so
    making a model never moves the caller's young objects to the oldest generation."""
    qualified = f"{__name__}.{name}"
    if qualified not in sys.modules:
        with collector_paused():
            importlib.import_module(qualified)
    return sys.modules[qualified]


def engine_for(device, layout, params, buffers, dtype, seed, n_outputs, loss, mixed=False):
    """The engine of ``device`` ("cpu" or "cuda") for a model's layout and flat arrays; ``mixed``:
    the matrix products take bfloat16 operands (the ``mixed_bfloat16`` policy, CPU only)."""
    if device == "cuda":
        if mixed:
            raise ValueError("dtype 'mixed_bfloat16' runs on the CPU only")
        return _engine_module("cuda").CudaEngine(layout, params, buffers, dtype, seed, n_outputs,
                                                 loss)
    return _engine_module("cpu").CpuEngine(layout, params, buffers, dtype, seed, n_outputs, loss,
                                           mixed)
