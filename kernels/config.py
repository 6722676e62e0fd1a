"""One place for every compilation setting the kernels use.

``JIT`` is passed to every CPU ``@njit``: ``cache=True`` so a new process loads compiled code from
disk, ``nogil=True`` so callers may train several models from threads, and ``fastmath=False`` so
NaN/inf handling and the float64 gradient checks stay exact. ``error_model="numpy"`` lets a
division by zero give inf/NaN as NumPy does instead of a per-division check that blocks
vectorization (values are validated on the host before any kernel runs).
"""

import llvmlite.binding as llvm

JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")

# Reductions whose order does not matter (a gradient norm, a finiteness check) may be reassociated
# so LLVM vectorizes them; NaN and inf still propagate (no "nnan"/"ninf" flags).
JIT_REDUCTION = dict(JIT, fastmath={"reassoc", "contract"})

# How the threads of a training step cut its results into blocks (kernels/cpu/network.py): row
# blocks are multiples of ROW_ALIGN rows and column blocks multiples of COL_ALIGN columns (one
# 64-byte cache line of float32). Two threads then write the same cache line only at a block's
# edge where a row's length is not a multiple of COL_ALIGN values (a 100-unit layer) or the block
# does not start on a line; that sharing is harmless to the results and too small to measure.
ROW_ALIGN = 8
COL_ALIGN = 16
# A product of fewer multiply-adds than this runs on one thread (splitting it costs more than it
# saves); measured on a 2-core AMD EPYC with SciPy's OpenBLAS.
MIN_SPLIT_MACS = 1 << 17

# The products of a float32 layer whose weight matrix has both sides at least TILE_MIN_UNITS and
# at most TILE_MAX_WEIGHTS elements go through the register tiles of kernels/cpu/tiles.py instead
# of BLAS (there OpenBLAS packs its operands for longer than the product takes; beyond it the
# tiles, which do not block for the caches, fall behind). Measured with SciPy's OpenBLAS 0.3.30
# (scripts/bench_products.py): on a 2-core AMD EPYC Zen 5 the tiles win up to 512×512 weights
# (1.05–1.13× on the products of 784-512-512-10/128), on a 2-core Intel Xeon with AVX-512 up to
# 256×256 only (1.10–1.16× on 40-256-256-10/32's; 512×512 took 1.12–1.47× OpenBLAS's time). The
# compiled kernels are cached per CPU model, so each machine keeps its own choice.
TILE_MIN_UNITS = 128
TILE_MAX_WEIGHTS = 1 << 18 if llvm.get_host_cpu_name().startswith("znver") else 1 << 17

# Kernels that only other kernels call: no CPython wrapper is generated for them (unboxing records
# of a dozen arrays is a lot of code), which shortens the first compilation noticeably. Nor do they
# count references (``_nrt=False``, which the kernels they call inherit): every view of a
# workspace would otherwise cost two atomic operations on a counter that both threads of a team
# share (about 7% of a MNIST-1D recipe run's CPU time). So they must not allocate (Numba
# refuses it) nor return an array (Numba refuses one they made; tests/test_kernel_references.py
# checks that none returns one it was given). A kernel that allocates uses JIT_INTERNAL_ALLOCATING.
JIT_INTERNAL = dict(JIT, no_cpython_wrapper=True, no_cfunc_wrapper=True, _nrt=False)
JIT_REDUCTION_INTERNAL = dict(JIT_REDUCTION, no_cpython_wrapper=True, no_cfunc_wrapper=True,
                              _nrt=False)
JIT_INTERNAL_ALLOCATING = dict(JIT, no_cpython_wrapper=True, no_cfunc_wrapper=True, _nrt=True)
