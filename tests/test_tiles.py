"""The register-tiled float32 products (kernels/cpu/tiles.py): they match a float64 product for
every form, edge and view, leave everything outside their block alone, propagate NaN/inf to the
outputs that read them and no further, give bitwise the same result however C is cut into
blocks, and carry whole training steps (1 and 2 threads alike)."""

import os
import subprocess
import sys
import textwrap

import cpu_calls
import numpy as np
import pytest
from numba import njit
from numpy.testing import assert_allclose

import fastmlp as fm
from fastmlp.engines.layout import workspace_layout
from fastmlp.kernels.config import TILE_MAX_WEIGHTS, TILE_MIN_UNITS
from fastmlp.kernels.cpu.tiles import LANES, TILE_COLS, TILE_ROWS, suits_tiles, tiled_gemm

FORMS = {"nn": (False, False), "tn": (True, False), "nt": (False, True)}
SHAPES = [(1, 1, 1), (3, 5, 7), (TILE_ROWS, TILE_COLS, 1), (5, TILE_COLS + 1, LANES + 1),
          (32, 256, 256), (32, 10, 256), (32, 256, 10), (100, 100, 100), (7, 130, 33),
          (17, 3 * LANES, LANES), (9, 2 * LANES - 1, 2 * LANES + 3), (3, 4, 0)]


@njit
def _product(C, A, B, trans_a, trans_b, accumulate):
    tiled_gemm(C, A, B, trans_a, trans_b, accumulate)


@njit
def _suits(W):
    return suits_tiles(W)


def _operands(rng, form, m, n, k):
    trans_a, trans_b = FORMS[form]
    A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    reference = (A.T if trans_a else A).astype(np.float64) @ (B.T if trans_b else B)
    return A, B, reference


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_tiles_match_a_float64_product_inside_a_larger_array(form, m, n, k):
    rng = np.random.default_rng(m * 10_000 + n * 100 + k)
    A, B, reference = _operands(rng, form, m, n, k)
    frame = rng.standard_normal((m + 3, n + 5)).astype(np.float32)
    outside = np.ones(frame.shape, bool)
    outside[1:m + 1, 2:n + 2] = False
    for accumulate in (False, True):
        big = frame.copy()
        _product(big[1:m + 1, 2:n + 2], A, B, *FORMS[form], accumulate)
        expected = reference + (frame[1:m + 1, 2:n + 2] if accumulate else 0.0)
        assert_allclose(big[1:m + 1, 2:n + 2], expected, rtol=1e-4, atol=1e-4 * max(k, 1) ** 0.5)
        assert np.array_equal(big[outside], frame[outside])


@pytest.mark.parametrize("form", FORMS)
def test_an_operand_row_and_views_with_a_row_stride(form):
    """Operands that are blocks of larger arrays (row stride ≠ width), and an empty C."""
    rng = np.random.default_rng(5)
    A, B, reference = _operands(rng, form, 13, 70, 37)
    A_big = np.zeros((A.shape[0] + 2, A.shape[1] + 9), np.float32)
    B_big = np.zeros((B.shape[0] + 1, B.shape[1] + 17), np.float32)
    A_big[2:, 4:4 + A.shape[1]] = A
    B_big[1:, 3:3 + B.shape[1]] = B
    C = np.zeros((13, 70), np.float32)
    _product(C, A_big[2:, 4:4 + A.shape[1]], B_big[1:, 3:3 + B.shape[1]], *FORMS[form], False)
    assert_allclose(C, reference, rtol=1e-4, atol=1e-4)
    _product(np.zeros((0, 5), np.float32), A[:0], B, *FORMS[form], False)  # nothing to do


@pytest.mark.parametrize("form", FORMS)
def test_nan_and_inf_reach_the_outputs_that_read_them_and_no_others(form):
    rng = np.random.default_rng(7)
    m, n, k = 9, 70, 37
    A, B, _ = _operands(rng, form, m, n, k)
    trans_a, trans_b = FORMS[form]
    A[(5, 2) if trans_a else (2, 5)] = np.nan       # op(A)[2, 5]: row 2 of C
    B[(40, 11) if trans_b else (11, 40)] = np.inf   # op(B)[11, 40]: column 40 of C
    C = np.zeros((m, n), np.float32)
    _product(C, A, B, trans_a, trans_b, False)
    bad = ~np.isfinite(C)
    assert bad[2].all()
    assert bad[:, 40].all()
    bad[2] = False
    bad[:, 40] = False
    assert not bad.any()


@pytest.mark.parametrize("form", FORMS)
def test_any_cut_of_c_into_blocks_gives_the_same_bits(form):
    """As the threads cut a product: rows in multiples of 8, columns in multiples of 16."""
    rng = np.random.default_rng(11)
    m, n, k = 40, 200, 150
    A, B, _ = _operands(rng, form, m, n, k)
    trans_a, trans_b = FORMS[form]
    whole = np.zeros((m, n), np.float32)
    _product(whole, A, B, trans_a, trans_b, False)
    for rows, cols in (((0, 8, 40), (0, 200)), ((0, 40), (0, 16, 112, 200)),
                       ((0, 24, 40), (0, 48, 64, 200))):
        cut = np.zeros((m, n), np.float32)
        for r0, r1 in zip(rows[:-1], rows[1:]):
            for c0, c1 in zip(cols[:-1], cols[1:]):
                a = (A[:, r0:r1] if trans_a else A[r0:r1])
                b = (B[c0:c1] if trans_b else B[:, c0:c1])
                _product(cut[r0:r1, c0:c1], a, b, trans_a, trans_b, False)
        assert np.array_equal(cut, whole)


def test_which_layers_take_the_tiles():
    side = TILE_MIN_UNITS
    assert _suits(np.zeros((side, side), np.float32))
    assert _suits(np.zeros((side, TILE_MAX_WEIGHTS // side), np.float32))
    assert not _suits(np.zeros((side, TILE_MAX_WEIGHTS // side + 1), np.float32))
    assert not _suits(np.zeros((side - 1, 4 * side), np.float32))
    assert not _suits(np.zeros((side, side), np.float64))


def _tiled_model(dtype, variant):
    side = TILE_MIN_UNITS
    if variant == "plain":
        layers = [fm.Dense(side, "relu"), fm.Dense(side + 16, "tanh"), fm.Dense(5)]
    else:  # maxout (a 2·side-wide product), batchnorm and dropout around the tiled products
        layers = [fm.Dense(side, "maxout", pieces=2, batchnorm=True),
                  fm.Dense(side + 16, "gelu", batchnorm=True, dropout=0.2), fm.Dense(5)]
    return fm.MLP(side + 3, layers, dtype=dtype, seed=4)


def _gradient(model, X, y, parts, members):
    lay = model._layout
    ws_off, size = workspace_layout(lay.layer_int, X.shape[0], parts)
    grads = np.zeros_like(model._params)
    loss = cpu_calls.network_loss_and_grad(
        X, y, np.zeros((0, 5), X.dtype), 0, model._params, grads, model._buffers.copy(),
        lay.layer_int, lay.layer_float, ws_off, np.zeros(size, X.dtype), True, True, 0, 0, 0.0,
        0.0, parts, members)
    return loss, grads


@pytest.mark.parametrize("variant", ("plain", "maxout-batchnorm-dropout"))
def test_a_network_on_tiles_matches_float64_and_any_team(variant):
    """A float32 network whose middle layer takes the tiles: its gradient matches the float64
    network's to float32 rounding, and is bitwise the same on 1 and 2 threads."""
    model32, model64 = _tiled_model("float32", variant), _tiled_model("float64", variant)
    assert _suits(model32.params["1.W"]) and not _suits(model64.params["1.W"])
    rng = np.random.default_rng(2)
    X = rng.standard_normal((37, TILE_MIN_UNITS + 3))
    y = rng.integers(0, 5, 37).astype(np.int64)
    loss64, grads64 = _gradient(model64, X, y, 2, 1)
    loss32, grads32 = _gradient(model32, X.astype(np.float32), y, 2, 1)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    assert_allclose(grads32, grads64, rtol=2e-3, atol=2e-5)
    assert _gradient(model32, X.astype(np.float32), y, 2, 2)[1].tobytes() == grads32.tobytes()


def test_eight_lane_tiles_of_a_cpu_without_avx512(tmp_path):
    """The tiles as compiled for a CPU without AVX-512 (8 float32 lanes; run here on 256-bit
    registers) give the same products, in a fresh process with its own kernel cache."""
    script = textwrap.dedent("""
        import llvmlite.binding as llvm
        features = llvm.get_host_cpu_features()
        features["avx512f"] = False
        llvm.get_host_cpu_features = lambda: features
        import numpy as np
        from numba import njit
        from fastmlp.kernels.cpu import tiles
        assert tiles.LANES == 8, tiles.LANES

        @njit
        def product(C, A, B, trans_a, trans_b):
            tiles.tiled_gemm(C, A, B, trans_a, trans_b, False)

        rng = np.random.default_rng(0)
        for trans_a, trans_b in ((False, False), (True, False), (False, True)):
            for m, n, k in ((5, 37, 19), (32, 70, 64), (3, 8, 9)):
                A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
                B = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
                C = np.zeros((m, n), np.float32)
                product(C, A, B, trans_a, trans_b)
                expected = (A.T if trans_a else A).astype(np.float64) @ (B.T if trans_b else B)
                assert np.allclose(C, expected, rtol=1e-4, atol=1e-4), (trans_a, trans_b, m, n, k)
        print("ok")
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok"]


def test_predictions_of_some_rows_equal_those_rows_of_all_predictions():
    """Every layer on tiles: a row's output does not depend on the rows beside it."""
    side = TILE_MIN_UNITS
    model = fm.MLP(side, [fm.Dense(side, "relu"), fm.Dense(side)], seed=5)
    assert _suits(model.params["0.W"]) and _suits(model.params["1.W"])
    X = np.random.default_rng(6).standard_normal((37, side)).astype(np.float32)
    whole = model.forward(X)
    for rows in (slice(0, 7), slice(5, 6), slice(9, 37)):
        assert model.forward(X[rows]).tobytes() == whole[rows].tobytes()
