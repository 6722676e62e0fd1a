"""Inverted dropout (kernels/cpu/dropout.py) and its counter-based stream (kernels/cpu/random.py)."""

import math

import numpy as np
import pytest
import reference
from numpy.testing import assert_array_equal

from fastmlp.kernels.cpu.dropout import dropout_backward, dropout_forward, dropout_mask
from fastmlp.kernels.cpu.random import stream_key, uniform

DTYPES = (np.float32, np.float64)
KEYS = ((0, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 0), (7, 3, 12345), (2 ** 40 + 5, 17, 2 ** 33))


def key_of(seed, layer, step):
    """The stream key as the uint64 the kernels compute with (stream_key returns a Python int)."""
    return np.uint64(stream_key(seed, layer, step))


def mask_of(shape, p, key, dtype=np.float64):
    mask = np.full(shape, np.nan, dtype=dtype)
    dropout_mask(mask, p, key)
    return mask


@pytest.mark.parametrize("seed,layer,step", KEYS)
def test_stream_key_and_uniforms_match_reference_bits(seed, layer, step):
    key = key_of(seed, layer, step)
    assert int(key) == reference.stream_key(seed, layer, step)
    expected = reference.uniforms(int(key), 64)
    got = np.array([uniform(key, c) for c in range(64)])
    assert_array_equal(got, expected)  # bit for bit
    assert np.all((got >= 0.0) & (got < 1.0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,layer,step", KEYS[:4])
def test_mask_matches_reference_stream(seed, layer, step, dtype):
    p = 0.3
    mask = mask_of((6, 11), p, key_of(seed, layer, step), dtype)
    expected = reference.dropout_mask((6, 11), p, seed, layer, step)
    assert_array_equal(mask, expected.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", (0.1, 0.5, 0.9))
def test_mask_values_and_keep_fraction(p, dtype):
    shape = (400, 500)
    mask = mask_of(shape, p, key_of(3, 1, 2), dtype)
    scale = dtype(1.0 / (1.0 - p))
    assert np.all((mask == 0.0) | (mask == scale))
    kept = np.count_nonzero(mask) / mask.size
    sigma = math.sqrt(p * (1 - p) / mask.size)
    assert abs(kept - (1 - p)) < 6 * sigma
    # the expectation of an inverted-dropout mask is 1
    assert abs(float(mask.astype(np.float64).mean()) - 1.0) < 6 * sigma / (1 - p)


def test_rows_and_columns_are_balanced():
    """Counters run over the flattened batch; no row or column is systematically dropped."""
    p = 0.5
    mask = mask_of((200, 300), p, key_of(0, 0, 0))
    keep = mask != 0
    n = 300
    row_sigma = math.sqrt(p * (1 - p) / n)
    assert np.max(np.abs(keep.mean(axis=1) - (1 - p))) < 5 * row_sigma
    col_sigma = math.sqrt(p * (1 - p) / 200)
    assert np.max(np.abs(keep.mean(axis=0) - (1 - p))) < 5 * col_sigma


def test_element_position_is_the_counter():
    """Element (i, j) of a (B, U) mask draws counter i·U + j: the mask depends on shape only through
    the flat position."""
    key = key_of(5, 2, 9)
    flat = mask_of((1, 60), 0.4, key)
    assert_array_equal(mask_of((6, 10), 0.4, key).ravel(), flat.ravel())
    assert_array_equal(mask_of((3, 20), 0.4, key).ravel(), flat.ravel())


def test_same_key_same_mask_and_different_keys_differ():
    shape, p = (32, 64), 0.5
    masks = {k: mask_of(shape, p, key_of(*k)) for k in KEYS}
    again = mask_of(shape, p, key_of(*KEYS[-1]))
    assert_array_equal(again, masks[KEYS[-1]])
    values = list(masks.values())
    for a in range(len(values)):
        for b in range(a + 1, len(values)):
            agreement = np.mean((values[a] != 0) == (values[b] != 0))
            assert 0.4 < agreement < 0.6  # independent masks agree on about half the entries
    keys = {int(key_of(*k)) for k in KEYS}
    assert len(keys) == len(KEYS)


def test_successive_steps_and_layers_differ():
    shape, p = (16, 16), 0.3
    seen = set()
    for layer in range(3):
        for step in range(5):
            seen.add(mask_of(shape, p, key_of(0, layer, step)).tobytes())
    assert len(seen) == 15


@pytest.mark.parametrize("dtype", DTYPES)
def test_p_zero_keeps_everything(dtype):
    mask = mask_of((50, 40), 0.0, key_of(0, 0, 0), dtype)
    assert_array_equal(mask, 1.0)
    x = np.random.default_rng(0).normal(size=(50, 40)).astype(dtype)
    out = np.full_like(x, np.nan)
    dropout_forward(out, mask, x, 0.0, key_of(0, 0, 0))
    assert_array_equal(out, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_and_backward_use_the_mask(dtype):
    rng = np.random.default_rng(1)
    p = 0.25
    key = key_of(4, 1, 7)
    x = rng.normal(size=(9, 13)).astype(dtype)
    dout = rng.normal(size=(9, 13)).astype(dtype)
    out = np.full_like(x, np.nan)
    mask = np.full_like(x, np.nan)
    dropout_forward(out, mask, x, p, key)
    expected_mask = mask_of(x.shape, p, key, dtype)
    assert_array_equal(mask, expected_mask)
    assert_array_equal(out, x * mask)  # same rounding: one multiplication per element
    scale = dtype(1.0 / (1.0 - p))
    assert_array_equal(out[mask != 0], x[mask != 0] * scale)
    assert_array_equal(out[mask == 0], 0.0)

    dx = np.full_like(x, np.nan)
    dropout_backward(dx, dout, mask)
    assert_array_equal(dx, dout * mask)
    # the backward is the transpose of the (diagonal) forward map
    assert np.sum(dout.astype(np.float64) * out) == pytest.approx(np.sum(dx.astype(np.float64) * x),
                                                                 rel=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place(dtype):
    rng = np.random.default_rng(2)
    key = key_of(0, 2, 3)
    x = rng.normal(size=(5, 7)).astype(dtype)
    out = np.empty_like(x)
    mask = np.empty_like(x)
    dropout_forward(out, mask, x, 0.5, key)
    y = x.copy()
    mask2 = np.empty_like(x)
    dropout_forward(y, mask2, y, 0.5, key)
    assert_array_equal(y, out)
    d = x.copy()
    dropout_backward(d, d, mask)
    assert_array_equal(d, x * mask)


def test_python_int_key_gives_the_same_mask():
    key = stream_key(0, 0, 0)  # a Python int, 3921694344990282541 < 2**63
    assert isinstance(key, int) and key < 2 ** 63
    got = mask_of((40, 50), 0.5, key)
    assert_array_equal(got, mask_of((40, 50), 0.5, np.uint64(key)))
