"""fm.set_num_threads / fm.num_threads govern Numba's and the BLAS thread pools together."""

import numba
import pytest

import fastmlp as fm


def test_set_and_restore():
    pytest.importorskip("threadpoolctl")
    before = fm.get_num_threads()
    with fm.num_threads(1):
        assert fm.get_num_threads() == {"numba": 1, "blas": 1}
    assert fm.get_num_threads() == before
    fm.set_num_threads(1)
    try:
        assert numba.get_num_threads() == 1 and fm.get_num_threads()["blas"] == 1
    finally:
        fm.set_num_threads(before["numba"])


def test_bad_counts():
    with pytest.raises(ValueError, match="n must be"):
        fm.set_num_threads(0)
    with pytest.raises(ValueError, match="<="):
        fm.set_num_threads(numba.config.NUMBA_NUM_THREADS + 1)
    with pytest.raises(TypeError):
        fm.set_num_threads(1.5)
