"""One owner of the cores: while fastmlp's kernels run their own threads, SciPy's BLAS runs
single-threaded.

The kernels cut every matrix product into blocks, one per Numba thread, and each thread calls the
BLAS behind ``scipy.linalg.cython_blas`` on its block. A multi-threaded BLAS would then start its
own threads inside each of them and the two pools would fight over the cores (a Numba parallel
region next to OpenBLAS's threads was measured 9–80× slower). ``single_threaded_blas()`` sets
that BLAS to one thread for the duration of a kernel call and restores its setting afterwards;
concurrent calls from several Python threads share one reference count, so the last one out
restores it.

The library is the one ``scipy.linalg.cython_blas`` links (its thread-control function is looked
up through that module's own handle), else any found among the shared objects mapped into the
process (``/proc/self/maps``) by the thread-control function it exports (OpenBLAS, including the builds bundled with SciPy and
NumPy wheels, and MKL); elsewhere threadpoolctl, when installed, names it. When none can be
controlled, :func:`blas_controlled` is False and the kernels run on one thread, leaving the BLAS
its own threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading

# (getter, setter) symbol pairs of the BLAS libraries' thread controls, most specific first
_CONTROLS = (
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
)
_NAME_HINTS = ("blas", "mkl")

_lock = threading.Lock()
_users = 0
_saved = []
_controls = None


def _mapped_libraries():
    """Paths of the shared objects mapped into this process whose names suggest a BLAS."""
    paths = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split(None, 5)
                if len(fields) == 6:
                    path = fields[5].strip()
                    name = os.path.basename(path).lower()
                    if path.startswith("/") and ".so" in name and any(h in name for h in _NAME_HINTS):
                        paths.append(path)
    except OSError:
        pass
    if not paths:
        try:
            from threadpoolctl import threadpool_info
        except ImportError:
            return []
        paths = [info["filepath"] for info in threadpool_info() if info.get("user_api") == "blas"]
    return list(dict.fromkeys(paths))


def _find_controls():
    """[(get, set)] ctypes functions of the BLAS the kernels call: looked up through the handle of
    ``scipy.linalg.cython_blas`` itself (its dependencies are searched, so this finds the library
    it forwards to), else of every BLAS found in the process."""
    import scipy.linalg.cython_blas as cython_blas
    own = _controls_in([cython_blas.__file__])
    return own or _controls_in(_mapped_libraries())


def _controls_in(paths):
    found = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
        except OSError:
            continue
        for get_name, set_name in _CONTROLS:
            getter, setter = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if getter is not None and setter is not None:
                getter.restype, getter.argtypes = ctypes.c_int, []
                setter.restype, setter.argtypes = None, [ctypes.c_int]
                found.append((getter, setter))
                break
    return found


def _get_controls():
    global _controls
    if _controls is None:
        with _lock:
            if _controls is None:
                _controls = _find_controls()
    return _controls


def blas_controlled():
    """Whether the BLAS behind the kernels can be set to one thread (see the module docstring)."""
    return bool(_get_controls())


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with the kernels' BLAS at one thread; restore its count after (nothing is
    done when it cannot be controlled)."""
    global _users, _saved
    controls = _get_controls()
    if not controls:
        yield
        return
    with _lock:
        if _users == 0:
            _saved = [getter() for getter, _ in controls]
            for _, setter in controls:
                setter(1)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                for (_, setter), count in zip(controls, _saved):
                    setter(count)
