"""Counter-based random numbers: the same (key, counter) always gives the same value.

A stream key is derived from (seed, layer, step) and each element draws from its own counter, so a
dropout mask depends only on the model seed, the layer index, the training step and the element
position — not on thread scheduling or on the order of calls. The mixing function is SplitMix64
(Steele, Lea & Flood 2014); the CUDA twin uses the same arithmetic.
"""

import numpy as np
from ..jit import njit

from ..config import JIT

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_TWO_POW_MINUS_53 = 1.0 / 9007199254740992.0


@njit(inline="always", **JIT)
def mix64(z):
    """SplitMix64 finalizer: a bijective avalanche of a uint64 (shifts are logical: z is uint64)."""
    z = np.uint64(z)
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(**JIT)
def stream_key(seed, layer, step):
    """uint64 key of the stream for (seed, layer, step); all three are non-negative integers."""
    k = mix64(np.uint64(seed) + _GOLDEN)
    k = mix64(k ^ (np.uint64(layer) * _MIX1 + _ONE))
    return mix64(k ^ (np.uint64(step) * _MIX2 + _GOLDEN))


@njit(inline="always", **JIT)
def uniform(key, counter):
    """A float64 in [0, 1) from 53 random bits of mix64(key + (counter + 1)·golden)."""
    z = mix64(np.uint64(key) + (np.uint64(counter) + _ONE) * _GOLDEN)
    return np.float64(z >> _S11) * _TWO_POW_MINUS_53
