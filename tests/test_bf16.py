"""bfloat16 kernels (kernels/cpu/bf16.py, kernels/cpu/onednn.py): rounding against a NumPy
reference that picks the nearer bfloat16 neighbour in float64, the oneDNN product against float64
products of the rounded operands on blocks of larger arrays, threads, the kernel cache and the
availability message."""

import ctypes
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from fastmlp.kernels.cpu import onednn
from fastmlp.kernels.cpu.bf16 import (
    INVALID_ARGUMENTS,
    bf16_support,
    bf16_to_float32_block,
    gemm_bf16,
    round_to_bf16_block,
    round_to_bf16_range,
)

SUPPORT = bf16_support()
needs_bf16 = pytest.mark.skipif(SUPPORT is not None, reason=str(SUPPORT))
SENTINEL = 0xABCD


# ------------------------------------------------------------------------------ references

def bf16_magnitude_value(bits):
    """float64 value of 15-bit bfloat16 magnitudes; exponent 255 counts as 2^128 (the next step
    after the largest finite value, as rounding with an unbounded exponent sees it)."""
    bits = bits.astype(np.int64)
    exponent, mantissa = bits >> 7, bits & 0x7F
    normal = (1.0 + mantissa / 128.0) * np.exp2(exponent - 127.0)
    return np.where(exponent == 0, mantissa / 128.0 * 2.0 ** -126, normal)


def reference_bf16(x):
    """bfloat16 bits of float32 x: the nearer of the two bfloat16 neighbours of |x| in float64,
    the one with an even last bit on a tie; ±inf stay; NaN gives a NaN of the same sign."""
    x = np.asarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.int64)
    sign, magnitude = u >> 31, u & 0x7FFFFFFF
    below = magnitude >> 16
    above = below + 1
    with np.errstate(invalid="ignore"):
        value = np.abs(x.astype(np.float64))
        to_below = value - bf16_magnitude_value(below)
        to_above = bf16_magnitude_value(above) - value
    pick_above = (to_above < to_below) | ((to_above == to_below) & (below & 1 == 1))
    rounded = np.where(pick_above, above, below)
    rounded = np.where(np.isinf(x), 0x7F80, rounded)
    rounded = np.where(np.isnan(x), 0x7FC0, rounded)
    return ((sign << 15) | rounded).astype(np.uint16)


def widen(bits):
    """float64 values of bfloat16 bits."""
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def special_bits():
    """Float32 bit patterns around every case of the rounding: ties both ways, just off ties,
    ±0, subnormals, the overflow boundary, ±inf and NaNs with payloads in either half."""
    rng = np.random.default_rng(7)
    highs = rng.integers(0, 0x7F80, size=300).astype(np.uint32)
    edges = [0, 1, 2, 3, 0x7F, 0x80, 0x81, 0x7F7E, 0x7F7F]
    highs = np.concatenate([highs, edges]).astype(np.uint32)
    lows = np.array([0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF], dtype=np.uint32)
    grid = ((highs[:, None] << 16) | lows[None, :]).ravel()
    specials = np.array([0x7F800000, 0x7F800001, 0x7F808000, 0x7FC00000, 0x7FFFFFFF, 0x7F80FFFF,
                         0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x00000001, 0x00008000, 0x00018000,
                         0x007FFFFF, 0x00800000], dtype=np.uint32)
    patterns = np.concatenate([grid, specials])
    return np.concatenate([patterns, patterns | np.uint32(0x80000000)]).view(np.float32)


# ------------------------------------------------------------------------------ rounding

def test_reference_on_hand_picked_cases():
    cases = {0x3F808000: 0x3F80,   # tie, kept bit even: down
             0x3F818000: 0x3F82,   # tie, kept bit odd: up to even
             0x3F808001: 0x3F81,   # just above the tie: up
             0x3F807FFF: 0x3F80,   # just below: down
             0x7F7F8000: 0x7F80,   # tie at the largest finite value: overflows to inf
             0x7F7F7FFF: 0x7F7F,
             0x007FFFFF: 0x0080,   # largest subnormal rounds up to the smallest normal
             0x00008000: 0x0000,   # subnormal tie to even (zero)
             0x00018000: 0x0002,
             0x80000000: 0x8000,   # -0
             0xFF800000: 0xFF80,   # -inf
             0x7F800001: 0x7FC0}   # NaN whose payload is only in the dropped half
    x = np.array(list(cases), dtype=np.uint32).view(np.float32)
    assert_array_equal(reference_bf16(x), np.array(list(cases.values()), dtype=np.uint16))


@pytest.mark.parametrize("source", ["special", "random_bits", "normal"])
def test_round_block_matches_reference(source):
    rng = np.random.default_rng(0)
    if source == "special":
        x = special_bits()
    elif source == "random_bits":
        bits = rng.integers(0, 2 ** 32, size=200_000, dtype=np.uint64).astype(np.uint32)
        x = bits.view(np.float32)
    else:
        with np.errstate(over="ignore"):
            x = (rng.standard_normal(200_000)
                 * np.exp2(rng.integers(-140, 128, 200_000))).astype(np.float32)
    x = np.resize(x, (len(x) // 64, 64))
    out = np.empty(x.shape, np.uint16)
    round_to_bf16_block(out, x, 0, x.shape[0], 0, x.shape[1])
    expected = reference_bf16(x)
    nan = np.isnan(x)
    assert_array_equal(out[~nan], expected[~nan])
    # a NaN stays a NaN of the same sign
    assert np.all(np.isnan(widen(out[nan])))
    assert_array_equal(out[nan] >> 15, x[nan].view(np.uint32) >> 31)


def test_round_block_writes_only_its_block_of_views():
    rng = np.random.default_rng(1)
    big = (rng.standard_normal((40, 90)) * 100).astype(np.float32)
    x = big[3:37, 5:80]                      # a view: row stride 90, not C-contiguous
    out_big = np.full((50, 100), SENTINEL, np.uint16)
    out = out_big[7:41, 11:86]
    r0, r1, c0, c1 = 4, 29, 9, 62
    round_to_bf16_block(out, x, r0, r1, c0, c1)
    expected = np.full_like(out_big, SENTINEL)
    expected[7 + r0:7 + r1, 11 + c0:11 + c1] = reference_bf16(x[r0:r1, c0:c1])
    assert_array_equal(out_big, expected)


def test_round_range_matches_reference_and_leaves_the_rest():
    x = special_bits()
    out = np.full(x.shape, SENTINEL, np.uint16)
    i0, i1 = 13, len(x) - 17
    round_to_bf16_range(out, x, i0, i1)
    expected = np.full_like(out, SENTINEL)
    expected[i0:i1] = reference_bf16(x[i0:i1])
    nan = np.isnan(x[i0:i1])
    assert_array_equal(out[i0:i1][~nan], expected[i0:i1][~nan])
    assert np.all(np.isnan(widen(out[i0:i1][nan])))
    assert_array_equal(out[:i0], SENTINEL)
    assert_array_equal(out[i1:], SENTINEL)


def test_widening_is_exact_and_inverts_rounding():
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2 ** 16, size=(30, 70), dtype=np.uint16)
    wide = np.full((32, 75), -1.0, np.float32)
    bf16_to_float32_block(wide[1:31, 2:72], bits, 0, 30, 0, 70)
    assert_array_equal(wide[1:31, 2:72].view(np.uint32), bits.astype(np.uint32) << 16)
    assert np.all(wide[0] == -1.0) and np.all(wide[:, :2] == -1.0) and np.all(wide[:, 72:] == -1.0)
    finite = np.isfinite(wide[1:31, 2:72])
    again = np.empty_like(bits)
    round_to_bf16_block(again, np.ascontiguousarray(wide[1:31, 2:72]), 0, 30, 0, 70)
    assert_array_equal(again[finite], bits[finite])


# ------------------------------------------------------------------------------ products

def random_bf16(rng, shape, scale=1.0):
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    out = np.empty(shape, np.uint16)
    round_to_bf16_block(out, x, 0, shape[0], 0, shape[1])
    return out


def embedded(rng, shape, dtype, fill):
    """A view of the given shape inside a larger array filled with ``fill`` (row stride larger
    than the width, offset from the start), and the larger array."""
    big = np.full((shape[0] + 5, shape[1] + 9), fill, dtype=dtype)
    return big[2:2 + shape[0], 3:3 + shape[1]], big


def float32_accumulation_bound(A, B, k):
    """Elementwise bound on |C − exact| for float32 sums of k exact products: k·2⁻²³·(|A|·|B|)."""
    return k * 2.0 ** -23 * (np.abs(A) @ np.abs(B)) + 1e-30


@needs_bf16
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("m, k, n", [(37, 53, 29), (64, 300, 48), (1, 17, 33), (19, 1, 1)])
def test_gemm_bf16_on_views_matches_float64(trans_a, trans_b, accumulate, m, k, n):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    A, _ = embedded(rng, a_shape, np.uint16, SENTINEL)
    B, _ = embedded(rng, b_shape, np.uint16, SENTINEL)
    A[...] = random_bf16(rng, a_shape)
    B[...] = random_bf16(rng, b_shape)
    C, C_big = embedded(rng, (m, n), np.float32, 7.0)
    start = rng.standard_normal((m, n)).astype(np.float32)
    C[...] = start
    status = gemm_bf16(C, A, B, trans_a, trans_b, accumulate)
    assert status == 0
    opA = widen(A).T if trans_a else widen(A)
    opB = widen(B).T if trans_b else widen(B)
    exact = opA @ opB + (start.astype(np.float64) if accumulate else 0.0)
    bound = float32_accumulation_bound(opA, opB, k + 1)
    if accumulate:
        bound = bound + np.abs(start) * 2.0 ** -23
    assert np.all(np.abs(C - exact) <= bound)
    outside = np.ones(C_big.shape, bool)
    outside[2:2 + m, 3:3 + n] = False
    assert np.all(C_big[outside] == 7.0)


@needs_bf16
def test_gemm_bf16_differs_from_float32_product_of_unrounded_operands():
    """The operands really are bfloat16: the product is off the float32 one by bfloat16 error."""
    rng = np.random.default_rng(3)
    A32 = rng.standard_normal((64, 256)).astype(np.float32)
    B32 = rng.standard_normal((256, 64)).astype(np.float32)
    A, B = np.empty(A32.shape, np.uint16), np.empty(B32.shape, np.uint16)
    round_to_bf16_block(A, A32, 0, 64, 0, 256)
    round_to_bf16_block(B, B32, 0, 256, 0, 64)
    C = np.empty((64, 64), np.float32)
    assert gemm_bf16(C, A, B, False, False, False) == 0
    exact = A32.astype(np.float64) @ B32.astype(np.float64)
    relative = np.abs(C - exact).max() / np.abs(exact).max()
    assert 1e-4 < relative < 2e-2


@needs_bf16
def test_gemm_bf16_empty_inner_size_and_empty_result():
    A = np.empty((4, 0), np.uint16)
    B = np.empty((0, 3), np.uint16)
    C = np.full((4, 3), 5.0, np.float32)
    assert gemm_bf16(C, A, B, False, False, True) == 0
    assert np.all(C == 5.0)
    assert gemm_bf16(C, A, B, False, False, False) == 0
    assert np.all(C == 0.0)
    assert gemm_bf16(np.empty((0, 3), np.float32), np.empty((0, 2), np.uint16),
                     np.empty((2, 3), np.uint16), False, False, False) == 0


def test_gemm_bf16_rejects_what_breaks_its_conventions():
    C = np.full((4, 3), 5.0, np.float32)
    A, B = np.zeros((4, 6), np.uint16), np.zeros((6, 3), np.uint16)
    assert gemm_bf16(C, A.astype(np.float32), B, False, False, False) == INVALID_ARGUMENTS
    assert gemm_bf16(C.astype(np.float64), A, B, False, False, False) == INVALID_ARGUMENTS
    assert gemm_bf16(C, A, np.zeros((5, 3), np.uint16), False, False, False) == INVALID_ARGUMENTS
    assert gemm_bf16(C, A, np.zeros((6, 4), np.uint16), False, False, False) == INVALID_ARGUMENTS
    assert gemm_bf16(C, np.zeros((5, 6), np.uint16), B, False, False, False) == INVALID_ARGUMENTS
    strided = np.zeros((4, 12), np.uint16)[:, ::2]
    assert gemm_bf16(C, strided, B, False, False, False) == INVALID_ARGUMENTS
    assert gemm_bf16(C, A, B, True, False, False) == INVALID_ARGUMENTS
    assert np.all(C == 5.0)


@needs_bf16
def test_two_threads_compute_blocks_of_one_product_at_once():
    rng = np.random.default_rng(4)
    m, k, n = 96, 384, 160
    A, B = random_bf16(rng, (m, k)), random_bf16(rng, (k, n))
    whole = np.empty((m, n), np.float32)
    assert gemm_bf16(whole, A, B, False, False, False) == 0
    C = np.zeros((m, n), np.float32)
    barrier = threading.Barrier(2)
    statuses = [[], []]

    def work(t):
        rows = slice(0, 48) if t == 0 else slice(48, m)
        barrier.wait()
        for _ in range(30):
            statuses[t].append(gemm_bf16(C[rows], A[rows], B, False, False, False))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [[0] * 30, [0] * 30]
    assert_array_equal(C, whole)  # row blocks of one product: the same sums in the same order


THREADS_SCRIPT = textwrap.dedent("""
    import ctypes, os, threading, time
    import numpy as np
    from fastmlp.kernels.cpu import onednn
    from fastmlp.kernels.cpu.bf16 import gemm_bf16

    def tasks():
        return len(os.listdir("/proc/self/task"))

    lib = ctypes.CDLL(onednn.library_path())
    A = np.ones((256, 512), np.uint16) * np.uint16(0x3F80)
    B = np.ones((512, 256), np.uint16) * np.uint16(0x3F80)
    C = np.empty((256, 256), np.float32)
    gemm_bf16(C[:8], A[:8], B, False, False, False)      # compile and warm up
    before = tasks()
    counts = []

    def work(rows):
        for _ in range(5):
            assert gemm_bf16(C[rows], A[rows], B, False, False, False) == 0
        counts.append(lib.omp_get_max_threads())

    work(slice(0, 256))
    threads = [threading.Thread(target=work, args=(s,)) for s in (slice(0, 128), slice(128, 256))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 10
    while tasks() > before and time.monotonic() < deadline:  # joined threads take a moment to go
        time.sleep(0.01)
    after = tasks()
    assert np.all(C == 512.0)
    f = lib.dnnl_gemm_bf16bf16f32
    f.argtypes = [ctypes.c_char, ctypes.c_char] + [ctypes.c_int64] * 3 + [
        ctypes.c_float, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
        ctypes.c_float, ctypes.c_void_p, ctypes.c_int64]
    f(b"N", b"N", 256, 256, 512, 1.0, A.ctypes.data, 512, B.ctypes.data, 256, 0.0,
      C.ctypes.data, 256)
    print(before, after, tasks(), counts)
""")


@needs_bf16
def test_product_runs_in_the_calling_thread_only():
    """With OpenMP allowed 4 threads, gemm_bf16 starts none (each calling thread computes its own
    product and keeps its OpenMP setting), while a direct call of oneDNN would start them."""
    env = dict(os.environ, OMP_NUM_THREADS="4")
    proc = subprocess.run([sys.executable, "-c", THREADS_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    before, after, direct, *rest = proc.stdout.split(maxsplit=3)
    assert int(after) == int(before)
    assert int(direct) > int(after)
    assert [r.strip() for r in rest] == ["[4, 4, 4]"]


# ------------------------------------------------------------------------------ cache, availability

CACHE_SCRIPT = textwrap.dedent("""
    import sys
    import importlib.metadata as metadata
    if sys.argv[1] == "hide":
        real = metadata.distribution
        def distribution(name):
            if name == "onednn-cpu-gomp":
                raise metadata.PackageNotFoundError(name)
            return real(name)
        metadata.distribution = distribution
    import numpy as np
    from fastmlp.kernels.cpu.bf16 import bf16_support, gemm_bf16, round_to_bf16_block
    x = np.linspace(-3, 3, 64 * 32, dtype=np.float32).reshape(64, 32)
    A = np.empty(x.shape, np.uint16)
    round_to_bf16_block(A, x, 0, 64, 0, 32)
    C = np.full((64, 64), 9.0, np.float32)
    status = gemm_bf16(C, A, np.ascontiguousarray(A.T), False, False, False)
    hits = sum(sum(kernel.stats.cache_hits.values()) for kernel in (gemm_bf16, round_to_bf16_block))
    print(status, hits, float(C.sum()), repr(bf16_support()))
""")


@needs_bf16
def test_kernels_load_from_the_cache_in_a_new_process_with_or_without_onednn(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))

    def run(mode):
        proc = subprocess.run([sys.executable, "-c", CACHE_SCRIPT, mode], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        status, hits, total, support = proc.stdout.split(maxsplit=3)
        return int(status), int(hits), float(total), support.strip()

    first, second, hidden = run("use"), run("use"), run("hide")
    assert first[0] == 0 and first[1] == 0 and first[3] == "None"
    assert second[0] == 0 and second[1] == 2 and second[2] == first[2]
    # the cached product links against the stand-in: it reports the library missing, C untouched
    assert hidden[0] == onednn.UNAVAILABLE and hidden[1] == 2
    assert hidden[2] == 9.0 * 64 * 64
    assert 'pip install "fastmlp[bf16]"' in hidden[3] and "onednn-cpu-gomp" in hidden[3]


def test_missing_names_each_problem():
    assert onednn.missing("", {"avx512f", "avx512_bf16"}, 0xE7, "cpu_isa_avx512_core_bf16") is None
    assert onednn.missing("", {"amx_bf16", "avx512_bf16"}, 0x3E7, "cpu_isa_avx512_core_amx") is None
    assert onednn.missing("", set(), 0xE7, "cpu_isa_avx512_core_bf16") is None
    no_library = onednn.missing("oneDNN is not installed", {"avx512_bf16"}, 0, "")
    assert 'pip install "fastmlp[bf16]"' in no_library
    assert "no bfloat16 instructions" not in no_library
    old_cpu = onednn.missing("", {"avx2", "avx512f"}, 0x67, "cpu_isa_avx512_core_vnni")
    assert "no bfloat16 instructions" in old_cpu and "AVX512_BF16" in old_cpu
    both = onednn.missing("oneDNN is not installed", {"avx2"}, 0, "")
    assert "fastmlp[bf16]" in both and "no bfloat16 instructions" in both
    capped = onednn.missing("", {"avx512_bf16"}, 0x67, "cpu_isa_avx512_core_vnni")
    assert "emulation" in capped and "avx512_core_vnni" in capped
    for message in (no_library, old_cpu, both, capped):
        assert message.startswith("mixed_bfloat16 cannot run here: ")


def test_cpu_flags_reads_the_first_processor(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert onednn.cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert onednn.cpu_flags(str(tmp_path / "absent")) == set()


def test_support_here_agrees_with_the_cpu_and_the_library():
    flags = onednn.cpu_flags()
    if onednn.library_path() is None:
        assert "fastmlp[bf16]" in SUPPORT
    elif flags and not flags & {"avx512_bf16", "amx_bf16"}:
        assert "no bfloat16 instructions" in SUPPORT
    elif flags:
        assert SUPPORT is None
        isa, name = onednn.effective_isa()
        assert isa & 0xE7 == 0xE7
        assert "bf16" in name or "amx" in name


@pytest.mark.skipif(onednn.library_path() is None, reason="onednn-cpu-gomp is not installed")
def test_capped_isa_is_reported_as_emulation():
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX512_CORE_VNNI")
    code = "from fastmlp.kernels.cpu.bf16 import bf16_support; print(bf16_support())"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    if "no bfloat16 instructions" not in proc.stdout:
        assert "emulation" in proc.stdout and "ONEDNN_MAX_CPU_ISA" in proc.stdout


def test_stand_in_is_never_bound_when_the_library_loads():
    if onednn.library_path() is None:
        pytest.skip("onednn-cpu-gomp is not installed")
    lib = ctypes.CDLL(onednn.library_path())
    address = ctypes.cast(lib.dnnl_gemm_bf16bf16f32, ctypes.c_void_p).value
    from llvmlite import binding
    assert binding.address_of_symbol(onednn.GEMM_SYMBOL) == address
