"""Matrix products through cuBLAS (via CuPy), the optional path of the dense layers.

``matmul(c, a, b, trans_a, trans_b, stream)`` writes c (M, N) = op(a)·op(b) like the tiled kernel
of ``dense.gemm`` (op the identity or the transpose; a (M, K) or (K, M), b (K, N) or (N, K)), for
numba.cuda device arrays of one float dtype. CuPy wraps the three arrays through
``__cuda_array_interface__`` (no copies) and ``cupy.matmul`` calls cuBLAS GEMM on the stream that
numba uses, so the numba.cuda launches before and after it stay ordered. CuPy computes float32
products in float32 (no TF32) unless ``CUPY_TF32=1`` is set in its environment.

CuPy is optional (``pip install "fastmlp[cublas]"``); nothing here imports it until it is used.
"""

import functools

__all__ = ["cupy_status", "matmul", "CUBLAS_INSTALL_HINT"]

CUBLAS_INSTALL_HINT = 'pip install "fastmlp[cublas]" (CuPy for CUDA 12)'


@functools.lru_cache(maxsize=None)
def cupy_status():
    """(the cupy module or None, reason): whether CuPy imports here. Never raises."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CUDA library error raised while importing
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"CuPy cannot be imported ({type(exc).__name__}: {first}); {CUBLAS_INSTALL_HINT}"
    return cupy, f"CuPy {cupy.__version__}"


def _cupy_stream(cupy, stream):
    """The CuPy stream object for numba's ``stream`` (0/None: numba's default stream)."""
    if not stream:
        from numba import config as numba_config
        per_thread = getattr(numba_config, "CUDA_PER_THREAD_DEFAULT_STREAM", 0)
        return cupy.cuda.Stream.ptds if per_thread else cupy.cuda.Stream.null
    handle = getattr(stream, "handle", stream)
    pointer = getattr(handle, "value", None)
    return cupy.cuda.ExternalStream(int(handle) if pointer is None else int(pointer))


def matmul(c, a, b, trans_a=False, trans_b=False, stream=0):
    """c = op(a)·op(b) with cuBLAS; shapes as in the module docstring (checked by the caller)."""
    cupy, reason = cupy_status()
    if cupy is None:
        raise RuntimeError(f"the cuBLAS matrix product needs CuPy: {reason}")
    A, B, C = cupy.asarray(a), cupy.asarray(b), cupy.asarray(c)
    with _cupy_stream(cupy, stream):
        cupy.matmul(A.T if trans_a else A, B.T if trans_b else B, out=C)
