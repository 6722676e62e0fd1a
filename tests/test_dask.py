"""Many fits on a Dask cluster: fm.Bagging and GridSearchCV under joblib's "dask" back end on a
LocalCluster of worker processes (loopback), and thread pinning in the workers.

The serial references run with one BLAS thread, as the pinned workers do: a multithreaded BLAS
may split a matrix product differently and so round differently."""

from __future__ import annotations

import faulthandler
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastmlp as fm

distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")
pytest.importorskip("sklearn")

from fastmlp.parallel.dask import PinThreads, dask_client, worker_thread_counts  # noqa: E402

TEST_TIMEOUT = 120  # seconds; a hung cluster ends the run with tracebacks instead of hanging


@pytest.fixture(autouse=True)
def _no_hang():
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes with pinned threads; closed after the module."""
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True, file=sys.stderr)
    try:
        c = dask_client(n_workers=2, threads_per_worker=1, pin=1, timeout=60)
    finally:
        faulthandler.cancel_dump_traceback_later()
    try:
        yield c
    finally:
        c.close(timeout=30)


@pytest.fixture(scope="module")
def digits():
    data = fm.datasets.load_digits(seed=0)
    scaler = fm.Standardizer().fit(data.X_train)
    return scaler.transform(data.X_train), data.y_train


def _template():
    return fm.MLP(64, [fm.Dense(32, "relu", dropout=0.2), fm.Dense(10)], seed=0)


def _assert_same_params(a, b):
    assert a.params.keys() == b.params.keys()
    for key in a.params:
        assert a.params[key].dtype == b.params[key].dtype
        assert np.array_equal(a.params[key], b.params[key]), key


def test_bagging_on_dask_matches_serial(client, digits):
    X, y = digits
    kwargs = dict(n_estimators=4, batch_size=128, epochs=2, seed=3)
    with fm.num_threads(1):  # the workers' BLAS count: multithreaded BLAS rounds differently
        serial = fm.Bagging(_template(), n_jobs=1, **kwargs).fit(X, y)
    before = sum(len(log) for log in client.run(_task_count).values())
    with joblib.parallel_config(backend="dask"):
        on_dask = fm.Bagging(_template(), n_jobs=2, **kwargs).fit(X, y)
    after = client.run(_task_count)
    assert sum(len(log) for log in after.values()) > before  # the fits ran on the workers
    assert len(on_dask.members) == 4
    for a, b in zip(serial.members, on_dask.members):
        _assert_same_params(a, b)
    np.testing.assert_array_equal(serial.predict_proba(X), on_dask.predict_proba(X))


def _task_count(dask_worker):
    return list(dask_worker.state.log)


def test_grid_search_on_dask_matches_serial(client, digits):
    from sklearn.model_selection import GridSearchCV

    from fastmlp.sklearn import MLPClassifier

    X, y = digits
    estimator = MLPClassifier(hidden_layer_sizes=(16,), epochs=2, batch_size=64, random_state=0)
    grid = {"learning_rate": [1e-3, 3e-3], "l2": [0.0, 1e-3]}
    with fm.num_threads(1):
        serial = GridSearchCV(estimator, grid, cv=2, n_jobs=1).fit(X, y)
    with joblib.parallel_config(backend="dask"):
        on_dask = GridSearchCV(estimator, grid, cv=2, n_jobs=2).fit(X, y)
    for key in ("split0_test_score", "split1_test_score", "mean_test_score"):
        np.testing.assert_array_equal(serial.cv_results_[key], on_dask.cv_results_[key])
    assert serial.best_params_ == on_dask.best_params_
    _assert_same_params(serial.best_estimator_.model_, on_dask.best_estimator_.model_)


def test_dask_client_workers_are_pinned(client):
    assert len(client.scheduler_info()["workers"]) == 2
    for counts in client.run(worker_thread_counts).values():
        assert counts["numba"] == 1
        assert counts["blas"] in (1, None)
    workers = list(client.scheduler_info()["workers"])
    for worker in workers:
        future = client.submit(worker_thread_counts, pure=False, workers=[worker])
        counts = future.result(timeout=30)
        assert counts["numba"] == 1
        assert counts["blas"] in (1, None)


def _slow_counts(_):
    import threading

    time.sleep(0.2)  # keep this task thread busy so that the other one takes the next task
    return threading.get_ident(), worker_thread_counts()


@pytest.mark.filterwarnings("ignore:Port .* is already in use")
def test_plugin_pins_every_task_thread_of_a_plain_cluster():
    """A LocalCluster started without the environment variables: the plugin alone pins Numba in
    each task thread (Numba's count is per thread) and BLAS in the process."""
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                       dashboard_address=None)
    try:
        with distributed.Client(cluster, timeout=60) as c:
            import numba

            before = c.submit(worker_thread_counts, pure=False).result(timeout=30)
            assert before["numba"] == numba.config.NUMBA_NUM_THREADS  # all cores, unpinned
            c.register_plugin(PinThreads(1))
            results = c.gather(c.map(_slow_counts, range(4), pure=False))
            assert len({ident for ident, _ in results}) == 2  # both task threads were used
            for _, counts in results:
                assert counts["numba"] == 1
                assert counts["blas"] in (1, None)
            for counts in c.run(worker_thread_counts).values():
                assert counts["numba"] == 1
    finally:
        cluster.close(timeout=30)


def test_sweep_script_help_and_quick():
    pytest.importorskip("mnist1d")
    script = Path(__file__).resolve().parents[1] / "scripts" / "sweep_dask.py"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    for word in ("--scheduler", "--quick", "--workers", "--epochs"):
        assert word in proc.stdout
    proc = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True,
                          text=True, timeout=TEST_TIMEOUT, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert len(rows) == 4  # header, separator, two configurations
    assert "(best)" in proc.stdout and "total wall time" in proc.stdout
