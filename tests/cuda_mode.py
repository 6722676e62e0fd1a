"""Where the CUDA tests run: in this process when a usable GPU is present or the CUDA simulator is
on (``NUMBA_ENABLE_CUDASIM=1``), otherwise in a child pytest process on the simulator — so that
the parent never imports numba.cuda in simulator mode (other tests expect ``device="cuda"`` to
report that no GPU is present). The same tests run unchanged on a real GPU.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastmlp.engines.cuda_support import cuda_status, driver_gpu_count, simulator_enabled

ROOT = Path(__file__).resolve().parent.parent


def choose_mode():
    """("simulator" | "gpu" | "unavailable" | "subprocess", reason)."""
    if simulator_enabled():
        return "simulator", "NUMBA_ENABLE_CUDASIM=1"
    gpus, why = driver_gpu_count()
    if gpus > 0:
        available, reason = cuda_status()
        return ("gpu", reason) if available else ("unavailable", reason)
    return "subprocess", why


MODE, MODE_REASON = choose_mode()

CUDA_TEST_MARKS = [
    # SplitMix64 wraps modulo 2^64 by design; the simulator runs it with NumPy scalars, which warn.
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
    # Tiny test grids under-use a real GPU ("Grid size N will likely result in GPU
    # under-utilization"); matched by message, as numba and numba-cuda define their own classes.
    pytest.mark.filterwarnings("ignore:Grid size"),
]
"""The ``pytestmark`` of every CUDA test file."""
IN_PROCESS = MODE in ("simulator", "gpu")


def small_launch_geometry(monkeypatch, gpu_config, gemm_tile):
    """Shrink threads per block, reduction blocks and GEMM tiles so tiny shapes span several
    blocks, and (on the simulator) shorten the GIL switch interval: the simulator runs a block's
    threads as Python threads that meet at every barrier. Returns a function that undoes the
    switch-interval change."""
    monkeypatch.setattr(gpu_config, "THREADS_PER_BLOCK", 8)
    monkeypatch.setattr(gpu_config, "REDUCE_COLS", 4)
    monkeypatch.setattr(gpu_config, "REDUCE_ROWS", 4)
    monkeypatch.setattr(gpu_config, "GEMM_TILE", gemm_tile)
    gpu_config.check_geometry()
    interval = sys.getswitchinterval()
    if MODE == "simulator":
        sys.setswitchinterval(5e-5)
    return lambda: sys.setswitchinterval(interval)


def cuda_test_mode(request, monkeypatch, parent_tests, gemm_tile):
    """Body of the autouse fixture of each CUDA test file (``yield from`` it): the tests named in
    ``parent_tests`` run as they are; the others are skipped when CUDA does not run in this
    process, and otherwise run with the small launch geometry (``gemm_tile`` the product tile)."""
    if request.node.originalname in parent_tests:
        yield
        return
    if not IN_PROCESS:
        pytest.skip(f"CUDA unavailable in this process: {MODE_REASON}")
    from fastmlp.kernels.cuda import config as gpu_config
    restore = small_launch_geometry(monkeypatch, gpu_config, gemm_tile)
    try:
        yield
    finally:
        restore()


def run_file_under_simulator(test_file, what):
    """Run ``test_file`` in a child pytest process with the simulator on; fail with its report."""
    if MODE != "subprocess":
        pytest.skip(f"the {what} tests run in this process ({MODE}: {MODE_REASON})")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    cmd = [sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    report = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"CUDA simulator {what} tests failed:\n{report}"
    assert re.search(r"\b\d+ passed", proc.stdout), report  # the tests ran
    assert not re.search(r"\b\d+ failed", proc.stdout), report


def collect_only_parent_tests(namespace, parent_tests):
    """Without a GPU or the simulator, drop a module's kernel-launching tests from collection:
    they run in the child process of its simulator runner."""
    if MODE == "subprocess":
        for name in [n for n in list(namespace) if n.startswith("test_") and n not in parent_tests]:
            del namespace[name]


def route_products_to_cublas(monkeypatch, gpu_config, gpu_cublas, backend="cublas"):
    """Set ``config.MATMUL = backend`` and record the (M, N, K) of every product that reaches
    ``cublas.matmul``; returns that list.

    On a GPU with CuPy the real cuBLAS computes them. Elsewhere (the simulator, or a GPU without
    CuPy) a stand-in computes the product on the host from copies and writes it back, and
    ``cupy_status`` reports it as available: the dispatch, the separate epilogue launch and every
    caller of the product are exercised; only the CuPy call itself is not.
    """
    calls = []
    real = gpu_cublas.matmul
    use_real = MODE == "gpu" and gpu_cublas.cupy_status()[0] is not None

    def recorded(c, a, b, trans_a=False, trans_b=False, stream=0):
        calls.append((c.shape[0], c.shape[1], a.shape[0] if trans_a else a.shape[1]))
        if use_real:
            return real(c, a, b, trans_a, trans_b, stream=stream)
        A, B = a.copy_to_host(), b.copy_to_host()
        c.copy_to_device(np.ascontiguousarray((A.T if trans_a else A) @ (B.T if trans_b else B)))
        return None

    monkeypatch.setattr(gpu_cublas, "matmul", recorded)
    if not use_real:
        monkeypatch.setattr(gpu_cublas, "cupy_status", lambda: (True, "host stand-in"))
    monkeypatch.setattr(gpu_config, "MATMUL", backend)
    return calls


class HostMemoryGpuArray:
    """Stands in for a CuPy array or a PyTorch CUDA tensor: exposes the memory of a NumPy array
    through ``__cuda_array_interface__`` (version 3). The pointer is a host address, which is
    device memory only on the CUDA simulator (and to code that never dereferences it)."""

    def __init__(self, array):
        self.array = array

    @property
    def __cuda_array_interface__(self):
        a = self.array
        return {"shape": a.shape, "typestr": a.dtype.str, "data": (a.ctypes.data, False),
                "strides": None if a.flags.c_contiguous else a.strides, "version": 3,
                "stream": None}


class ForeignGpuArray:
    """A foreign object exposing the ``__cuda_array_interface__`` of a numba.cuda device array
    (which it keeps alive), as CuPy and PyTorch arrays do."""

    def __init__(self, device_array):
        self.device_array = device_array
        self.__cuda_array_interface__ = device_array.__cuda_array_interface__


def gpu_array(array, every_other_column=False):
    """A GPU array holding ``array``'s values (or a non-contiguous view of its even columns), seen
    only through ``__cuda_array_interface__``: on a GPU, a numba.cuda copy behind a foreign
    object; on the simulator, ``array``'s own memory."""
    columns = slice(None, None, 2 if every_other_column else 1)
    if MODE == "gpu":
        from numba import cuda
        d = cuda.to_device(np.ascontiguousarray(array))
        return ForeignGpuArray(d[:, columns] if every_other_column else d)
    return HostMemoryGpuArray(array[:, columns] if every_other_column else array)


def gpu_pointer(array):
    """The device address of a GPU input or of a numba.cuda (or simulator) device array."""
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is not None:
        return interface["data"][0]
    return array._ary.ctypes.data  # simulator device array: a NumPy array inside
