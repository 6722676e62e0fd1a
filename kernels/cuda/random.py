"""Counter-based random numbers on the GPU (twin of ``kernels/cpu/random.py``).

The same (key, counter) gives the same value on the CPU and on the GPU, bit for bit: both compute
SplitMix64 (Steele, Lea & Flood 2014) in uint64 arithmetic with uint64 constants, so every shift is
logical and every product wraps modulo 2^64, and both convert the top 53 bits to a float64 in
[0, 1). A dropout mask therefore depends only on the model seed, the layer index, the training step
and the element position, not on the device, the launch geometry or thread scheduling.

Device functions: ``mix64(z)``, ``stream_key(seed, layer, step)`` and ``uniform(key, counter)``;
keys are uint64, seeds/layers/steps/counters non-negative integers. Host code computes keys with the
CPU ``stream_key`` (the same value) and passes them to kernels as ``numpy.uint64``.
"""

import numpy as np
from numba import cuda

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_TWO_POW_MINUS_53 = 1.0 / 9007199254740992.0


@cuda.jit(device=True)
def mix64(z):
    """SplitMix64 finalizer: a bijective avalanche of a uint64 (shifts are logical: z is uint64)."""
    z = np.uint64(z)
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@cuda.jit(device=True)
def stream_key(seed, layer, step):
    """uint64 key of the stream for (seed, layer, step); all three are non-negative integers."""
    k = mix64(np.uint64(seed) + _GOLDEN)
    k = mix64(k ^ (np.uint64(layer) * _MIX1 + _ONE))
    return mix64(k ^ (np.uint64(step) * _MIX2 + _GOLDEN))


@cuda.jit(device=True)
def uniform(key, counter):
    """A float64 in [0, 1) from 53 random bits of mix64(key + (counter + 1)·golden)."""
    z = mix64(np.uint64(key) + (np.uint64(counter) + _ONE) * _GOLDEN)
    return np.float64(z >> _S11) * _TWO_POW_MINUS_53
