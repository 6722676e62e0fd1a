"""oneDNN's bfloat16 matrix product, bound so that compiled kernels call it by name.

The library is ``libdnnl.so.3`` from the ``onednn-cpu-gomp`` wheel (oneDNN 3.2 built with GNU
OpenMP; ``pip install "fastmlp[bf16]"``). Importing this module loads it and registers three
C functions with LLVM under the project's own names (``llvmlite.binding.add_symbol``), so that
``types.ExternalFunction`` declarations of those names link in any process: cached kernels
(``cache=True``) hold the name, and the address is the one registered in the loading process.

- ``fastmlp_dnnl_gemm_bf16bf16f32(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C,
  ldc)`` is ``dnnl_gemm_bf16bf16f32``: C = alpha·op(A)·op(B) + beta·C with op(X) = X or Xᵀ
  (``transa``/``transb`` the characters 'N' or 'T'), every matrix row-major, A and B bfloat16
  (uint16 bits), C float32, dimensions int64 by value; it returns a ``dnnl_status_t`` (0 success).
- ``fastmlp_omp_get_max_threads()`` and ``fastmlp_omp_set_num_threads(n)`` are the OpenMP
  functions of the libgomp that oneDNN links (looked up through oneDNN's own handle). oneDNN's
  GEMM runs on ``omp_get_max_threads()`` threads unless called inside an OpenMP region, and
  libgomp keeps that count per calling thread, so a kernel thread that sets it to 1 around its call
  gets a product computed in that thread alone, next to other threads doing the same.

Where the library cannot be loaded, the names are bound to stand-ins instead (the product returns
:data:`UNAVAILABLE` and touches nothing), so kernels that merely contain the call still compile,
cache and load; :func:`bf16_support` names what is missing and callers check it first.
"""

import ctypes
import os
import threading

from llvmlite import binding

__all__ = ["bf16_support", "library_path", "BF16_INSTALL_HINT", "UNAVAILABLE", "GEMM_SYMBOL",
           "OMP_GET_SYMBOL", "OMP_SET_SYMBOL"]

DISTRIBUTION = "onednn-cpu-gomp"
LIBRARY = "libdnnl.so.3"
BF16_INSTALL_HINT = ('pip install "fastmlp[bf16]" (oneDNN\'s CPU build, onednn-cpu-gomp, '
                     'Linux x86-64)')

GEMM_SYMBOL = "fastmlp_dnnl_gemm_bf16bf16f32"
OMP_GET_SYMBOL = "fastmlp_omp_get_max_threads"
OMP_SET_SYMBOL = "fastmlp_omp_set_num_threads"
# status returned by the stand-in product (oneDNN's own statuses are 0 … 9)
UNAVAILABLE = -1

# dnnl_cpu_isa_t bits of "AVX-512 core + VNNI + BF16" (dnnl_cpu_isa_avx512_core_bf16 = 0xe7); every
# later x86 ISA oneDNN names (avx512_core_fp16, avx512_core_amx, …) contains them
_ISA_BF16_BITS = 0xE7
# /proc/cpuinfo flags of the instructions oneDNN's bfloat16 GEMM computes with
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

_GEMM_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char, ctypes.c_char, ctypes.c_int64,
                              ctypes.c_int64, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p,
                              ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_float,
                              ctypes.c_void_p, ctypes.c_int64)
_GET_TYPE = ctypes.CFUNCTYPE(ctypes.c_int)
_SET_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_int)


def library_path():
    """Path of ``libdnnl.so.3`` as installed by the onednn-cpu-gomp wheel, or None."""
    from importlib import metadata
    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == LIBRARY:
            path = os.path.realpath(file.locate())
            if os.path.exists(path):
                return path
    return None


def _load():
    """(library handle or None, reason it is None)."""
    path = library_path()
    if path is None:
        return None, f"oneDNN is not installed ({DISTRIBUTION} not found)"
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        return None, f"oneDNN ({path}) does not load: {exc}"
    for name in ("dnnl_gemm_bf16bf16f32", "dnnl_get_effective_cpu_isa", "omp_get_max_threads",
                 "omp_set_num_threads"):
        if not hasattr(lib, name):
            return None, f"oneDNN ({path}) has no {name} (an OpenMP build of oneDNN 3 is needed)"
    return lib, ""


def _stand_in_gemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    return UNAVAILABLE


def _stand_in_get():
    return 1


def _stand_in_set(count):
    return None


_lib, _load_reason = _load()
if _lib is not None:
    _addresses = {GEMM_SYMBOL: ctypes.cast(_lib.dnnl_gemm_bf16bf16f32, ctypes.c_void_p).value,
                  OMP_GET_SYMBOL: ctypes.cast(_lib.omp_get_max_threads, ctypes.c_void_p).value,
                  OMP_SET_SYMBOL: ctypes.cast(_lib.omp_set_num_threads, ctypes.c_void_p).value}
    _stand_ins = ()
else:
    # the ctypes objects must outlive every call of the compiled code
    _stand_ins = (_GEMM_TYPE(_stand_in_gemm), _GET_TYPE(_stand_in_get), _SET_TYPE(_stand_in_set))
    _addresses = {name: ctypes.cast(fn, ctypes.c_void_p).value
                  for name, fn in zip((GEMM_SYMBOL, OMP_GET_SYMBOL, OMP_SET_SYMBOL), _stand_ins)}
for _name, _address in _addresses.items():
    binding.add_symbol(_name, _address)

_support_lock = threading.Lock()
_support = []


def cpu_flags(path="/proc/cpuinfo"):
    """The feature flags of the first processor listed in ``path`` (a set; empty where the file
    does not exist, as outside Linux)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def effective_isa():
    """(dnnl_cpu_isa_t value, its name) oneDNN dispatches to here; (0, "") without oneDNN. The
    value can be capped below the CPU's by the ``ONEDNN_MAX_CPU_ISA`` environment variable."""
    if _lib is None:
        return 0, ""
    isa = int(_lib.dnnl_get_effective_cpu_isa())
    name = ""
    if hasattr(_lib, "dnnl_cpu_isa2str"):
        _lib.dnnl_cpu_isa2str.restype = ctypes.c_char_p
        _lib.dnnl_cpu_isa2str.argtypes = [ctypes.c_int]
        name = (_lib.dnnl_cpu_isa2str(isa) or b"").decode(errors="replace")
    return isa, name


def missing(load_reason, flags, isa, isa_name):
    """What keeps the bfloat16 products from running, as one message, or None when nothing does.

    ``load_reason`` is empty when oneDNN loaded; ``flags`` are the CPU's feature flags (empty when
    unknown: the library's ISA decides alone); ``isa``/``isa_name`` are oneDNN's effective ISA.
    """
    problems = []
    if load_reason:
        problems.append(f"{load_reason}: {BF16_INSTALL_HINT}")
    if flags and not any(flag in flags for flag in _CPU_BF16_FLAGS):
        problems.append("this CPU has no bfloat16 instructions (neither AVX512_BF16 nor AMX-BF16 "
                        "in its flags; AMD Zen 4 or later and Intel Xeon Cooper Lake, Sapphire "
                        "Rapids or later have them)")
    elif not load_reason and (isa & _ISA_BF16_BITS) != _ISA_BF16_BITS:
        capped = " (ONEDNN_MAX_CPU_ISA is set)" if (os.environ.get("ONEDNN_MAX_CPU_ISA")
                                                    or os.environ.get("DNNL_MAX_CPU_ISA")) else ""
        problems.append(f"oneDNN dispatches to {isa_name or hex(isa)}{capped}, without bfloat16 "
                        "instructions: its bfloat16 product would be an emulation")
    if not problems:
        return None
    return "mixed_bfloat16 cannot run here: " + "; ".join(problems)


def bf16_support():
    """None when the bfloat16 products can run here, else a message naming what is missing: the
    extra (``pip install "fastmlp[bf16]"``), or a CPU with bfloat16 instructions (AVX512_BF16 or
    AMX-BF16). There is no slow emulated fallback. Computed once per process."""
    if not _support:
        with _support_lock:
            if not _support:
                isa, name = effective_isa()
                _support.append(missing(_load_reason, cpu_flags(), isa, name))
    return _support[0]
