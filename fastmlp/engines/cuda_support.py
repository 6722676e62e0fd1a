"""Whether the CUDA back end can run here, and why not when it cannot.

``cuda_status()`` answers ``(available, reason)`` without raising and without printing a driver
traceback. It checks, in order: that ``numba.cuda`` imports (from the ``numba-cuda`` package,
which ``pip install "fastmlp[cuda]"`` brings, or from numba's deprecated built-in CUDA target);
whether the CUDA simulator is enabled (``NUMBA_ENABLE_CUDASIM=1`` before numba.cuda is imported;
counted as available, since the kernels run, slowly, in Python: the mode the tests use on machines
without a GPU); that the driver finds a GPU; and that a one-element kernel compiles and runs on it
(which also catches a missing NVVM/toolkit). The answer is computed once per process; the CUDA
mode of a process is fixed when ``numba.cuda`` is first imported.

``require_cuda()`` raises :class:`CudaUnavailableError` with that reason, for ``device="cuda"``.
``set_cuda_matmul(backend)`` chooses who computes the dense layers' matrix products on the GPU
(``"numba"``, ``"cublas"`` or ``"auto"``; see ``kernels/cuda/config.py``) and ``get_cuda_matmul()``
reads the choice.
``driver_gpu_count()`` asks the CUDA driver library directly (ctypes; numba.cuda is not imported),
so a process can decide whether to enable the simulator before importing numba.cuda.
"""

import contextlib
import ctypes
import io
import os
import sys
import threading

__all__ = ["cuda_status", "require_cuda", "CudaUnavailableError", "driver_gpu_count",
           "simulator_enabled", "set_cuda_matmul", "get_cuda_matmul", "INSTALL_HINT"]

INSTALL_HINT = ('install the CUDA extra: pip install "fastmlp[cuda]" (numba-cuda for CUDA 12 '
                'drivers) and make sure an NVIDIA driver and GPU are present')

_lock = threading.Lock()
_cached = None


class CudaUnavailableError(RuntimeError):
    """Raised when ``device="cuda"`` is requested but no usable CUDA device is available."""


def simulator_enabled():
    """True when this process runs (or will run) numba.cuda in simulator mode."""
    module = sys.modules.get("numba.cuda")
    if module is not None:
        return "simulator" in getattr(getattr(module, "jit", None), "__module__", "")
    value = os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip()
    try:
        return int(value) != 0
    except ValueError:
        return False


def driver_gpu_count():
    """(number of CUDA devices the driver reports, reason) via the driver library, 0 on failure.

    Does not import numba.cuda; never raises.
    """
    names = (["nvcuda.dll"] if sys.platform == "win32"
             else ["libcuda.so.1", "libcuda.so", "libcuda.dylib"])
    if os.environ.get("NUMBA_CUDA_DRIVER"):
        names.insert(0, os.environ["NUMBA_CUDA_DRIVER"])
    lib = None
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return 0, "the CUDA driver library (libcuda) was not found: no NVIDIA driver"
    try:
        if lib.cuInit(0) != 0:
            return 0, "the CUDA driver did not initialize (no usable NVIDIA GPU)"
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0, "the CUDA driver could not count devices"
    except Exception as exc:  # pragma: no cover - depends on the driver
        return 0, f"the CUDA driver failed: {type(exc).__name__}: {exc}"
    if count.value == 0:
        return 0, "the CUDA driver reports no GPU"
    return int(count.value), f"{count.value} CUDA device(s)"


def _first_line(text):
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _probe():
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:
            from numba import cuda
        except Exception as exc:
            return False, (f"numba.cuda cannot be imported ({type(exc).__name__}: "
                           f"{_first_line(exc)}); {INSTALL_HINT}")
        implementation = getattr(cuda, "implementation", "Built-in")
        source = ("numba-cuda" if implementation != "Built-in"
                  else "numba's built-in CUDA target (deprecated; install numba-cuda)")
        if simulator_enabled():
            return True, ("CUDA simulator (NUMBA_ENABLE_CUDASIM=1): kernels run in Python, for "
                          "tests only")
        try:
            if not cuda.is_available():
                why = _first_line(cuda.cuda_error()).rstrip(".") or "no CUDA GPU found"
                return False, f"no usable CUDA GPU: {why}; {INSTALL_HINT}"
            device = cuda.get_current_device()
            name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
            cc = device.compute_capability
        except Exception as exc:
            return False, (f"the CUDA driver failed ({type(exc).__name__}: {_first_line(exc)}); "
                           f"{INSTALL_HINT}")
        try:
            import numpy as np

            @cuda.jit
            def _one(a):
                a[0] = a[0] + 1.0

            arr = cuda.to_device(np.zeros(1))
            _one[1, 1](arr)
            if arr.copy_to_host()[0] != 1.0:
                return False, f"a test kernel gave a wrong result on {name}"
        except Exception as exc:
            return False, (f"{name} found, but a test kernel failed to compile or run "
                           f"({type(exc).__name__}: {_first_line(exc)}); the CUDA toolkit "
                           f"libraries (NVVM) may be missing: {INSTALL_HINT}")
        return True, f"{name} (compute capability {cc[0]}.{cc[1]}) via {source}"


def cuda_status(refresh=False):
    """(available, reason): whether CUDA kernels can run in this process. Never raises.

    ``reason`` names the device (or the simulator) when available and what is missing otherwise.
    The result is cached; ``refresh=True`` probes again.
    """
    global _cached
    with _lock:
        if _cached is None or refresh:
            try:
                _cached = _probe()
            except BaseException as exc:  # never let a probe failure escape
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                _cached = (False, f"CUDA probe failed ({type(exc).__name__}: {_first_line(exc)})")
        return _cached


def require_cuda():
    """Return the status reason when CUDA is usable; raise CudaUnavailableError (no traceback of
    the driver, only what is missing) otherwise."""
    available, reason = cuda_status()
    if not available:
        raise CudaUnavailableError(f'device="cuda" is not available: {reason}')
    return reason


def set_cuda_matmul(backend):
    """Choose who computes the matrix products of ``device="cuda"`` models, for the whole process.

    - ``"numba"`` (the default): fastmlp's tiled numba.cuda kernel, bias and activation fused in;
    - ``"cublas"``: cuBLAS through CuPy for every product, the bias and activation then one
      numba.cuda launch; raises :class:`CudaUnavailableError` when CuPy does not import or when
      numba.cuda runs on the simulator (which has no cuBLAS);
    - ``"auto"``: cuBLAS for products of at least ``kernels.cuda.config.CUBLAS_MIN_MACS``
      multiply-adds when CuPy imports, the numba kernel otherwise.

    Both paths give the same values up to the summation order of the products. Returns the
    previous choice.
    """
    from ..kernels.cuda import config
    if backend not in config.MATMUL_CHOICES:
        raise ValueError(f"backend must be one of {config.MATMUL_CHOICES}; got {backend!r}")
    if backend == "cublas":
        if simulator_enabled():
            raise CudaUnavailableError("the cuBLAS matrix product needs a GPU: numba.cuda runs on "
                                       "the CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
        from ..kernels.cuda.cublas import cupy_status
        cupy, reason = cupy_status()
        if cupy is None:
            raise CudaUnavailableError(f"the cuBLAS matrix product needs CuPy: {reason}")
    previous, config.MATMUL = config.MATMUL, backend
    return previous


def get_cuda_matmul():
    """The current choice of :func:`set_cuda_matmul`."""
    from ..kernels.cuda import config
    return config.MATMUL
