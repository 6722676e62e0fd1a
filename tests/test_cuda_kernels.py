"""CUDA kernels (kernels/cuda/*) against their CPU twins (kernels/cpu/*), module by module.

Every launcher runs on small float32 and float64 inputs with the launch geometry shrunk (a few
threads per block, 4 × 4 matrix tiles), so each input spans several blocks and every bounds check,
tile edge and cross-block reduction is exercised; results are compared with the CPU kernel on the
same inputs (dropout masks and random streams bit for bit, the rest to float tolerance).

How the CUDA mode is chosen (the numba.cuda mode of a process is fixed when numba.cuda is first
imported, so it is decided before that import):

- ``NUMBA_ENABLE_CUDASIM=1`` in the environment: the tests run in this process on the CUDA
  simulator.
- a GPU visible to the CUDA driver: the tests run in this process on the GPU, unchanged.
- a GPU that numba.cuda cannot use (no NVVM, for example): the kernel tests are skipped, with the
  reason from ``fastmlp.engines.cuda_support.cuda_status``.
- neither (CI on a machine without a GPU): only ``test_kernels_under_cuda_simulator`` and the
  no-GPU status test are collected in this process; the former runs this file again in a child
  pytest process with ``NUMBA_ENABLE_CUDASIM=1`` and fails with the child's report if any child
  test fails. This keeps the simulator out of the parent process, where other tests expect
  ``device="cuda"`` to report that no GPU is present, and works whatever the parent imported
  before (``pytest -k simulator`` selects the child run; ``NUMBA_ENABLE_CUDASIM=1 pytest
  tests/test_cuda_kernels.py`` runs the kernel tests directly, one by one).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cuda_mode import (
    CUDA_TEST_MARKS,
    IN_PROCESS,
    MODE,
    collect_only_parent_tests,
    cuda_test_mode,
    route_products_to_cublas,
    run_file_under_simulator,
)
from numpy.testing import assert_allclose, assert_array_equal

from fastmlp.engines.cuda_support import cuda_status, driver_gpu_count
from fastmlp.kernels import contract
from fastmlp.kernels.cpu import activations as cpu_act
from fastmlp.kernels.cpu import batchnorm as cpu_bn
from fastmlp.kernels.cpu import dense as cpu_dense
from fastmlp.kernels.cpu import dropout as cpu_drop
from fastmlp.kernels.cpu import losses as cpu_loss
from fastmlp.kernels.cpu import metrics as cpu_metrics
from fastmlp.kernels.cpu import optimizers as cpu_opt
from fastmlp.kernels.cpu import penalties as cpu_pen
from fastmlp.kernels.cpu import random as cpu_rand

THIS_FILE = Path(__file__).resolve()
ROOT = THIS_FILE.parent.parent


pytestmark = CUDA_TEST_MARKS

if IN_PROCESS:  # importing numba.cuda fixes this process's CUDA mode: only when it will be used
    from numba import cuda

    from fastmlp.kernels.cuda import activations as gpu_act
    from fastmlp.kernels.cuda import batchnorm as gpu_bn
    from fastmlp.kernels.cuda import checks as gpu_checks
    from fastmlp.kernels.cuda import config as gpu_config
    from fastmlp.kernels.cuda import cublas as gpu_cublas
    from fastmlp.kernels.cuda import dense as gpu_dense
    from fastmlp.kernels.cuda import dropout as gpu_drop
    from fastmlp.kernels.cuda import losses as gpu_loss
    from fastmlp.kernels.cuda import metrics as gpu_metrics
    from fastmlp.kernels.cuda import optimizers as gpu_opt
    from fastmlp.kernels.cuda import penalties as gpu_pen
    from fastmlp.kernels.cuda import random as gpu_rand

    class DEFAULT_GEOMETRY:
        """The launch geometry as shipped, before the tests shrink it."""
        THREADS_PER_BLOCK = gpu_config.THREADS_PER_BLOCK
        REDUCE_COLS = gpu_config.REDUCE_COLS
        REDUCE_ROWS = gpu_config.REDUCE_ROWS
        GEMM_TILE = gpu_config.GEMM_TILE

    @cuda.jit
    def _uniform_wrapper(out, key, first):
        """out[i] = uniform(key, first + i): the device function through a tiny kernel."""
        i = cuda.grid(1)
        if i < out.shape[0]:
            out[i] = gpu_rand.uniform(key, first + i)

    @cuda.jit
    def _stream_key_wrapper(out, seeds, layers, steps):
        """out[i] = stream_key(seeds[i], layers[i], steps[i]) on the device."""
        i = cuda.grid(1)
        if i < out.shape[0]:
            out[i] = gpu_rand.stream_key(seeds[i], layers[i], steps[i])


DTYPES = (np.float32, np.float64)
ELEMENTWISE = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu")
SMALL_TILE = (4, 4, 2, 2, 2)       # 2 × 2 threads, each with a 2 × 2 register tile
SCALAR_TILE = (4, 4, 3, 1, 1)      # 4 × 4 threads, one output each, K slices of 3


# ---------------------------------------------------------------- mode selection and helpers

@pytest.fixture(autouse=True)
def _cuda_mode(request, monkeypatch):
    """Skip kernel tests when CUDA does not run in this process; shrink the launch geometry."""
    yield from cuda_test_mode(request, monkeypatch, PARENT_PROCESS_TESTS, SMALL_TILE)


PARENT_PROCESS_TESTS = ("test_kernels_under_cuda_simulator",
                        "test_cuda_status_without_gpu_is_a_clear_answer",
                        "test_set_cuda_matmul_checks_its_choice")
"""Tests that do not launch kernels: they run whatever the mode of this process."""


def test_kernels_under_cuda_simulator():
    """Without a GPU, run this file in a child process on the CUDA simulator."""
    run_file_under_simulator(THIS_FILE, "kernel")


def test_cuda_status_without_gpu_is_a_clear_answer():
    """No GPU, no simulator: cuda_status says what is missing, prints no traceback, never raises."""
    if driver_gpu_count()[0] > 0:
        pytest.skip("a GPU is present")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = ("from fastmlp.engines.cuda_support import cuda_status, require_cuda, CudaUnavailableError\n"
            "ok, reason = cuda_status()\n"
            "assert ok is False and reason, (ok, reason)\n"
            "try:\n    require_cuda()\n"
            "except CudaUnavailableError as exc:\n    print('ERR', exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.startswith("ERR device=\"cuda\" is not available:")
    assert "fastmlp[cuda]" in proc.stdout


def test_set_cuda_matmul_checks_its_choice():
    """"numba"/"auto" are always accepted; "cublas" needs CuPy on a real GPU and says so."""
    from fastmlp.engines.cuda_support import (
        CudaUnavailableError,
        get_cuda_matmul,
        set_cuda_matmul,
        simulator_enabled,
    )
    from fastmlp.kernels.cuda.cublas import cupy_status
    assert get_cuda_matmul() == "numba"
    with pytest.raises(ValueError, match="backend must be one of"):
        set_cuda_matmul("cuBLAS")
    try:
        assert set_cuda_matmul("auto") == "numba" and get_cuda_matmul() == "auto"
        if simulator_enabled() or cupy_status()[0] is None:
            with pytest.raises(CudaUnavailableError, match="simulator|needs CuPy"):
                set_cuda_matmul("cublas")
            assert get_cuda_matmul() == "auto"
        else:
            assert set_cuda_matmul("cublas") == "auto"
    finally:
        set_cuda_matmul("numba")


def test_cuda_status_reports_available():
    available, reason = cuda_status()
    assert available, reason
    assert ("simulator" in reason) == (MODE == "simulator")


def dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def host(d):
    return d.copy_to_host()


def tol(dtype):
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)


def close(got, expected, dtype, **kw):
    options = tol(dtype)
    options.update(kw)
    assert_allclose(got, expected, **options)


def data(rng, shape, dtype, scale=1.0):
    return (scale * rng.normal(size=shape)).astype(dtype)


def alpha_of(name):
    return {"leaky_relu": 0.1, "elu": 1.0}.get(name, 0.0)


# ---------------------------------------------------------------- activations

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_forward_backward(name, dtype):
    rng = np.random.default_rng(1)
    pre = data(rng, (5, 7), dtype, 3.0)
    pre[0, :4] = [0.0, -0.0, 40.0, -40.0]
    code, alpha = contract.ACTIVATION_CODES[name], alpha_of(name)
    out_cpu = np.empty_like(pre)
    cpu_act.activation_forward(out_cpu, pre, code, alpha)
    d_pre, d_out = dev(pre), dev(np.zeros_like(pre))
    gpu_act.activation_forward(d_out, d_pre, code, alpha)
    close(host(d_out), out_cpu, dtype)
    dout = data(rng, pre.shape, dtype)
    dpre_cpu = np.empty_like(pre)
    cpu_act.activation_backward(dpre_cpu, dout, pre, out_cpu, code, alpha)
    d_dpre = dev(np.zeros_like(pre))
    gpu_act.activation_backward(d_dpre, dev(dout), d_pre, dev(out_cpu), code, alpha)
    close(host(d_dpre), dpre_cpu, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_forward_in_place(dtype):
    rng = np.random.default_rng(2)
    pre = data(rng, (3, 9), dtype)
    expected = np.empty_like(pre)
    cpu_act.activation_forward(expected, pre, contract.TANH, 0.0)
    d = dev(pre)
    gpu_act.activation_forward(d, d, contract.TANH, 0.0)
    close(host(d), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxout_forward_backward_first_maximum(dtype):
    rng = np.random.default_rng(3)
    pieces, units = 3, 4
    pre = data(rng, (5, units * pieces), dtype)
    pre[1, 3:6] = 2.0        # a three-way tie: the gradient goes to the first piece
    pre[2, 0:2] = 1.5        # a tie on the first two pieces
    out_cpu = np.empty((5, units), dtype)
    cpu_act.maxout_forward(out_cpu, pre, pieces)
    d_out = dev(np.zeros((5, units), dtype))
    gpu_act.maxout_forward(d_out, dev(pre), pieces)
    assert_array_equal(host(d_out), out_cpu)
    dout = data(rng, (5, units), dtype)
    dpre_cpu = np.empty_like(pre)
    cpu_act.maxout_backward(dpre_cpu, dout, pre, pieces)
    d_dpre = dev(np.full_like(pre, np.nan))
    gpu_act.maxout_backward(d_dpre, dev(dout), dev(pre), pieces)
    assert_array_equal(host(d_dpre), dpre_cpu)


# ---------------------------------------------------------------- dense

@pytest.mark.parametrize("tile", [SMALL_TILE, SCALAR_TILE], ids=["2x2-register", "scalar"])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_matches_numpy(trans_a, trans_b, tile, dtype, monkeypatch):
    monkeypatch.setattr(gpu_config, "GEMM_TILE", tile)
    rng = np.random.default_rng(4)
    m, k, n = 7, 5, 9                       # none a multiple of the tile: ragged edges everywhere
    a = data(rng, (k, m) if trans_a else (m, k), dtype)
    b = data(rng, (n, k) if trans_b else (k, n), dtype)
    expected = (a.T if trans_a else a) @ (b.T if trans_b else b)
    d_c = dev(np.full((m, n), np.nan, dtype))
    gpu_dense.gemm(d_c, dev(a), dev(b), trans_a=trans_a, trans_b=trans_b)
    close(host(d_c), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward(dtype):
    rng = np.random.default_rng(5)
    x, W, b = data(rng, (6, 5), dtype), data(rng, (5, 9), dtype), data(rng, (9,), dtype)
    pre_cpu = np.empty((6, 9), dtype)
    cpu_dense.dense_forward(pre_cpu, x, W, b)
    d_pre = dev(np.full((6, 9), np.nan, dtype))
    gpu_dense.dense_forward(d_pre, dev(x), dev(W), dev(b))
    close(host(d_pre), pre_cpu, dtype)


def _dense_case(rng, name, dtype, batch=6, fan_in=5, units=5):
    pieces = 3 if name == "maxout" else 1
    width = units * pieces
    x = data(rng, (batch, fan_in), dtype)
    W = data(rng, (fan_in, width), dtype)
    b = data(rng, (width,), dtype)
    return x, W, b, pieces, width


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE + ("maxout",))
def test_dense_activation_forward_and_backward(name, dtype):
    rng = np.random.default_rng(6)
    units, batch, fan_in = 5, 6, 5
    x, W, b, pieces, width = _dense_case(rng, name, dtype, batch, fan_in, units)
    code, alpha = contract.ACTIVATION_CODES[name], alpha_of(name)
    pre_cpu, out_cpu = np.empty((batch, width), dtype), np.empty((batch, units), dtype)
    cpu_dense.dense_activation_forward(out_cpu, pre_cpu, x, W, b, code, alpha, pieces)
    d_x, d_W = dev(x), dev(W)
    d_pre, d_out = dev(np.full_like(pre_cpu, np.nan)), dev(np.full_like(out_cpu, np.nan))
    gpu_dense.dense_activation_forward(d_out, d_pre, d_x, d_W, dev(b), code, alpha, pieces)
    close(host(d_pre), pre_cpu, dtype)
    close(host(d_out), out_cpu, dtype)

    dout = data(rng, (batch, units), dtype)
    dx, dW, db, dpre = (np.empty((batch, fan_in), dtype), np.empty_like(W), np.empty_like(b),
                        np.empty_like(pre_cpu))
    cpu_dense.dense_activation_backward(dx, dW, db, dpre, dout, x, W, pre_cpu, out_cpu, code,
                                        alpha, pieces, True)
    g = [dev(np.full_like(a, np.nan)) for a in (dx, dW, db, dpre)]
    gpu_dense.dense_activation_backward(g[0], g[1], g[2], g[3], dev(dout), d_x, d_W,
                                        dev(pre_cpu), dev(out_cpu), code, alpha, pieces, True)
    for got, expected in zip(g, (dx, dW, db, dpre)):
        close(host(got), expected, dtype)


@pytest.mark.parametrize("epilogue", ("store", "bias", "bias+gelu"))
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_cublas_path_matches_tiled_kernel(trans_a, trans_b, epilogue, dtype, monkeypatch):
    """config.MATMUL = "cublas": the product goes to cublas.matmul and the bias/activation
    epilogue runs as its own launch; same values as the tiled kernel's fused epilogue."""
    rng = np.random.default_rng(41)
    m, k, n = 7, 5, 9
    a = data(rng, (k, m) if trans_a else (m, k), dtype)
    b = data(rng, (n, k) if trans_b else (k, n), dtype)
    bias = data(rng, (n,), dtype)
    options = {} if epilogue == "store" else {"bias": dev(bias)}

    def run():
        d_c, d_out = dev(np.full((m, n), np.nan, dtype)), dev(np.full((m, n), np.nan, dtype))
        if epilogue == "bias+gelu":
            options.update(out=d_out, code=contract.GELU)
        gpu_dense.gemm(d_c, dev(a), dev(b), trans_a=trans_a, trans_b=trans_b, **options)
        return host(d_c), host(d_out)

    tiled_c, tiled_out = run()
    calls = route_products_to_cublas(monkeypatch, gpu_config, gpu_cublas)
    c, out = run()
    assert calls == [(m, n, k)]
    close(c, tiled_c, dtype)
    if epilogue == "bias+gelu":
        close(out, tiled_out, dtype)
    else:
        assert np.isnan(out).all()  # no activation: ``out`` untouched


@pytest.mark.parametrize("name", ("relu", "maxout"))
def test_dense_layer_cublas_path_matches_cpu(name, monkeypatch):
    """Forward and backward of a dense layer with every product through the cuBLAS path."""
    dtype = np.float64
    rng = np.random.default_rng(42)
    units, batch, fan_in = 5, 6, 4
    x, W, b, pieces, width = _dense_case(rng, name, dtype, batch, fan_in, units)
    code = contract.ACTIVATION_CODES[name]
    pre, out = np.empty((batch, width), dtype), np.empty((batch, units), dtype)
    cpu_dense.dense_activation_forward(out, pre, x, W, b, code, 0.0, pieces)
    dout = data(rng, (batch, units), dtype)
    dx, dW, db, dpre = (np.empty((batch, fan_in), dtype), np.empty_like(W), np.empty_like(b),
                        np.empty_like(pre))
    cpu_dense.dense_activation_backward(dx, dW, db, dpre, dout, x, W, pre, out, code, 0.0,
                                        pieces, True)
    calls = route_products_to_cublas(monkeypatch, gpu_config, gpu_cublas)
    d_x, d_W = dev(x), dev(W)
    d_pre, d_out = dev(np.full_like(pre, np.nan)), dev(np.full_like(out, np.nan))
    gpu_dense.dense_activation_forward(d_out, d_pre, d_x, d_W, dev(b), code, 0.0, pieces)
    close(host(d_pre), pre, dtype)
    close(host(d_out), out, dtype)
    g = [dev(np.full_like(v, np.nan)) for v in (dx, dW, db, dpre)]
    gpu_dense.dense_activation_backward(g[0], g[1], g[2], g[3], dev(dout), d_x, d_W, d_pre, d_out,
                                        code, 0.0, pieces, True)
    for got, expected in zip(g, (dx, dW, db, dpre)):
        close(host(got), expected, dtype)
    assert calls == [(batch, width, fan_in), (fan_in, width, batch), (batch, fan_in, width)]


def test_auto_matmul_sends_only_large_products_to_cublas(monkeypatch):
    dtype = np.float32
    rng = np.random.default_rng(43)
    calls = route_products_to_cublas(monkeypatch, gpu_config, gpu_cublas, backend="auto")
    monkeypatch.setattr(gpu_config, "CUBLAS_MIN_MACS", 6 * 5 * 4)
    for m, k, n in ((6, 5, 4), (6, 5, 3)):      # 120 multiply-adds: cuBLAS; 90: the tiled kernel
        a, b = data(rng, (m, k), dtype), data(rng, (k, n), dtype)
        d_c = dev(np.full((m, n), np.nan, dtype))
        gpu_dense.gemm(d_c, dev(a), dev(b))
        close(host(d_c), a @ b, dtype)
    assert calls == [(6, 4, 5)]
    monkeypatch.setattr(gpu_cublas, "cupy_status", lambda: (None, "no CuPy"))
    gpu_dense.gemm(dev(np.empty((6, 4), dtype)), dev(data(rng, (6, 5), dtype)),
                   dev(data(rng, (5, 4), dtype)))
    assert len(calls) == 1                      # "auto" without CuPy: the tiled kernel


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_backward_without_input_gradient(dtype):
    rng = np.random.default_rng(7)
    x, W = data(rng, (9, 5), dtype), data(rng, (5, 6), dtype)
    dpre = data(rng, (9, 6), dtype)
    dW, db = np.empty_like(W), np.empty(6, dtype)
    cpu_dense.dense_backward(np.empty_like(x), dW, db, dpre, x, W, True)
    sentinel = np.full_like(x, 7.0)
    d_dx, d_dW, d_db = dev(sentinel), dev(np.full_like(W, np.nan)), dev(np.full_like(db, np.nan))
    gpu_dense.dense_backward(d_dx, d_dW, d_db, dev(dpre), dev(x), dev(W), False)
    close(host(d_dW), dW, dtype)
    close(host(d_db), db, dtype)
    assert_array_equal(host(d_dx), sentinel)       # need_dx=False leaves dx alone


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ("relu", "maxout"))
def test_activation_grad_into(name, dtype):
    rng = np.random.default_rng(8)
    pieces = 2 if name == "maxout" else 1
    pre = data(rng, (5, 3 * pieces), dtype)
    out = np.empty((5, 3), dtype)
    code = contract.ACTIVATION_CODES[name]
    if name == "maxout":
        cpu_act.maxout_forward(out, pre, pieces)
    else:
        cpu_act.activation_forward(out, pre, code, 0.0)
    dout = data(rng, out.shape, dtype)
    expected = np.empty_like(pre)
    cpu_dense.activation_grad_into(expected, dout, pre, out, code, 0.0, pieces)
    d = dev(np.full_like(pre, np.nan))
    gpu_dense.activation_grad_into(d, dev(dout), dev(pre), dev(out), code, 0.0, pieces)
    close(host(d), expected, dtype)


# ---------------------------------------------------------------- batchnorm

def _bn_inputs(rng, dtype, batch=9, features=6):
    x = data(rng, (batch, features), dtype, 2.0) + np.arange(features, dtype=dtype)
    gamma = (1.0 + 0.3 * rng.normal(size=features)).astype(dtype)
    beta = data(rng, (features,), dtype)
    rmean = data(rng, (features,), dtype)
    rvar = rng.uniform(0.5, 2.0, features).astype(dtype)
    return x, gamma, beta, rmean, rvar


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("update_running", (True, False))
def test_batchnorm_forward_train_in_place(update_running, dtype):
    rng = np.random.default_rng(9)
    x, gamma, beta, rmean, rvar = _bn_inputs(rng, dtype)
    c = dict(y=x.copy(), xhat=np.empty_like(x), mean=np.empty_like(gamma),
             invstd=np.empty_like(gamma), rmean=rmean.copy(), rvar=rvar.copy())
    cpu_bn.batchnorm_forward_train(c["y"], c["xhat"], c["mean"], c["invstd"], c["y"], gamma, beta,
                                   c["rmean"], c["rvar"], 0.1, 1e-5, update_running)
    d_y = dev(x)                                       # y is x
    g = dict(xhat=dev(np.full_like(x, np.nan)), mean=dev(np.full_like(gamma, np.nan)),
             invstd=dev(np.full_like(gamma, np.nan)), rmean=dev(rmean), rvar=dev(rvar))
    gpu_bn.batchnorm_forward_train(d_y, g["xhat"], g["mean"], g["invstd"], d_y, dev(gamma),
                                   dev(beta), g["rmean"], g["rvar"], 0.1, 1e-5, update_running)
    close(host(d_y), c["y"], dtype)
    for name in ("xhat", "mean", "invstd", "rmean", "rvar"):
        close(host(g[name]), c[name], dtype, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_forward_eval(dtype):
    rng = np.random.default_rng(10)
    x, gamma, beta, rmean, rvar = _bn_inputs(rng, dtype)
    y, xhat, invstd = np.empty_like(x), np.empty_like(x), np.empty_like(gamma)
    cpu_bn.batchnorm_forward_eval(y, xhat, invstd, x, gamma, beta, rmean, rvar, 1e-5)
    g = [dev(np.full_like(a, np.nan)) for a in (y, xhat, invstd)]
    gpu_bn.batchnorm_forward_eval(g[0], g[1], g[2], dev(x), dev(gamma), dev(beta), dev(rmean),
                                  dev(rvar), 1e-5)
    for got, expected in zip(g, (y, xhat, invstd)):
        close(host(got), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ("train", "eval"))
def test_batchnorm_backward_in_place(mode, dtype):
    rng = np.random.default_rng(11)
    x, gamma, beta, rmean, rvar = _bn_inputs(rng, dtype)
    y, xhat, mean, invstd = np.empty_like(x), np.empty_like(x), np.empty_like(gamma), \
        np.empty_like(gamma)
    cpu_bn.batchnorm_forward_train(y, xhat, mean, invstd, x, gamma, beta, rmean.copy(),
                                   rvar.copy(), 0.1, 1e-5, False)
    dy = data(rng, x.shape, dtype)
    cpu_kernel = cpu_bn.batchnorm_backward if mode == "train" else cpu_bn.batchnorm_backward_eval
    gpu_kernel = gpu_bn.batchnorm_backward if mode == "train" else gpu_bn.batchnorm_backward_eval
    dx, dgamma, dbeta = dy.copy(), np.empty_like(gamma), np.empty_like(gamma)
    cpu_kernel(dx, dgamma, dbeta, dx, xhat, gamma, invstd)
    d_dx = dev(dy)                                     # dx is dy
    d_dgamma, d_dbeta = dev(np.full_like(gamma, np.nan)), dev(np.full_like(gamma, np.nan))
    gpu_kernel(d_dx, d_dgamma, d_dbeta, d_dx, dev(xhat), dev(gamma), dev(invstd))
    close(host(d_dgamma), dgamma, dtype)
    close(host(d_dbeta), dbeta, dtype)
    close(host(d_dx), dx, dtype, atol=2e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_param_grads(dtype):
    rng = np.random.default_rng(12)
    dy, xhat = data(rng, (10, 5), dtype), data(rng, (10, 5), dtype)
    dgamma, dbeta = np.empty(5, dtype), np.empty(5, dtype)
    cpu_bn.batchnorm_param_grads(dgamma, dbeta, dy, xhat)
    d_dgamma, d_dbeta = dev(np.full(5, np.nan, dtype)), dev(np.full(5, np.nan, dtype))
    gpu_bn.batchnorm_param_grads(d_dgamma, d_dbeta, dev(dy), dev(xhat))
    close(host(d_dgamma), dgamma, dtype)
    close(host(d_dbeta), dbeta, dtype)


def test_shared_memory_is_one_array_per_block_under_contention(monkeypatch):
    """Every thread of a block reaches the same shared array even when threads meet at its
    allocation: the simulator's look-up, allocate and store, without a lock, handed such threads
    private copies (wrong batch statistics now and then in the network path). A sleeping
    ``np.empty`` releases the GIL between look-up and store, making that interleaving certain."""
    if MODE != "simulator":
        pytest.skip("an interleaving of the CUDA simulator's Python threads")
    rng = np.random.default_rng(13)
    x, gamma, beta, rmean, rvar = _bn_inputs(rng, np.float64)
    y, xhat, mean, invstd = (np.empty_like(x), np.empty_like(x), np.empty_like(gamma),
                             np.empty_like(gamma))
    cpu_bn.batchnorm_forward_train(y, xhat, mean, invstd, x, gamma, beta, rmean.copy(),
                                   rvar.copy(), 0.1, 1e-5, True)
    g = [dev(a) for a in (np.full_like(x, np.nan), np.full_like(x, np.nan),
                          np.full_like(gamma, np.nan), np.full_like(gamma, np.nan), x, gamma,
                          beta, rmean, rvar)]
    empty = np.empty

    def slow_empty(*args, **kwargs):
        time.sleep(0.002)
        return empty(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(np, "empty", slow_empty)
        gpu_bn.batchnorm_forward_train(*g, 0.1, 1e-5, True)
    for got, expected in zip(g[:4], (y, xhat, mean, invstd)):
        close(host(got), expected, np.float64)


def test_device_functions_of_other_modules_see_the_fake_cuda_module_in_every_thread():
    """The simulator swaps the ``cuda`` global of a device function's module for each call;
    unpatched, it puts it back when a call returns, even while other threads of the block are
    still inside a function of that module: those then read the real numba.cuda (an
    AttributeError such as "module 'numba.cuda' has no attribute 'threadIdx'", now and then in
    the reductions of ``_reduce``). Sleeping threads make that interleaving certain."""
    if MODE != "simulator":
        pytest.skip("an interleaving of the CUDA simulator's Python threads")
    from simulator_device_function import thread_index_after

    @cuda.jit
    def kernel(out):
        out[cuda.threadIdx.x] = thread_index_after(0.002 * (cuda.threadIdx.x % 3))

    d_out = dev(np.full(6, -1, np.int64))
    kernel[1, 6](d_out)
    assert_array_equal(host(d_out), np.arange(6))


# ---------------------------------------------------------------- random and dropout

KEY_CASES = ((0, 0, 0), (7, 3, 12345), (2 ** 40 + 5, 17, 2 ** 33))


def test_stream_key_device_matches_cpu():
    seeds = np.array([s for s, _, _ in KEY_CASES], np.int64)
    layers = np.array([l for _, l, _ in KEY_CASES], np.int64)
    steps = np.array([t for _, _, t in KEY_CASES], np.int64)
    d_out = dev(np.zeros(len(KEY_CASES), np.uint64))
    _stream_key_wrapper[1, 4](d_out, dev(seeds), dev(layers), dev(steps))
    expected = [cpu_rand.stream_key(*case) for case in KEY_CASES]
    assert [int(v) for v in host(d_out)] == [int(v) for v in expected]


@pytest.mark.parametrize("seed,layer,step", KEY_CASES)
def test_uniform_stream_bit_identical(seed, layer, step):
    key = np.uint64(cpu_rand.stream_key(seed, layer, step))
    first = 2 ** 35 + 3                                # counters beyond 32 bits
    d_out = dev(np.full(20, np.nan))
    _uniform_wrapper[3, 8](d_out, key, first)
    expected = np.array([cpu_rand.uniform(key, first + i) for i in range(20)])
    assert_array_equal(host(d_out), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,layer,step", KEY_CASES)
def test_dropout_masks_bit_identical(seed, layer, step, dtype):
    key = np.uint64(cpu_rand.stream_key(seed, layer, step))
    rng = np.random.default_rng(13)
    x = data(rng, (7, 6), dtype)
    p = 0.3
    mask = np.empty_like(x)
    cpu_drop.dropout_mask(mask, p, key)
    d_mask = dev(np.full_like(x, np.nan))
    gpu_drop.dropout_mask(d_mask, p, key)
    assert_array_equal(host(d_mask), mask)

    out, mask2 = np.empty_like(x), np.empty_like(x)
    cpu_drop.dropout_forward(out, mask2, x, p, key)
    d_x = dev(x)
    d_mask2 = dev(np.full_like(x, np.nan))
    gpu_drop.dropout_forward(d_x, d_mask2, d_x, p, key)      # out is x
    assert_array_equal(host(d_mask2), mask2)
    assert_array_equal(host(d_x), out)

    dout = data(rng, x.shape, dtype)
    dx = np.empty_like(x)
    cpu_drop.dropout_backward(dx, dout, mask2)
    d_dout = dev(dout)
    gpu_drop.dropout_backward(d_dout, d_dout, d_mask2)      # dx is dout
    assert_array_equal(host(d_dout), dx)


def test_dropout_mask_is_independent_of_geometry(monkeypatch):
    key = np.uint64(cpu_rand.stream_key(1, 2, 3))
    masks = []
    for tpb in (2, 8, 32):
        monkeypatch.setattr(gpu_config, "THREADS_PER_BLOCK", tpb)
        d = dev(np.zeros((5, 7)))
        gpu_drop.dropout_mask(d, 0.5, key)
        masks.append(host(d))
    assert_array_equal(masks[0], masks[1])
    assert_array_equal(masks[0], masks[2])


# ---------------------------------------------------------------- losses

def _loss_case(rng, kind, dtype, n=11, c=4):
    z = data(rng, (n, c), dtype, 3.0)
    labels = rng.integers(0, c, n).astype(np.int64)
    if kind == "probs":
        targets = rng.dirichlet(np.ones(c), n).astype(dtype)
        targets[0] = 0.0
        targets[0, 1] = 1.0                      # a one-hot row (zero entries are skipped)
    elif kind == "binary":
        targets = rng.uniform(0, 1, (n, c)).astype(dtype)
    else:
        targets = data(rng, (n, c), dtype)
    return z, labels, targets


LOSSES = {
    "cross_entropy": (contract.CROSS_ENTROPY, "labels"),
    "cross_entropy_probs": (contract.CROSS_ENTROPY_PROBS, "probs"),
    "binary_cross_entropy": (contract.BINARY_CROSS_ENTROPY, "binary"),
    "mse": (contract.MSE, "values"),
    "hinge": (contract.HINGE, "labels"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", tuple(LOSSES))
def test_loss_value_and_gradient(loss, dtype):
    code, kind = LOSSES[loss]
    rng = np.random.default_rng(14)
    z, labels, targets = _loss_case(rng, kind, dtype)
    if loss in ("cross_entropy", "cross_entropy_probs", "binary_cross_entropy"):
        z[2, :] = [1e4, -1e4, 0.0, 1e4]          # huge logits stay finite
    dz = np.empty_like(z)
    value = cpu_loss.loss_forward_backward(dz, z, labels, targets, code)
    d_dz = dev(np.full_like(z, np.nan))
    got = gpu_loss.loss_forward_backward(d_dz, dev(z), dev(labels), dev(targets), code)
    assert isinstance(got, float) and np.isfinite(got)
    assert_allclose(got, value, rtol=1e-12)      # float64 accumulation for both dtypes
    close(host(d_dz), dz, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_launchers_by_name_and_on_device_accumulation(dtype):
    rng = np.random.default_rng(15)
    z, labels, targets = _loss_case(rng, "labels", dtype, n=13)
    expected = {}
    for name, kernel, aux in (("ce", "cross_entropy_forward_backward", labels),
                              ("hinge", "hinge_forward_backward", labels),
                              ("mse", "mse_forward_backward", targets)):
        expected[name] = getattr(cpu_loss, kernel)(np.empty_like(z), z, aux)
    out = dev(np.array([100.0]))
    partials = dev(np.zeros(gpu_loss.partials_size(z.shape[0]) + 3))   # a larger workspace
    d_z, d_dz = dev(z), dev(np.empty_like(z))
    assert gpu_loss.cross_entropy_forward_backward(d_dz, d_z, dev(labels), out=out,
                                                   partials=partials) is None
    assert_allclose(host(out)[0], expected["ce"], rtol=1e-12)
    gpu_loss.hinge_forward_backward(d_dz, d_z, dev(labels), out=out, accumulate=True,
                                    partials=partials)
    gpu_loss.mse_forward_backward(d_dz, d_z, dev(targets), out=out, accumulate=True)
    assert_allclose(host(out)[0], sum(expected.values()), rtol=1e-12)
    with pytest.raises(ValueError):
        gpu_loss.mse_forward_backward(d_dz, d_z, dev(targets), partials=dev(np.zeros(1)))


# ---------------------------------------------------------------- penalties

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l1,l2", [(0.01, 0.0), (0.0, 0.02), (0.01, 0.02)])
def test_penalties(l1, l2, dtype):
    rng = np.random.default_rng(16)
    w = data(rng, (37,), dtype)
    w[:3] = 0.0
    dw = data(rng, (37,), dtype)
    value = cpu_pen.penalty_value(w, l1, l2)
    assert_allclose(gpu_pen.penalty_value(dev(w), l1, l2), value, rtol=1e-12)
    expected = dw.copy()
    cpu_pen.penalty_grad(expected, w, l1, l2)
    d_dw = dev(dw)
    gpu_pen.penalty_grad(d_dw, dev(w), l1, l2)
    close(host(d_dw), expected, dtype)
    # several weight matrices summed on the device
    w2 = data(rng, (5,), dtype)
    out = dev(np.zeros(1))
    gpu_pen.penalty_value(dev(w), l1, l2, out=out)
    gpu_pen.penalty_value(dev(w2), l1, l2, out=out, accumulate=True)
    assert_allclose(host(out)[0], value + cpu_pen.penalty_value(w2, l1, l2), rtol=1e-12)


# ---------------------------------------------------------------- optimizers

def _opt_cases():
    """(id, rule, states, scalars, flags): every variant the CPU kernels implement."""
    return [
        ("sgd", "sgd", 0, (0.1, 0.0, 1.0, 0.0), (False,)),
        ("sgd-momentum-dampening-wd", "sgd", 1, (0.1, 0.9, 0.8, 0.01), (False,)),
        ("sgd-nesterov", "sgd", 1, (0.1, 0.9, 1.0, 0.0), (True,)),
        ("adagrad", "adagrad", 1, (0.1, 0.0, 1e-10), ()),
        ("adagrad-wd", "adagrad", 1, (0.05, 0.1, 1e-3), ()),
        ("rmsprop", "rmsprop", 3, (0.01, 0.99, 0.01, 1e-8, 0.0, 0.0), (False,)),
        ("rmsprop-centered-momentum-wd", "rmsprop", 3, (0.01, 0.9, 0.1, 1e-3, 0.1, 0.5), (True,)),
        ("adam", "adam", 3, (0.9, 0.1, 0.999, 0.001, None, None, 1e-8, 0.0, 1.0), (False,)),
        ("adam-amsgrad-wd", "adam", 3, (0.5, 0.5, 0.75, 0.25, None, None, 1e-8, 0.1, 1.0),
         (True,)),
        ("adamw", "adam", 3, (0.9, 0.1, 0.999, 0.001, None, None, 1e-8, 0.0, 1 - 1e-3 * 0.01),
         (False,)),
        ("rprop", "rprop", 2, (0.5, 1.2, 1e-6, 50.0), ()),
    ]


OPT_IDS = [case[0] for case in _opt_cases()]


def _scalars(rule, scalars, t, dtype):
    """The scalar arguments of step t (from 1), in the arrays' dtype (Adam's bias corrections)."""
    values = list(scalars)
    if rule == "adam":
        lr = 1e-2
        values[4] = lr / (1 - values[0] ** t)
        values[5] = np.sqrt(1 - values[2] ** t)
    return [dtype(v) for v in values]


def _initial_state(rule, n_states, n, dtype):
    if rule == "rprop":
        return [np.zeros(n, dtype), np.full(n, 0.01, dtype)]        # prev, step_size
    return [np.zeros(n, dtype) for _ in range(n_states)]


def _run_cpu(rule, param, grad, states, scal, flags, init):
    kernel = getattr(cpu_opt, f"{rule}_update")
    if rule == "sgd":
        kernel(param, grad, *states_or_empty(states, 1, param), *scal, flags[0], init)
    elif rule == "rprop":
        kernel(param, grad, *states, *scal)
    elif rule == "adam":  # its scalars as one coefficient row
        kernel(param, grad, *states, np.array(scal, dtype=param.dtype), *flags)
    else:
        kernel(param, grad, *states, *scal, *flags)


def states_or_empty(states, count, like):
    return states if states else [np.empty(0, like.dtype)] * count


def _run_gpu(rule, d_param, d_grad, d_states, scal, flags, init, dtype):
    kernel = getattr(gpu_opt, f"{rule}_update")
    if rule == "sgd":
        if not d_states:
            d_states = [dev(np.empty(0, dtype))]
        kernel(d_param, d_grad, *d_states, *scal, flags[0], init)
    elif rule == "rprop":
        kernel(d_param, d_grad, *d_states, *scal)
    elif rule == "adam":
        kernel(d_param, d_grad, *d_states, dev(np.array(scal, dtype=dtype)), *flags)
    else:
        kernel(d_param, d_grad, *d_states, *scal, *flags)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", _opt_cases(), ids=OPT_IDS)
def test_optimizer_trajectories(case, dtype):
    """Four steps of each rule on the GPU match the CPU kernel (state arrays included)."""
    _, rule, n_states, scalars, flags = case
    rng = np.random.default_rng(17)
    n = 21
    param = data(rng, (n,), dtype)
    states = _initial_state(rule, n_states, n, dtype)
    d_param, d_states = dev(param), [dev(s) for s in states]
    for t in range(1, 5):
        grad = data(rng, (n,), dtype)
        if rule == "rprop" and t == 3:
            grad[:5] = 0.0
        scal = _scalars(rule, scalars, t, dtype)
        _run_cpu(rule, param, grad, states, scal, flags, t == 1)
        _run_gpu(rule, d_param, dev(grad), d_states, scal, flags, t == 1, dtype)
        close(host(d_param), param, dtype, err_msg=f"step {t}")
        for k, (got, expected) in enumerate(zip(d_states, states)):
            close(host(got), expected, dtype, err_msg=f"step {t}, state {k}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", ("SGD", "ADAGRAD", "RMSPROP", "ADAM", "RPROP"))
def test_optimizer_update_dispatch_with_device_coefficients(code, dtype):
    rng = np.random.default_rng(18)
    n = 19
    opt = getattr(contract, code)
    c = np.zeros(contract.N_COEFFICIENTS, dtype)
    c[:9] = {
        "SGD": [0.1, 0.9, 0.9, 0.01, 0, 0, 0, 0, 0],
        "ADAGRAD": [0.1, 0.01, 1e-8, 0, 0, 0, 0, 0, 0],
        "RMSPROP": [0.01, 0.9, 0.1, 1e-6, 0.0, 0.3, 0, 0, 0],
        "ADAM": [0.9, 0.1, 0.99, 0.01, 0.1, 0.1, 1e-8, 0.0, 0.999],
        "RPROP": [0.5, 1.2, 1e-6, 50.0, 0, 0, 0, 0, 0],
    }[code]
    param = data(rng, (n,), dtype)
    states = [np.zeros(n, dtype) for _ in range(3)]
    if code == "RPROP":
        states[1][:] = 0.01
    d_param, d_states, d_c = dev(param), [dev(s) for s in states], dev(c)
    for t in range(3):
        grad = data(rng, (n,), dtype)
        flag = code == "RMSPROP"          # centered RMSprop; plain momentum SGD / Adam
        cpu_opt.optimizer_update(opt, param, grad, *states, c, flag, t == 0)
        gpu_opt.optimizer_update(opt, d_param, dev(grad), *d_states, d_c, flag, t == 0)
    close(host(d_param), param, dtype)
    for got, expected in zip(d_states, states):
        close(host(got), expected, dtype)


def test_optimizer_state_length_is_checked():
    d = dev(np.zeros(4))
    with pytest.raises(ValueError, match="state array length"):
        gpu_opt.adam_update(d, d, d, dev(np.zeros(3)), dev(np.zeros(0)),
                            dev(np.array([0.9, 0.1, 0.99, 0.01, 0.1, 0.1, 1e-8, 0.0, 1.0])), False)


# ---------------------------------------------------------------- metrics

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", tuple(LOSSES))
def test_count_correct(loss, dtype):
    code, kind = LOSSES[loss]
    rng = np.random.default_rng(19)
    z, labels, targets = _loss_case(rng, kind, dtype, n=19, c=3)
    z[0] = [1.0, 1.0, 0.0]                       # a tie: argmax is the first maximum
    labels[0] = 1
    if kind == "labels":
        labels[1:8] = np.argmax(z[1:8], axis=1)  # guarantee some correct rows
    expected = cpu_metrics.count_correct(z, labels, targets, code)
    got = gpu_metrics.count_correct(dev(z), dev(labels), dev(targets), code)
    assert tuple(got) == tuple(expected)
    out = dev(np.array([5], np.int64))
    counted = gpu_metrics.count_correct(dev(z), dev(labels), dev(targets), code, out=out,
                                        accumulate=True)
    assert counted == expected[1]
    assert host(out)[0] == 5 + expected[0]


def test_count_correct_accepts_none_for_the_unused_target():
    z = np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 0.0]])
    labels = np.array([1, 1, 0], np.int64)
    got = gpu_metrics.count_correct(dev(z), dev(labels), None, contract.CROSS_ENTROPY)
    assert got == (2, 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_argmax_first_maximum(dtype):
    rng = np.random.default_rng(20)
    z = data(rng, (13, 4), dtype)
    z[3] = [2.0, 5.0, 5.0, 1.0]
    idx = dev(np.full(13, -1, np.int64))
    gpu_metrics.row_argmax(idx, dev(z))
    assert_array_equal(host(idx), np.argmax(z, axis=1))


def test_default_geometry_dense_layer(monkeypatch):
    """The shipped launch geometry (large tiles, 256-thread blocks) on one small float32 layer."""
    for name in ("THREADS_PER_BLOCK", "REDUCE_COLS", "REDUCE_ROWS", "GEMM_TILE"):
        monkeypatch.setattr(gpu_config, name, getattr(DEFAULT_GEOMETRY, name))
    gpu_config.check_geometry()
    rng = np.random.default_rng(21)
    x, W, b = (data(rng, (33, 17), np.float32), data(rng, (17, 66), np.float32),
               data(rng, (66,), np.float32))
    pre, out = np.empty((33, 66), np.float32), np.empty((33, 66), np.float32)
    cpu_dense.dense_activation_forward(out, pre, x, W, b, contract.RELU, 0.0, 1)
    d_x, d_W = dev(x), dev(W)
    d_pre, d_out = dev(np.zeros_like(pre)), dev(np.zeros_like(out))
    gpu_dense.dense_activation_forward(d_out, d_pre, d_x, d_W, dev(b), contract.RELU, 0.0, 1)
    close(host(d_out), out, np.float32)
    dout = data(rng, out.shape, np.float32)
    dx, dW, db, dpre = np.empty_like(x), np.empty_like(W), np.empty_like(b), np.empty_like(pre)
    cpu_dense.dense_activation_backward(dx, dW, db, dpre, dout, x, W, pre, out, contract.RELU, 0.0,
                                        1, True)
    g = [dev(np.zeros_like(a)) for a in (dx, dW, db, dpre)]
    gpu_dense.dense_activation_backward(*g, dev(dout), d_x, d_W, d_pre, d_out, contract.RELU, 0.0,
                                        1, True)
    for got, expected in zip(g, (dx, dW, db, dpre)):
        close(host(got), expected, np.float32)


# ---------------------------------------------------------------- input checks

@pytest.mark.parametrize("dtype", DTYPES)
def test_value_summary_and_row_sums_match_numpy(dtype):
    """Non-finite count, finite min/max and the worst row-sum deviation over several blocks."""
    rng = np.random.default_rng(50)
    values = data(rng, (37, 5), dtype)
    assert gpu_checks.value_summary(dev(values)) == (0, float(values.min()), float(values.max()))
    sums = values.sum(axis=1, dtype=np.float64)
    assert_allclose(gpu_checks.row_sum_deviation(dev(values)), np.abs(sums - 1).max(), rtol=1e-12)
    values[3, 1], values[30, 4], values[11, 0] = np.nan, -np.inf, np.inf
    finite = values[np.isfinite(values)]
    assert gpu_checks.value_summary(dev(values)) == (3, float(finite.min()), float(finite.max()))
    assert gpu_checks.value_summary(dev(np.full((3, 2), np.nan, dtype))) == (6, np.inf, -np.inf)


@pytest.mark.parametrize("label_dtype", (np.int64, np.int32, np.uint8, np.bool_))
def test_label_range_and_int64_copy(label_dtype):
    rng = np.random.default_rng(51)
    labels = rng.integers(0, 2 if label_dtype == np.bool_ else 200, 41).astype(label_dtype)
    d = dev(labels)
    assert gpu_checks.label_range(d) == (int(labels.min()), int(labels.max()))
    copy = gpu_checks.to_int64(d)
    assert copy.dtype == np.int64
    assert_array_equal(host(copy), labels.astype(np.int64))
    assert gpu_checks.label_range(dev(np.array([-5, 3, -7], np.int64))) == (-7, 3)


collect_only_parent_tests(globals(), PARENT_PROCESS_TESTS)
