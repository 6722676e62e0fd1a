"""Counter-based random numbers: the same (key, counter) always gives the same value.

A stream key is derived from (seed, layer, step) and each element draws from its own counter, so a
dropout mask depends only on the model seed, the layer index, the training step and the element
position — not on thread scheduling or on the order of calls. The mixing function is SplitMix64
(Steele, Lea & Flood 2014), written once in :mod:`fastmlp.kernels.rules` for the CPU and the
GPU, so both draw the same masks bit for bit.
"""

from .. import rules
from ..config import JIT
from ..jit import njit


@njit(**JIT)
def stream_key(seed, layer, step):
    """uint64 key of the stream for (seed, layer, step) (:func:`fastmlp.kernels.rules.stream_key`)."""
    return rules.stream_key(seed, layer, step)


@njit(**JIT)
def uniform(key, counter):
    """A float64 in [0, 1) for (key, counter) (:func:`fastmlp.kernels.rules.uniform`)."""
    return rules.uniform(key, counter)
