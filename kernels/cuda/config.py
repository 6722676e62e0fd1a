"""Launch geometry and compilation options of every CUDA kernel, in one place.

Launchers read these module attributes at call time, so changing them (tests shrink them so that
tiny inputs still span several blocks, as under the CUDA simulator) takes effect on the next launch.
Values that must be compile-time constants (the matrix-product tiles) select a kernel compiled for
that geometry, built once per geometry and dtype.

- ``THREADS_PER_BLOCK``: 1-D kernels (elementwise, one thread per row, optimizer updates) and the
  final reduction of per-block partial sums. A power of two, at most ``MAX_THREADS``.
- ``REDUCE_COLS`` × ``REDUCE_ROWS``: the 2-D blocks of column reductions (bias gradients, batch
  statistics): ``REDUCE_COLS`` consecutive columns per block, read along a row (coalesced), and
  ``REDUCE_ROWS`` threads per column striding over the rows, reduced by a shared-memory tree.
  ``REDUCE_ROWS`` is a power of two and the product is at most ``MAX_THREADS``.
- ``GEMM_TILE``: (BM, BN, BK, TM, TN) of the tiled matrix product C (M, N) = op(A)·op(B): a block
  computes a BM × BN tile of C with (BM/TM)·(BN/TN) threads, each holding a TM × TN register tile,
  and stages BM × BK and BK × BN slices of the operands in shared memory. BM must be a multiple of
  TM and BN of TN.
- ``MATMUL``: which library computes the dense layers' matrix products. ``"numba"``: the tiled
  kernel above, epilogues fused; ``"cublas"``: cuBLAS through CuPy, the bias/activation epilogue
  then a separate numba.cuda launch; ``"auto"``: cuBLAS for products of at least
  ``CUBLAS_MIN_MACS`` multiply-adds when CuPy imports, the tiled kernel otherwise. Set it with
  ``fastmlp.engines.cuda_support.set_cuda_matmul``, which checks that cuBLAS can be used.
- ``CUDA_JIT``: keyword arguments of every ``cuda.jit`` kernel. ``fastmath=False`` keeps NaN/inf
  handling and the float64 comparisons with the CPU kernels exact.
"""

MAX_THREADS = 1024
"""Size of the shared scratch arrays of the block reductions (CUDA's limit of threads per block)."""

THREADS_PER_BLOCK = 256
REDUCE_COLS = 32
REDUCE_ROWS = 8
GEMM_TILE = (64, 64, 16, 4, 4)

MATMUL = "numba"
MATMUL_CHOICES = ("numba", "cublas", "auto")
CUBLAS_MIN_MACS = 1 << 24
"""Smallest M·N·K that ``MATMUL = "auto"`` sends to cuBLAS (about a 256³ product)."""

CUDA_JIT = dict(fastmath=False)


def blocks_for(n, threads):
    """Number of blocks of ``threads`` threads that cover ``n`` items (at least 1)."""
    return max(1, (int(n) + threads - 1) // threads)


def check_geometry():
    """Raise ValueError when the current launch geometry breaks the module docstring's rules."""

    def power_of_two(v):
        return v >= 1 and v & (v - 1) == 0

    if not power_of_two(THREADS_PER_BLOCK) or THREADS_PER_BLOCK > MAX_THREADS:
        raise ValueError(f"THREADS_PER_BLOCK must be a power of two <= {MAX_THREADS}")
    if (not power_of_two(REDUCE_ROWS) or REDUCE_COLS < 1
            or REDUCE_COLS * REDUCE_ROWS > MAX_THREADS):
        raise ValueError("REDUCE_ROWS must be a power of two and REDUCE_COLS * REDUCE_ROWS <= "
                         f"{MAX_THREADS}")
    if MATMUL not in MATMUL_CHOICES:
        raise ValueError(f"MATMUL must be one of {MATMUL_CHOICES}; got {MATMUL!r}")
    bm, bn, bk, tm, tn = GEMM_TILE
    if min(GEMM_TILE) < 1 or bm % tm or bn % tn or (bm // tm) * (bn // tn) > MAX_THREADS:
        raise ValueError("GEMM_TILE = (BM, BN, BK, TM, TN) needs TM | BM, TN | BN and at most "
                         f"{MAX_THREADS} threads per block")
