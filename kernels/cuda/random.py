"""Counter-based random numbers on the GPU (twin of ``kernels/cpu/random.py``).

The same (key, counter) gives the same value on the CPU and on the GPU, bit for bit: both compute
SplitMix64 (Steele, Lea & Flood 2014) in uint64 arithmetic with uint64 constants, so every shift is
logical and every product wraps modulo 2^64, and both convert the top 53 bits to a float64 in
[0, 1). A dropout mask therefore depends only on the model seed, the layer index, the training step
and the element position, not on the device, the launch geometry or thread scheduling.

Device functions: ``mix64(z)``, ``stream_key(seed, layer, step)`` and ``uniform(key, counter)``, the
shared rules of :mod:`fastmlp.kernels.rules` (one definition for both devices);
keys are uint64, seeds/layers/steps/counters non-negative integers. Host code computes keys with the
CPU ``stream_key`` (the same value) and passes them to kernels as ``numpy.uint64``.
"""

from .. import rules
from ._simulator import device_rule

mix64 = device_rule(rules.mix64)
stream_key = device_rule(rules.stream_key)
uniform = device_rule(rules.uniform)
